/**
 * What the guard must not add to a request's path (issue 12), through both doors: work an app that
 * does not ask for it would pay on every request. Costs themselves are counted by
 * `npm run bench -- --only=cost` (callgrind); these tests pin the behaviour that keeps them away.
 */
import t from 'tap'
import http, { type IncomingMessage } from 'node:http'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Fastify from 'fastify'
import { configureServerTimeouts, type HangupGuardOptions } from '../../lib/http'
import hangupGuard from '../../lib/fastify'
import { QUIET, listen, closeServer, RawConnection, statusOf } from '../helpers/net'

/** Node builds `req.headers` from `req.rawHeaders` on its first read, into this private slot. */
function headersBuilt (req: IncomingMessage): boolean {
  const slot = Object.getOwnPropertySymbols(req).find((s) => s.description === 'kHeaders')
  if (slot === undefined) throw new Error(`no kHeaders slot on IncomingMessage in Node ${process.version}: update this test`)
  return (req as unknown as Record<symbol, unknown>)[slot] != null
}

// Every per-request feature on: a deadline header, exclude patterns of each kind.
const ALL: HangupGuardOptions = {
  ...QUIET,
  handlerTimeout: 2000,
  deadlineHeader: 'x-envoy-expected-rq-timeout-ms',
  deadlineMargin: 50,
  exclude: ['/metrics', '/static/*', /^\/internal\//]
}

t.test('node:http door: the guard makes Node build req.headers no more than bare node:http does', async (t) => {
  // Node 20 builds them for every request (its requireHostHeader check); later lines only on a read.
  async function run (guarded: boolean): Promise<boolean[]> {
    const seen: boolean[] = []
    const server = http.createServer((req, res) => {
      seen.push(headersBuilt(req))
      res.end('ok')
    })
    const guard = guarded ? configureServerTimeouts(server, ALL) : null
    const port = await listen(server)
    const conn = new RawConnection(port)
    await conn.ready()
    t.equal(statusOf(await conn.send('/')), 200)
    t.equal(statusOf(await conn.send('/x', 'X-Envoy-Expected-Rq-Timeout-Ms: 1000\r\n')), 200)
    conn.destroy()
    guard?.close()
    await closeServer(server)
    return seen
  }
  const bare = await run(false)
  t.same(await run(true), bare, `as bare node:http on ${process.version}: ${JSON.stringify(bare)}`)
})

t.test('Fastify door: the plugin makes Node build req.headers no more than plain Fastify does', async (t) => {
  async function run (register: boolean): Promise<boolean[]> {
    const seen: boolean[] = []
    const app = Fastify()
    if (register) await app.register(hangupGuard, { ...ALL, underPressure: false })
    app.get('/*', async (request) => { seen.push(headersBuilt(request.raw)); return 'ok' })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = (app.server.address() as { port: number }).port
    const conn = new RawConnection(port)
    await conn.ready()
    t.equal(statusOf(await conn.send('/')), 200)
    t.equal(statusOf(await conn.send('/x', 'X-Envoy-Expected-Rq-Timeout-Ms: 1000\r\n')), 200)
    conn.destroy()
    await app.close()
    return seen
  }
  const plain = await run(false)
  t.same(await run(true), plain, `as plain Fastify: ${JSON.stringify(plain)}`)
})

t.test('the deadline header is read from the raw headers: any case; sent twice, ignored (as Node joins it)', async (t) => {
  const server = http.createServer((req, res) => { setTimeout(() => res.end('ok'), 400) })
  const guard = configureServerTimeouts(server, ALL)
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  const conn = new RawConnection(port)
  await conn.ready()
  t.equal(statusOf(await conn.send('/a', 'x-ENVOY-expected-rq-timeout-ms: 200\r\n')), 504, 'mixed case: the header shortens the budget')
  t.equal(statusOf(await conn.send('/b', 'X-Envoy-Expected-Rq-Timeout-Ms: 200\r\nX-Envoy-Expected-Rq-Timeout-Ms: 200\r\n')), 200, 'twice: "200, 200" is no number')
  conn.destroy()
  t.equal(guard.stats().answered.deadline, 1)
})

// A request for '/' once made the probe check read past the end of its URL (charCodeAt(1)):
// V8 deoptimised the front and recompiled it with a builtin call for that read, ~35
// instructions on every request. Both doors' servers run with --trace-deopt here (the bench
// modes, the package as built): no function of the request path may be deoptimised for a bound.
const benchLib = require('../../bench/lib.js') as {
  startServer: (mode: string, options: unknown, execArgv: string[], launch: { stdout: number, env: NodeJS.ProcessEnv }) => Promise<{ port: number, stop: () => Promise<void> }>
  plainEnv: () => NodeJS.ProcessEnv
}
const rawClient = require('../../bench/raw-client.js') as {
  RawClient: new (port: number, o: { connections: number, path?: string }) => { open: () => Promise<void>, run: (n: number, p: number, ms: number) => Promise<void>, close: () => void, tolerant: boolean }
}
/** The functions of both doors' request path (names as V8 reports them). */
const REQUEST_PATH = new Set(['guardedEmit', 'admit', 'answerProbe', 'healthKind', 'isPath', 'hangupGuardProbes', 'probeFront',
  'onRequest', 'admitRequest', 'routeConfig', 'budgetFor', 'verdict', 'judge', 'track', 'settle', 'settleFront', 'settleOnly', 'clientLeft'])
for (const mode of ['http-guarded', 'fastify-guard']) {
  t.test(`${mode === 'http-guarded' ? 'node:http' : 'Fastify'} door: requests for '/' and longer paths deoptimise nothing for a bound`, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-deopt-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const out = path.join(dir, 'trace')
    const fd = fs.openSync(out, 'w')
    // Without the test runner's NODE_OPTIONS: its --enable-source-maps runs Node's own source-map
    // parser in the server, whose deopts (Node 24 and 26) are not the request path's.
    const server = await benchLib.startServer(mode, {}, ['--trace-deopt'], { stdout: fd, env: benchLib.plainEnv() })
    try {
      for (const p of ['/', '/a', '/', '/health']) {
        const client = new rawClient.RawClient(server.port, { connections: 1, path: p })
        client.tolerant = true // Fastify answers 404 for the other paths
        await client.open()
        await client.run(3000, 1, 60_000)
        client.close()
      }
    } finally {
      await server.stop()
      fs.closeSync(fd)
    }
    const bounds = fs.readFileSync(out, 'utf8').split('\n').filter((l) => /bailout \(kind: deopt-\w+, reason: out of bounds\)/.test(l))
      .map((l) => /<JSFunction (\S+)/.exec(l)?.[1] ?? l)
    // The guard's own request path only: Node 24 and 26 also deoptimise their source-map parser.
    t.same(bounds.filter((name) => REQUEST_PATH.has(name)), [], 'no deoptimisation for an out-of-bounds read')
  })
}
