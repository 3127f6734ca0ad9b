/**
 * Issue 10, item 5: failures that used to vanish. A drain started by a signal that rejects
 * (an onClose hook throws) let the process exit 0; an expired deadline whose answer throws was
 * never answered nor counted; a throwing sampler listener stopped the others.
 */
import t from 'tap'
import http from 'node:http'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { configureServerTimeouts } from '../../lib/index'
import { acquireSampler, SAMPLE_INTERVAL_MS } from '../../lib/core/sampler'
import { listen, closeServer, get, until, QUIET } from '../helpers/net'

const root = path.resolve(__dirname, '..', '..')

// The built package, as in test/fastify-signals.test.ts (npm test builds dist/ first).
const CHILD = `
  const Fastify = require('fastify')
  const hangupGuard = require('hangup-guard/fastify')
  ;(async () => {
    const app = Fastify()
    await app.register(hangupGuard, { handleSignals: true, drain: { delay: 0, timeout: '2s' }, pressure: false, watchdog: false })
    app.addHook('onClose', async () => { throw new Error('the database pool would not close') })
    await app.listen({ port: 0, host: '127.0.0.1' })
    process.kill(process.pid, 'SIGTERM')
  })()
`

t.test('a drain started by a signal that fails is reported, and the process exits 1', async (t) => {
  const { NODE_OPTIONS: _, ...env } = process.env // as a user's process: without tap's --no-warnings
  const child = spawn(process.execPath, ['-e', CHILD], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c })
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  const [code, signal] = await once(child, 'exit') as [number | null, string | null]
  clearTimeout(timer)
  t.equal(signal, null)
  t.equal(code, 1, 'the exit status says the shutdown failed')
  t.match(err, /the drain started by a signal failed: Error: the database pool would not close/)
})

t.test('an expired deadline whose answer throws is cut and counted, not left hanging', async (t) => {
  const server = http.createServer((req, res) => {
    // A middleware that wraps end() and breaks it (as a faulty compression layer would).
    res.end = (() => { throw new Error('broken end') }) as unknown as typeof res.end
  })
  const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: 100, margin: 50 })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  const err = await get(port, '/').then(() => null, (e: NodeJS.ErrnoException) => e)
  t.ok(err !== null, 'the client learns at once (a reset), instead of waiting forever')
  t.equal(guard.stats().cut.deadline, 1, 'counted as cut')
  await until(() => guard.stats().inFlight === 0)
  t.pass('settled')
})

t.test('a throwing sampler listener neither stops the others nor the sampling', async (t) => {
  const sampler = acquireSampler()
  t.teardown(() => sampler.release())
  let calls = 0
  const warned = once(process, 'warning')
  sampler.onSample(() => { throw new Error('listener bug') })
  const done = new Promise<void>((resolve) => sampler.onSample(() => { if (++calls === 2) resolve() }))
  const timer = setTimeout(() => {}, 3 * SAMPLE_INTERVAL_MS + 1000) // keeps the loop alive (the sampler is unref'd)
  await done
  clearTimeout(timer)
  t.equal(calls, 2, 'the next listener ran on two samples in a row')
  const [warning] = await warned as [Error]
  t.match(warning.message, /a sampler listener threw: listener bug/)
})
