/**
 * A full GC while no nextTick object is alive must not leave process.nextTick on V8's slow path
 * (lib/core/tick-shape.ts). Each case runs in its own process (the built package: npm test builds
 * dist/ first), with --expose-gc and --allow-natives-syntax: it warms process.nextTick, collects
 * garbage while no tick is queued, queues a few more, and prints the state of the inline caches of
 * the tick literal (%DebugPrint of the function's feedback). Bare node:http is the control: on
 * Node 20 to 24 its caches turn megamorphic, which shows the provocation works on this line.
 * Node 26 builds ticks with a class: no literal, nothing to check.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const root = path.resolve(__dirname, '../..')

const SETUP: Record<string, string> = {
  bare: `
    const server = require('node:http').createServer((req, res) => res.end('ok'))
    const stop = async () => {}`,
  http: `
    const { configureServerTimeouts } = require('hangup-guard')
    const server = require('node:http').createServer((req, res) => res.end('ok'))
    const handle = configureServerTimeouts(server, {})
    const stop = async () => handle.close()`,
  fastify: `
    const app = require('fastify')()
    const ready = app.register(require('hangup-guard/fastify'), {}).then(() => app.ready())
    const stop = async () => app.close()`
}

function child (setup: string): string {
  return `${setup}
    const spin = (n, done) => { if (n > 0) process.nextTick(spin, n - 1, done); else done() }
    // A pause, not a wait for an event: measured on Node 20, a 20 ms timer before the GC lets V8
    // drop the tick maps every time, setTimeout(0) in 1 run of 3, setImmediate never. The bare
    // control checks that the provocation worked, so a pause too short fails it, never passes.
    const idle = (fn) => setTimeout(fn, 20)
    Promise.resolve(typeof ready === 'undefined' ? null : ready).then(() => spin(3000, () => idle(() => {
      for (let i = 0; i < 3; i++) globalThis.gc() // nothing queued: only a tick held on purpose survives
      spin(20, () => idle(() => {
        %DebugPrint(process.nextTick);
        stop().then(() => console.log('done'))
      }))
    })))`
}

async function cacheStates (kind: string): Promise<string[]> {
  // stdout is a file: V8 prints through C's stdio, and writes to a pipe that libuv made
  // non-blocking are dropped when the pipe is full (EAGAIN).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-tick-shape-'))
  const file = path.join(dir, 'out')
  const fd = fs.openSync(file, 'w')
  try {
    // No coverage in the child: under V8's precise coverage the tick literal's caches are
    // megamorphic from the start, GC or not (measured on Node 20), so nothing could be told
    // apart. tap's spawn hook puts its process-info import back into NODE_OPTIONS; this variable
    // is what keeps that import from starting coverage.
    const env: NodeJS.ProcessEnv = { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
    delete env.NODE_V8_COVERAGE
    const proc = spawn(process.execPath, ['--expose-gc', '--allow-natives-syntax', '-e', child(SETUP[kind]!)], { cwd: root, env, stdio: ['ignore', fd, 'inherit'] })
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000)
    const [code] = await once(proc, 'exit') as [number | null]
    clearTimeout(timer)
    const out = fs.readFileSync(file, 'utf8')
    if (code !== 0 || !out.includes('done')) throw new Error(`${kind}: the child exited with ${String(code)}:\n${out.slice(-2000)}`)
    return [...out.matchAll(/DefineKeyedOwnPropertyInLiteral (\w+)/g)].map((m) => m[1]!)
  } finally {
    fs.closeSync(fd)
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const literal = Number(process.versions.node.split('.')[0]) < 26

t.test('bare node:http (the control): a GC with no tick queued turns the tick literal megamorphic on Node 20-24', { skip: literal ? false : 'Node 26 builds ticks with a class' }, async (t) => {
  const states = await cacheStates('bare')
  t.ok(states.length >= 4, `the tick literal's caches are printed (${states.join(' ')})`)
  t.ok(states.includes('MEGAMORPHIC'), 'the provocation reaches the slow path')
})

for (const kind of ['http', 'fastify']) {
  t.test(`${kind} door: process.nextTick stays monomorphic after a GC with no tick queued`, async (t) => {
    const states = await cacheStates(kind)
    if (literal) t.ok(states.length >= 4, `the tick literal's caches are printed (${states.join(' ')})`)
    else t.same(states, [], 'no tick literal on this line')
    t.notOk(states.includes('MEGAMORPHIC'), `no megamorphic cache (${states.join(' ')})`)
  })
}
