/**
 * Explicit answers instead of dropped sockets (plain node:http door), on real sockets with real
 * clients: node:http Agent and undici.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import diagnosticsChannel from 'node:diagnostics_channel'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent as UndiciAgent, request as undiciRequest } from 'undici'
import { configureServerTimeouts, type HangupGuardOptions } from '../lib/http'
import { deadlineOf } from '../lib/core/pending'
import { INCIDENT_CHANNEL, type Incident } from '../lib/core/stats'
import { deadlineSchedulerState } from '../lib/core/deadline'
import { QUIET, listen, closeServer, get } from './helpers/net'

// Timing tolerance: answers may come late by event-loop lag on a loaded 2-core machine, never early.
const LATE_MS = 250

async function guarded (handler: http.RequestListener, options: HangupGuardOptions): Promise<{ server: http.Server, port: number, guard: ReturnType<typeof configureServerTimeouts> }> {
  const server = http.createServer(handler)
  const guard = configureServerTimeouts(server, { ...QUIET, ...options })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  return { server, port, guard }
}

t.test('a handler that overruns gets 504 at its deadline, not at the socket timeout (node:http Agent)', async (t) => {
  const { port, guard } = await guarded((req, res) => { setTimeout(() => res.end('late'), 600) }, { handlerTimeout: 200, margin: 100 })
  const agent = new http.Agent({ keepAlive: true })
  const answer = await get(port, '/slow?x=1', { agent })
  t.equal(answer.status, 504)
  t.equal(answer.headers['content-type'], 'application/problem+json; charset=utf-8')
  const body = JSON.parse(answer.body)
  t.same(body, { type: 'urn:hangup-guard:error:hg_err_deadline', title: 'Gateway Timeout', status: 504, detail: 'The handler did not answer within its 200 ms budget', code: 'HG_ERR_DEADLINE' })
  t.ok(answer.ms >= 195 && answer.ms < 200 + LATE_MS, `504 after ${Math.round(answer.ms)} ms`)
  t.equal(guard.stats().answered.deadline, 1)
  agent.destroy()
})

t.test('503 instead of 504 with timeoutStatus, and text/plain for clients that only take text', async (t) => {
  const { port } = await guarded(() => {}, { handlerTimeout: 100, timeoutStatus: 503, margin: 50 })
  const answer = await get(port, '/', { headers: { accept: 'text/plain' } })
  t.equal(answer.status, 503)
  t.equal(answer.headers['content-type'], 'text/plain; charset=utf-8')
  t.match(answer.body, /^503 Service Unavailable: .*HG_ERR_DEADLINE/)
})

t.test('writes after the 504 crash nothing and add nothing to the wire (undici keep-alive)', async (t) => {
  const errors: Error[] = []
  const onError = (err: Error): void => { errors.push(err) }
  process.on('uncaughtException', onError)
  t.teardown(() => { process.removeListener('uncaughtException', onError) })
  let lateDone!: () => void
  const late = new Promise<void>((resolve) => { lateDone = resolve })
  const { port } = await guarded((req, res) => {
    if (req.url === '/next') { res.end('next'); return }
    res.setHeader('content-type', 'text/html')
    setTimeout(() => {
      res.setHeader('x-late', '1')
      res.writeHead(200, { 'content-length': 4 })
      res.write('late')
      res.end('!', () => lateDone())
      res.flushHeaders()
    }, 300)
  }, { handlerTimeout: 100, margin: 50 })
  const dispatcher = new UndiciAgent({ connections: 1, pipelining: 1 })
  t.teardown(() => dispatcher.close())
  const first = await undiciRequest(`http://127.0.0.1:${port}/slow`, { dispatcher })
  t.equal(first.statusCode, 504)
  t.equal(first.headers['content-type'], 'application/problem+json; charset=utf-8', 'headers the handler set before are dropped')
  t.equal((await first.body.json() as { code: string }).code, 'HG_ERR_DEADLINE')
  await late
  const next = await undiciRequest(`http://127.0.0.1:${port}/next`, { dispatcher })
  t.equal(next.statusCode, 200)
  t.equal(await next.body.text(), 'next', 'the same connection carries the next answer intact')
  await sleep(20)
  t.same(errors, [], 'no uncaught ERR_STREAM_WRITE_AFTER_END / ERR_HTTP_HEADERS_SENT')
})

t.test('a response that started and then stalls is cut deliberately and reported as an incident', async (t) => {
  const incidents: Incident[] = []
  const published: Incident[] = []
  const onPublish = (msg: unknown): void => { published.push(msg as Incident) }
  diagnosticsChannel.subscribe(INCIDENT_CHANNEL, onPublish)
  t.teardown(() => { diagnosticsChannel.unsubscribe(INCIDENT_CHANNEL, onPublish) })
  const { port, guard } = await guarded((req, res) => { res.writeHead(200); res.write('partial') }, {
    handlerTimeout: 150, margin: 50, onIncident: (i) => incidents.push(i)
  })
  const err = await get(port, '/stream?id=7').then(() => null, (e: NodeJS.ErrnoException) => e)
  t.ok(err !== null, 'the client sees a truncated response, not a complete one')
  t.equal(guard.stats().cut.deadline, 1)
  t.equal(incidents.length, 1)
  t.match(incidents[0], { kind: 'cut', cause: 'deadline', method: 'GET', url: '/stream', route: '/stream', code: 'HG_ERR_DEADLINE', statusCode: null })
  t.ok(incidents[0]!.elapsedMs >= 145, `elapsed ${incidents[0]!.elapsedMs}`)
  t.same(published, incidents, 'the same incident is published on the diagnostics channel')
})

t.test('a client that aborts early is counted as wasted work and the handler signal aborts', async (t) => {
  let aborted: unknown = null
  let signalled!: () => void
  const done = new Promise<void>((resolve) => { signalled = resolve })
  const { port, guard } = await guarded((req) => {
    const d = deadlineOf(req)
    t.ok(d !== null)
    d!.signal.addEventListener('abort', () => { aborted = d!.signal.reason; signalled() })
  }, { handlerTimeout: 5000, margin: 100 })
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write('GET /work HTTP/1.1\r\nHost: x\r\n\r\n')
  await sleep(100)
  socket.destroy()
  await done
  t.match(aborted, { code: 'HG_ERR_CLIENT_GONE' })
  const stats = guard.stats()
  t.equal(stats.clientGone.count, 1)
  t.ok(stats.clientGone.wastedMs >= 90, `wasted ${stats.clientGone.wastedMs} ms`)
  t.equal(stats.inFlight, 0)
})

t.test('the deadline API: remaining(), extend(), clear(), deadline', async (t) => {
  const { port } = await guarded((req, res) => {
    const d = deadlineOf(req)!
    if (req.url === '/extend') {
      d.extend(300)
      t.ok(d.remaining() > 300)
      setTimeout(() => res.end('extended'), 250)
    } else if (req.url === '/clear') {
      d.clear()
      t.equal(d.remaining(), Infinity)
      t.equal(d.deadline, Infinity)
      setTimeout(() => res.end('cleared'), 250)
    } else {
      t.ok(Math.abs(d.deadline - (Date.now() + d.remaining())) < 20, 'deadline is epoch ms')
      t.throws(() => d.extend(-1), { code: 'HG_ERR_OPT_DURATION' })
      res.end('ok')
    }
  }, { handlerTimeout: 150, margin: 50 })
  t.equal((await get(port, '/extend')).body, 'extended')
  t.equal((await get(port, '/clear')).body, 'cleared')
  t.equal((await get(port, '/')).body, 'ok')
})

t.test('exclude takes routes out of the deadline; upgrade requests are never touched', async (t) => {
  const { server, port, guard } = await guarded((req, res) => {
    t.equal(deadlineOf(req)?.deadline ?? Infinity, req.url!.startsWith('/sse') || req.url === '/long' ? Infinity : deadlineOf(req)!.deadline)
    setTimeout(() => res.end('slow but excluded'), 250)
  }, { handlerTimeout: 100, margin: 50, exclude: ['/sse/*', '/long', /^\/re\d$/] })
  server.on('upgrade', (req, socket) => { socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n') })
  t.equal((await get(port, '/sse/events')).status, 200)
  t.equal((await get(port, '/long?q=1')).status, 200)
  t.equal((await get(port, '/re7')).status, 200)
  t.equal((await get(port, '/other')).status, 504)
  const up = await new Promise<number>((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', headers: { connection: 'upgrade', upgrade: 'test' } })
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end()
  })
  t.equal(up, 101)
  t.equal(guard.stats().requests, 4, 'the upgrade is not a guarded request')
})

t.test('an upstream deadline header shortens the budget; garbage in it is ignored', async (t) => {
  const { port } = await guarded((req, res) => { setTimeout(() => res.end('ok'), 400) }, {
    upstream: { kind: 'proxy', idleTimeout: 5000, deadlineHeader: 'x-envoy-expected-rq-timeout-ms' }, handlerTimeout: 2000, deadlineMargin: 100
  })
  const short = await get(port, '/', { headers: { 'x-envoy-expected-rq-timeout-ms': '300' } })
  t.equal(short.status, 504)
  t.ok(short.ms >= 195 && short.ms < 200 + LATE_MS, `504 after ${Math.round(short.ms)} ms (300 - 100 margin)`)
  for (const garbage of ['abc', '-5', '1e3', '99999999999999', '', '30 0']) {
    const answer = await get(port, '/', { headers: { 'x-envoy-expected-rq-timeout-ms': garbage } })
    t.equal(answer.status, 200, `ignored: ${JSON.stringify(garbage)}`)
  }
  const longer = await get(port, '/', { headers: { 'x-envoy-expected-rq-timeout-ms': '60000' } })
  t.equal(longer.status, 200, 'a longer upstream deadline does not extend the configured budget')
})

t.test('deadlineHeader option: on for the envoy preset, off with false, custom name', async (t) => {
  const { port } = await guarded((req, res) => { setTimeout(() => res.end('ok'), 300) }, { handlerTimeout: 2000, deadlineHeader: 'X-Request-Budget-Ms', deadlineMargin: 50 })
  t.equal((await get(port, '/', { headers: { 'x-request-budget-ms': '150' } })).status, 504)
  const off = await guarded((req, res) => { setTimeout(() => res.end('ok'), 300) }, { upstream: 'envoy', deadlineHeader: false })
  t.equal((await get(off.port, '/', { headers: { 'x-envoy-expected-rq-timeout-ms': '150' } })).status, 200)
  t.throws(() => configureServerTimeouts(http.createServer(), { deadlineHeader: 'bad header' }), { code: 'HG_ERR_OPT_TYPE' })
})

t.test('a socket that goes quiet mid-request gets 504 (or 408 while its body arrives), not a reset', async (t) => {
  const { port, guard } = await guarded(() => {}, { handlerTimeout: false, timeout: 200 })
  const quiet = await get(port, '/quiet')
  t.equal(quiet.status, 504)
  t.equal(JSON.parse(quiet.body).code, 'HG_ERR_SOCKET_TIMEOUT')
  t.equal(quiet.headers.connection, 'close')

  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789') // then silence
  let raw = ''
  socket.on('data', (d) => { raw += d.toString('latin1') })
  await once(socket, 'close')
  t.match(raw, /^HTTP\/1\.1 408 Request Timeout/)
  t.match(raw, /HG_ERR_REQUEST_BODY_TIMEOUT/)
  const stats = guard.stats()
  t.equal(stats.answered.socketTimeout, 1)
  t.equal(stats.answered.bodyTimeout, 1)
})

t.test('idle keep-alive sockets are still closed (and counted) once the guard listens to timeouts', async (t) => {
  const { port, guard } = await guarded((req, res) => res.end('ok'), { handlerTimeout: 100, keepAliveTimeout: 50, margin: 20 })
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  const t0 = performance.now()
  socket.resume()
  await once(socket, 'close')
  const ms = performance.now() - t0
  // keepAliveTimeout 50 + Node's 1000 ms keep-alive buffer; never earlier.
  t.ok(ms >= 1000 && ms < 1050 + 1000, `closed after ${Math.round(ms)} ms`)
  t.equal(guard.stats().idleClosed, 1)
})

t.test('the guard sees every request first, whether the handler was attached before or after, with no double handling', async (t) => {
  for (const order of ['before', 'after'] as const) {
    let calls = 0
    const handler: http.RequestListener = (req, res) => { calls++; setTimeout(() => res.end('x'), req.url === '/slow' ? 300 : 0) }
    const server = order === 'before' ? http.createServer(handler) : http.createServer()
    const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: 100, margin: 50 })
    if (order === 'after') server.on('request', handler)
    const port = await listen(server)
    t.equal((await get(port, '/')).status, 200, order)
    t.equal((await get(port, '/slow')).status, 504, order)
    t.equal(calls, 2, `${order}: each request reached the handler once`)
    t.equal(guard.stats().requests, 2)
    guard.close()
    t.equal((await get(port, '/slow')).status, 200, `${order}: after close() the guard is gone`)
    await closeServer(server)
  }
})

t.test('Express-style app: a function handler with next-style middleware on node:http', async (t) => {
  type Mw = (req: http.IncomingMessage, res: http.ServerResponse, next: () => void) => void
  const stack: Mw[] = [
    (req, res, next) => { res.setHeader('x-powered-by', 'mini'); next() },
    (req, res) => { if (req.url === '/slow') setTimeout(() => { res.statusCode = 200; res.end('late') }, 300); else res.end('hi') }
  ]
  const app = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    let i = 0
    const next = (): void => { const mw = stack[i++]; if (mw !== undefined) mw(req, res, next) }
    next()
  }
  const { port } = await guarded(app, { handlerTimeout: 100, margin: 50 })
  const ok = await get(port, '/')
  t.equal(ok.headers['x-powered-by'], 'mini')
  t.equal((await get(port, '/slow')).status, 504)
})

t.test('no timers or listeners are left behind', async (t) => {
  const server = http.createServer((req, res) => { if (req.url !== '/slow') res.end('ok') })
  const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: 100, margin: 50 })
  const port = await listen(server)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  await Promise.all(Array.from({ length: 200 }, (_, i) => get(port, i % 20 === 0 ? '/slow' : '/', { agent })))
  t.equal(guard.stats().inFlight, 0)
  t.equal(guard.stats().answered.deadline, 10)
  t.equal(deadlineSchedulerState().scheduled, 0, 'no deadline left scheduled')
  agent.destroy()
  guard.close()
  await closeServer(server)
})
