/**
 * The plan removes the hang ups it targets, on real sockets, on every Node line the suite runs on.
 * Durations are milliseconds; each margin is written next to its assertion.
 */
import t from 'tap'
import http from 'node:http'
import https from 'node:https'
import http2 from 'node:http2'
import net from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { configureServerTimeouts } from '../lib/http'
import { QUIET, listen, closeServer, get, RawConnection, statusOf } from './helpers/net'

function slowServer (delayMs: number): http.Server {
  return http.createServer((req, res) => {
    setTimeout(() => res.end('done'), delayMs)
  })
}

t.test('a slow handler under a too-short socket timeout hangs up without the plan and answers with it', async (t) => {
  // Bare: the socket inactivity timeout (150 ms) fires while the handler works (400 ms).
  const bare = slowServer(400)
  bare.timeout = 150
  const bareErr = await get(await listen(bare), '/').then(() => null, (err: NodeJS.ErrnoException) => err)
  t.equal(bareErr?.code, 'ECONNRESET', 'bare server: socket hang up')
  await closeServer(bare)

  // Planned: the socket timeout is derived from the handler budget, so it cannot fire first.
  const guarded = slowServer(400)
  const guard = configureServerTimeouts(guarded, { ...QUIET, handlerTimeout: 600, margin: 100 })
  t.equal(guarded.timeout, 0, 'the plan turns the inactivity timeout off: the deadline answers first')
  const answer = await get(await listen(guarded), '/')
  t.equal(answer.status, 200)
  t.equal(answer.body, 'done')
  guard.close()
  await closeServer(guarded)
})

t.test('a keep-alive connection reused just before the server closes it is reset without the plan and not with it', async (t) => {
  // The "proxy" keeps idle connections 1300 ms and reuses one at 1250 ms, ignoring the
  // Keep-Alive hint. Node closes an idle keep-alive socket keepAliveTimeout + 1000 ms (its
  // keep-alive buffer) after the response: with keepAliveTimeout 100 that is at ~1100 ms, before
  // the reuse (150 ms margin); with the plan (idle 1300 + margin 200 = 1500) at ~2500 ms.
  const REUSE_AT_MS = 1250
  async function reuseOnce (server: http.Server): Promise<string> {
    const conn = new RawConnection(await listen(server))
    await conn.ready()
    t.equal(statusOf(await conn.send('/')), 200)
    await sleep(REUSE_AT_MS)
    try {
      return String(statusOf(await conn.send('/')))
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? 'error'
    } finally {
      conn.destroy()
      await closeServer(server)
    }
  }
  const hello = (): http.Server => http.createServer((req, res) => res.end('hi'))

  const bare = hello()
  bare.keepAliveTimeout = 100
  const bareOutcome = await reuseOnce(bare)
  t.match(bareOutcome, /^(ECONNRESET|EPIPE)$/, 'bare server: the reused connection is reset')

  const guarded = hello()
  const guard = configureServerTimeouts(guarded, { ...QUIET, upstream: { kind: 'proxy', idleTimeout: 1300 }, margin: 200 })
  t.equal(guarded.keepAliveTimeout, 1500)
  t.equal(await reuseOnce(guarded), '200', 'planned server: the reuse is answered')
  guard.close()
})

t.test('after listen(): connectionsCheckingInterval is re-armed, so headersTimeout is enforced on time', async (t) => {
  const server = http.createServer((req, res) => res.end('ok'))
  const port = await listen(server) // Node armed its check with the 30 s default here
  const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: 300, headersTimeout: 200, requestTimeout: 400, margin: 50 })
  t.equal(guard.plan.connectionsCheckingInterval.value, 50)
  t.match(guard.explain(), /re-arming/)
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const t0 = performance.now()
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n') // headers never complete
  let raw = ''
  socket.on('data', (d) => { raw += d.toString('latin1') })
  await once(socket, 'close')
  const ms = performance.now() - t0
  t.match(raw, /^HTTP\/1\.1 408/, 'Node answers 408 for incomplete headers')
  // 200 ms headersTimeout + at most one 50 ms check; 1500 ms of slack for a loaded machine, far
  // below the 30 s the check would have waited without re-arming.
  t.ok(ms >= 190 && ms < 1750, `408 after ${Math.round(ms)} ms`)
  guard.close()
  await closeServer(server)
})

