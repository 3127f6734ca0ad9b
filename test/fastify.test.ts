/**
 * The Fastify door on real sockets (listen on 127.0.0.1, undici and node:http clients): deadlines
 * answered through the reply pipeline, route budgets, late sends, signals, accounting.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { Agent as UndiciAgent, request as undiciRequest } from 'undici'
import hangupGuard from '../lib/fastify'
import { bindingOf } from '../lib/core/bind'
import { DrainPhase } from '../lib/core/guard'
import { get } from './helpers/net'

// Timing tolerance: answers may come late by event-loop lag on a loaded 2-core machine, never early.
const LATE_MS = 250

interface LogLine { level: number, msg: string, err?: { code?: string } }

async function start (options: hangupGuard.Options, routes: (app: FastifyInstance) => void, fastifyOptions: FastifyServerOptions = {}): Promise<{ app: FastifyInstance, port: number, logs: LogLine[] }> {
  const logs: LogLine[] = []
  const app = Fastify({ ...fastifyOptions, logger: { level: 'debug', stream: { write: (line: string) => { logs.push(JSON.parse(line)) } } } })
  // Stall and pressure shedding off (they have their own tests): on a loaded 2-core machine a
  // scheduling hiccup longer than these short budgets would rightly be answered 503 HG_ERR_STALLED.
  await app.register(hangupGuard, { pressure: false, ...options })
  routes(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => {
    app.server.closeAllConnections()
    await app.close()
  })
  return { app, port: (app.server.address() as net.AddressInfo).port, logs }
}

function noisy (logs: LogLine[]): LogLine[] {
  return logs.filter((l) => l.level >= 40)
}

t.test('a slow route gets 504 problem+json at its budget (node:http Agent), counted', async (t) => {
  const { app, port, logs } = await start({ handlerTimeout: 200, margin: 100 }, (app) => {
    app.get('/slow/:id', async () => { await sleep(600); return { late: true } })
  })
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  const answer = await get(port, '/slow/1?x=1', { agent })
  t.equal(answer.status, 504)
  t.equal(answer.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.equal(answer.headers['cache-control'], 'no-store')
  t.same(JSON.parse(answer.body), { type: 'urn:hangup-guard:error:hg_err_deadline', title: 'Gateway Timeout', status: 504, detail: 'The handler did not answer within its 200 ms budget', code: 'HG_ERR_DEADLINE' })
  t.ok(answer.ms >= 195 && answer.ms < 200 + LATE_MS, `504 after ${Math.round(answer.ms)} ms`)
  const stats = app.hangupGuard.stats()
  t.equal(stats.requests, 1)
  t.equal(stats.answered.deadline, 1)
  await sleep(500)
  t.equal(app.hangupGuard.stats().inFlight, 0)
  t.same(noisy(logs), [], 'the late return is not logged as a warning or an error')
  const completed = logs.find((l) => l.msg === 'request completed') as unknown as { res: { statusCode: number } }
  t.equal(completed.res.statusCode, 504, "Fastify's access log sees the 504")
})

t.test('route budgets: config.hangupGuard.timeout shorter, longer than the socket backstop, and false for a stream (undici)', async (t) => {
  const { port } = await start({ handlerTimeout: 300, margin: 100 }, (app) => {
    app.get('/ping', async () => 'pong')
    app.get('/short', { config: { hangupGuard: { timeout: 100 } } }, async () => { await sleep(400); return 'late' })
    // The plan's socket timeout is 400 ms; the route's 900 ms budget moves it for its requests.
    app.get('/long', { config: { hangupGuard: { timeout: '900ms' } } }, async () => { await sleep(650); return 'long' })
    const slowStream = (): Readable => Readable.from((async function * () {
      for (let i = 0; i < 5; i++) { yield `chunk${i}\n`; await sleep(150) }
    })())
    app.get('/stream', { config: { hangupGuard: { timeout: false } } }, async (req, reply) => {
      t.equal(req.deadline?.deadline, Infinity, 'no deadline on the route')
      return reply.type('text/plain').send(slowStream())
    })
    app.get('/stream-guarded', async (req, reply) => reply.type('text/plain').send(slowStream()))
  })
  // Warm-up: the first undici request sets up its dispatcher, which the timing below must not include.
  t.equal(await (await undiciRequest(`http://127.0.0.1:${port}/ping`)).body.text(), 'pong')
  const t0 = performance.now()
  const short = await undiciRequest(`http://127.0.0.1:${port}/short`)
  const shortMs = performance.now() - t0
  t.equal(short.statusCode, 504)
  t.match(await short.body.json(), { code: 'HG_ERR_DEADLINE', detail: 'The handler did not answer within its 100 ms budget' })
  t.ok(shortMs >= 95 && shortMs < 100 + LATE_MS, `504 after ${Math.round(shortMs)} ms`)

  const long = await undiciRequest(`http://127.0.0.1:${port}/long`)
  t.equal(long.statusCode, 200)
  t.equal(await long.body.text(), 'long')

  const stream = await undiciRequest(`http://127.0.0.1:${port}/stream`)
  t.equal(stream.statusCode, 200)
  t.equal(await stream.body.text(), 'chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n', 'a stream outlives the default budget when its route turns the deadline off')

  const guarded = await undiciRequest(`http://127.0.0.1:${port}/stream-guarded`)
  t.equal(guarded.statusCode, 200, 'the response had started')
  await t.rejects(guarded.body.text(), 'a started response past its deadline is cut, not left hanging')
})

t.test('late reply.send and raw writes after the 504 crash nothing, add nothing to the wire, log no warning (undici keep-alive)', async (t) => {
  const errors: Error[] = []
  const onError = (err: Error): void => { errors.push(err) }
  process.on('uncaughtException', onError)
  t.teardown(() => { process.removeListener('uncaughtException', onError) })
  let lateDone!: () => void
  const late = new Promise<void>((resolve) => { lateDone = resolve })
  const { app, port, logs } = await start({ handlerTimeout: 100, margin: 50 }, (app) => {
    app.get('/next', async () => 'next')
    app.get('/callback', (req, reply) => {
      reply.header('content-type', 'text/html').header('x-request-marker', 'kept')
      setTimeout(() => {
        reply.code(200).header('x-late', '1').send('late')
        reply.raw.setHeader('x-raw', '1')
        reply.raw.writeHead(200, { 'content-length': 4 })
        reply.raw.write('late')
        reply.raw.end('!', () => lateDone())
      }, 300)
    })
  })
  const dispatcher = new UndiciAgent({ connections: 1, pipelining: 1 })
  t.teardown(() => dispatcher.close())
  const first = await undiciRequest(`http://127.0.0.1:${port}/callback`, { dispatcher })
  t.equal(first.statusCode, 504)
  t.equal(first.headers['content-type'], 'application/problem+json; charset=utf-8', 'the content-type the handler set is replaced')
  t.equal(first.headers['x-request-marker'], 'kept', 'other headers set before stay, as Fastify keeps them for errors')
  t.equal((await first.body.json() as { code: string }).code, 'HG_ERR_DEADLINE')
  await late
  const next = await undiciRequest(`http://127.0.0.1:${port}/next`, { dispatcher })
  t.equal(next.statusCode, 200)
  t.equal(await next.body.text(), 'next', 'the same connection carries the next answer intact')
  await sleep(20)
  t.same(errors, [], 'no uncaught ERR_HTTP_HEADERS_SENT / ERR_STREAM_WRITE_AFTER_END')
  t.same(noisy(logs), [], 'no FST_ERR_REP_ALREADY_SENT warning')
  t.ok(logs.some((l) => l.level === 20 && /reply\.send after the guard answered/.test(l.msg)), 'the late send is logged at debug level')
  t.equal(app.hangupGuard.stats().answered.deadline, 1)
})

t.test('request.deadline: the signal aborts with the coded reason; a handler that gives up is not logged as an error', async (t) => {
  let reason: unknown
  let remainingAtStart = -1
  const { port, logs } = await start({ handlerTimeout: 150, margin: 100 }, (app) => {
    app.get('/work', async (req) => {
      const deadline = req.deadline!
      remainingAtStart = deadline.remaining()
      deadline.signal.addEventListener('abort', () => { reason = deadline.signal.reason })
      await sleep(2000, undefined, { signal: deadline.signal })
      return 'never'
    })
  })
  const answer = await get(port, '/work')
  t.equal(answer.status, 504)
  t.ok(remainingAtStart > 100 && remainingAtStart <= 150, `remaining() ${remainingAtStart}`)
  await sleep(30)
  t.match(reason, { code: 'HG_ERR_DEADLINE', statusCode: 504 })
  t.same(noisy(logs), [], "the AbortError is logged at debug, not as 'Promise errored'")
  t.ok(logs.some((l) => l.level === 20 && l.msg === 'Promise errored, but reply.sent = true was set'))
})

t.test('an app error handler, onSend hooks and timeoutStatus see a proper coded error', async (t) => {
  const seen: Array<{ code: string, statusCode: number }> = []
  const sent: number[] = []
  const { port } = await start({ handlerTimeout: 100, margin: 50, timeoutStatus: 503, retryAfter: 7 }, (app) => {
    app.setErrorHandler((err: Error & { code: string, statusCode: number }, req, reply) => {
      seen.push({ code: err.code, statusCode: err.statusCode })
      return reply.send({ mine: err.code })
    })
    app.addHook('onSend', async (req, reply) => { sent.push(reply.statusCode) })
    app.get('/slow', async () => { await sleep(400); return 'late' })
  })
  const answer = await undiciRequest(`http://127.0.0.1:${port}/slow`)
  t.equal(answer.statusCode, 503)
  t.same(await answer.body.json(), { mine: 'HG_ERR_DEADLINE' })
  t.same(seen, [{ code: 'HG_ERR_DEADLINE', statusCode: 503 }])
  t.same(sent, [503])
  t.equal(answer.headers['retry-after'], '7', 'a 503 deadline answer carries Retry-After, as on the plain door')
})

t.test("a route with Fastify's own handlerTimeout gets Fastify's deadline only", async (t) => {
  const { app, port } = await start({ handlerTimeout: 1000 }, (app) => {
    app.get('/fastify-deadline', { handlerTimeout: 150 }, async () => { await sleep(500); return 'late' })
  })
  const answer = await get(port, '/fastify-deadline')
  t.equal(answer.status, 503)
  t.equal(JSON.parse(answer.body).code, 'FST_ERR_HANDLER_TIMEOUT')
  t.ok(answer.ms < 150 + LATE_MS)
  t.equal(app.hangupGuard.stats().answered.deadline, 0, 'no second deadline ran')
  t.equal(app.hangupGuard.stats().requests, 1, 'still counted')
})

t.test('a body that stops arriving gets its 504 with Connection: close at the deadline (raw socket)', async (t) => {
  const { app, port } = await start({ handlerTimeout: 200, margin: 100 }, (app) => {
    app.post('/upload', async () => 'parsed')
  })
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":')
  let raw = ''
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => { raw += d })
  const t0 = performance.now()
  await once(socket, 'end')
  const ms = performance.now() - t0
  t.match(raw, /^HTTP\/1\.1 504 /)
  t.match(raw, /connection: close/i)
  t.match(raw, /HG_ERR_DEADLINE/)
  t.ok(ms < 200 + LATE_MS, `after ${Math.round(ms)} ms`)
  t.equal(app.hangupGuard.stats().answered.deadline, 1)
})

t.test('a client that leaves is counted once, with a user onRequestAbort hook present', async (t) => {
  let aborts = 0
  const { app, port } = await start({ handlerTimeout: 2000 }, (app) => {
    app.addHook('onRequestAbort', (req, done) => { aborts++; done() })
    app.get('/wait', async () => { await sleep(400); return 'late' })
  })
  const req = http.get({ host: '127.0.0.1', port, path: '/wait', agent: false })
  req.on('error', () => {})
  await sleep(100)
  req.destroy()
  await sleep(150)
  const stats = app.hangupGuard.stats()
  t.equal(stats.clientGone.count, 1)
  t.equal(stats.inFlight, 0)
  t.equal(aborts, 1, "the user's hook still runs")
})

t.test('refusals (drain closing) answer 503 through the reply with Retry-After and Connection: close', async (t) => {
  const { app, port } = await start({ handlerTimeout: 1000, retryAfter: 3 }, (app) => {
    app.get('/', async () => 'ok')
  })
  bindingOf(app.server)!.guard.enterPhase(DrainPhase.Closing)
  t.teardown(() => { bindingOf(app.server)!.guard.enterPhase(DrainPhase.None) })
  const answer = await get(port, '/')
  t.equal(answer.status, 503)
  t.equal(answer.headers['retry-after'], '3')
  t.equal(answer.headers.connection, 'close')
  t.equal(JSON.parse(answer.body).code, 'HG_ERR_DRAINING')
  t.equal(app.hangupGuard.stats().answered.draining, 1)
  t.equal(app.hangupGuard.stats().requests, 1)
})

t.test('drain() through the decorator lets the in-flight request finish, then app.close() runs', async (t) => {
  const { app, port } = await start({ handlerTimeout: 2000, drain: { delay: 0, timeout: '2s' } }, (app) => {
    app.get('/work', async () => { await sleep(200); return 'done' })
  })
  const inFlight = get(port, '/work')
  await sleep(50)
  const result = await app.hangupGuard.drain()
  t.equal((await inFlight).body, 'done')
  t.equal(result.timedOut, false)
  t.equal(app.server.listening, false)
  await app.close()
  t.equal(bindingOf(app.server), undefined, 'onClose unbinds the server')
})

t.test('routes declared before the plugin get their config read at their first request', async (t) => {
  const app = Fastify()
  app.get('/early', { config: { hangupGuard: { timeout: 100 } } }, async () => { await sleep(400); return 'late' })
  await app.register(hangupGuard, { handlerTimeout: 1000, pressure: false })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const answer = await get(port(app), '/early')
  t.equal(answer.status, 504)
  t.match(JSON.parse(answer.body).detail, /100 ms budget/)
})

t.test('registered inside a plugin: only that context gets deadlines; the timeouts are per server', async (t) => {
  const app = Fastify()
  await app.register(async (api) => {
    await api.register(hangupGuard, { handlerTimeout: 100, margin: 50, timeout: 150, pressure: false })
    api.get('/api/slow', async () => { await sleep(300); return 'late' })
    t.ok(api.hasDecorator('hangupGuard'))
  })
  let deadline: unknown = 'unset'
  app.get('/outside', async (req) => { deadline = req.deadline; await sleep(50); return 'outside' })
  app.get('/outside-slow', async () => { await sleep(400); return 'late' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  t.equal(app.server.timeout, 150, 'the plan (with its explicit socket timeout) is applied to the one server')
  t.equal(app.hasDecorator('hangupGuard'), false, 'the decorator stays in its context')
  t.equal((await get(port(app), '/api/slow')).status, 504)
  const outside = await get(port(app), '/outside')
  t.equal(outside.status, 200)
  t.equal(deadline, undefined, 'no deadline outside the guarded context')
  const slow = await get(port(app), '/outside-slow')
  t.equal(slow.status, 504, "the server's socket backstop (timeout 150 ms) still answers instead of dropping")
  t.equal(JSON.parse(slow.body).code, 'HG_ERR_SOCKET_TIMEOUT')
})

function port (app: FastifyInstance): number {
  return (app.server.address() as net.AddressInfo).port
}