t.test('Node >= 18 semantics the planner relies on: idle keep-alive time does not count against headersTimeout', async (t) => {
  const server = http.createServer((req, res) => res.end('ok'))
  const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: 100, headersTimeout: 150, requestTimeout: 300, keepAliveTimeout: 2000, margin: 20 })
  const conn = new RawConnection(await listen(server))
  await conn.ready()
  t.equal(statusOf(await conn.send('/')), 200)
  await sleep(500) // idle for more than 3x headersTimeout, less than keepAliveTimeout
  t.equal(statusOf(await conn.send('/')), 200, 'the idle connection was not expired by headersTimeout')
  conn.destroy()
  guard.close()
  await closeServer(server)
})

t.test('configureServerTimeouts: applies the plan, refuses a second call and HTTP/2, close() restores', async (t) => {
  const server = http.createServer()
  const before = { timeout: server.timeout, keepAliveTimeout: server.keepAliveTimeout, headersTimeout: server.headersTimeout, requestTimeout: server.requestTimeout }
  const guard = configureServerTimeouts(server, { ...QUIET, upstream: 'aws-alb' })
  t.equal(server.keepAliveTimeout, 65_000)
  t.equal(server.timeout, guard.plan.timeout.value)
  t.equal(server.headersTimeout, guard.plan.headersTimeout.value)
  t.equal(server.requestTimeout, guard.plan.requestTimeout.value)
  t.equal((server as unknown as { connectionsCheckingInterval: number }).connectionsCheckingInterval, guard.plan.connectionsCheckingInterval.value)
  t.equal(server.listenerCount('timeout'), 1)
  t.throws(() => configureServerTimeouts(server, QUIET), { code: 'HG_ERR_ALREADY_CONFIGURED' })
  guard.close()
  guard.close() // idempotent
  t.same({ timeout: server.timeout, keepAliveTimeout: server.keepAliveTimeout, headersTimeout: server.headersTimeout, requestTimeout: server.requestTimeout }, before)
  t.equal(server.listenerCount('timeout'), 0)
  t.notOk(Object.hasOwn(server, 'emit'), 'emit wrapper removed')
  const again = configureServerTimeouts(server, { ...QUIET, upstream: 'nginx' })
  t.equal(server.keepAliveTimeout, 65_000)
  again.close()

  const h2 = http2.createServer()
  t.throws(() => configureServerTimeouts(h2 as unknown as http.Server), { code: 'HG_ERR_HTTP2_UNSUPPORTED', name: 'TypeError [HG_ERR_HTTP2_UNSUPPORTED]' })
  t.throws(() => configureServerTimeouts({} as http.Server), { code: 'HG_ERR_NOT_A_SERVER' })
  t.throws(() => configureServerTimeouts(http.createServer(), { handlerTimout: 5 } as object), { code: 'HG_ERR_OPT_UNKNOWN', message: /handlerTimout.*did you mean 'handlerTimeout'/i })
  const secure = https.createServer()
  const g2 = configureServerTimeouts(secure, { ...QUIET, upstream: 'aws-nlb' })
  t.equal(secure.keepAliveTimeout, 344_000)
  g2.close()
})

t.test('separate servers are independent', async (t) => {
  const a = http.createServer((req, res) => res.end('a'))
  const b = http.createServer((req, res) => res.end('b'))
  const ga = configureServerTimeouts(a, { ...QUIET, upstream: 'aws-alb' })
  const gb = configureServerTimeouts(b, { ...QUIET, upstream: 'aws-nlb' })
  t.not(a.keepAliveTimeout, b.keepAliveTimeout)
  const [pa, pb] = [await listen(a), await listen(b)]
  t.equal((await get(pa, '/')).body, 'a')
  t.equal((await get(pb, '/')).body, 'b')
  t.equal(ga.stats().requests, 1)
  t.equal(gb.stats().requests, 1)
  ga.close()
  t.equal((await get(pb, '/')).body, 'b')
  t.equal(gb.stats().requests, 2)
  gb.close()
  await closeServer(a)
  await closeServer(b)
})
