/**
 * Graceful drain on real sockets (127.0.0.1, ephemeral ports). Durations are in milliseconds and
 * the assertions wait on events; timing bounds carry a tolerance for a loaded 2-core machine.
 */
import t from 'tap'
import http, { type ServerResponse } from 'node:http'
import net, { type Socket } from 'node:net'
import { once } from 'node:events'
import { performance } from 'node:perf_hooks'
import { configureServerTimeouts } from '../lib/http'
import { deadlineOf } from '../lib/core/pending'
import { type DrainRun, FLUSH_MS, LINGER_MS, SWEEP_MS } from '../lib/core/drain'
import { serve, get, connectionsOf, deferred } from './helpers/drain'

/** Upper bound for "promptly" on a loaded machine (the drain itself needs SWEEP_MS at most). */
const PROMPT_MS = 1_000

t.test('grace: readiness fails at once, requests are still served, all with Connection: close', async (t) => {
  const entered = deferred()
  const release = deferred()
  const { handle, guard, port, server } = await serve(t, (req, res) => {
    if (req.url === '/held') {
      entered.resolve()
      release.promise.then(() => res.end('held'), () => {})
    } else res.end('ok')
  }, { drain: { delay: 600, timeout: 5_000 } })
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())

  t.equal(guard.drainState().phase, 'serving')
  const readiness = (): string | undefined => handle.health('readiness').body.checks['server:draining']?.[0]?.output
  t.equal(readiness(), undefined, 'ready while serving')
  const warm = await get(port, '/', agent)
  t.equal(warm.headers.connection, 'keep-alive', 'keep-alive before the drain')
  const held = get(port, '/held', false)
  await entered.promise

  const before = Date.now()
  const drained = handle.drain()
  const state = guard.drainState()
  t.equal(state.phase, 'grace', 'readiness turns at once')
  t.equal(state.delayMs, 600)
  t.equal(state.timeoutMs, 5_000)
  t.ok(state.startedAt !== null && state.startedAt >= before)
  t.match(readiness(), /^draining \(grace\) since \d{4}-.*: delay 600 ms, hard deadline 5000 ms$/, 'the readiness text operators read')

  const reused = await get(port, '/', agent)
  t.equal(reused.status, 200, 'served on a reused keep-alive connection during the delay')
  t.equal(reused.headers.connection, 'close')
  const fresh = await get(port, '/', false)
  t.equal(fresh.status, 200, 'served on a new connection during the delay')
  t.equal(fresh.headers.connection, 'close')
  release.resolve()
  const h = await held
  t.equal(h.status, 200)
  t.equal(h.headers.connection, 'close', 'a request admitted before the drain closes its connection too')

  const result = await drained
  t.equal(guard.drainState().phase, 'closed')
  t.equal(server.listening, false)
  t.equal(await connectionsOf(server), 0)
  t.match(result, { timedOut: false, forced: false, refused: 0, answeredAtDeadline: 0, cut: 0, openConnections: 0, requests: 2 })
  t.ok(result.durationMs >= 590, `lasted the delay (${result.durationMs} ms)`)
  t.ok(result.durationMs < 600 + PROMPT_MS, 'and closed promptly after it')
})

t.test('closing: idle keep-alive connections are closed and the drain resolves without waiting for the deadline', async (t) => {
  const { handle, server, port } = await serve(t, (_req, res) => res.end('ok'), { drain: { delay: 0, timeout: 10_000 } })
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  await Promise.all([get(port, '/', agent), get(port, '/', agent), get(port, '/', agent)])
  t.equal(await connectionsOf(server), 3, 'three idle keep-alive connections')
  const result = await handle.drain()
  t.equal(await connectionsOf(server), 0)
  t.equal(result.timedOut, false)
  t.ok(result.durationMs < PROMPT_MS, `closed in ${result.durationMs} ms`)
})

t.test('closing: a request on a connection still open gets 503 HG_ERR_DRAINING with Retry-After and Connection: close', async (t) => {
  let stream: ServerResponse | null = null
  const streaming = deferred()
  const { handle, guard, port } = await serve(t, (req, res) => {
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('a')
      stream = res
      streaming.resolve()
    } else res.end('ok')
  }, { drain: { delay: 0, timeout: 5_000 }, retryAfter: 7 })
  // One socket: the second request waits in the agent and goes out on the same connection as
  // soon as the streamed response (started with keep-alive before the drain) ends.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const first = get(port, '/stream', agent)
  await streaming.promise
  const drained = handle.drain()
  t.equal(guard.drainState().phase, 'closing')
  const second = get(port, '/after', agent)
  ;(stream as unknown as ServerResponse).end('b')
  const f = await first
  t.equal(f.status, 200)
  t.equal(f.body, 'ab', 'the response in flight completes')
  const s = await second
  t.equal(s.status, 503)
  t.equal(s.code, 'HG_ERR_DRAINING')
  t.equal(s.headers['retry-after'], '7')
  t.equal(s.headers.connection, 'close')
  const result = await drained
  t.match(result, { refused: 1, timedOut: false, cut: 0 })
  t.equal(handle.stats().answered.draining, 1)
})

t.test('hard deadline: a handler still running gets its 503 before its connection closes; drain() is idempotent', async (t) => {
  const entered = deferred()
  let aborted: unknown = null
  const { handle, guard, server, port } = await serve(t, (req) => {
    const d = deadlineOf(req)!
    d.signal.addEventListener('abort', () => { aborted = d.signal.reason })
    entered.resolve()
  }, { drain: { delay: 5_000, timeout: 20_000 } })
  const answer = get(port, '/never', false)
  await entered.promise
  const drained = handle.drain({ delay: 0, timeout: '300ms' })
  t.equal(handle.drain(), drained, 'a second drain() returns the same promise')
  t.equal(handle.drain({ delay: 1 }), drained, 'whatever its options')
  t.match(guard.drainState(), { phase: 'closing', delayMs: 0, timeoutMs: 300 })

  const a = await answer
  t.equal(a.status, 503)
  t.equal(a.code, 'HG_ERR_SHUTDOWN')
  t.equal(a.headers.connection, 'close')
  t.equal(a.headers['retry-after'], '5')
  t.match(aborted, { code: 'HG_ERR_SHUTDOWN' }, "the handler's signal aborts with the shutdown error")

  const result = await drained
  t.match(result, { timedOut: true, forced: false, answeredAtDeadline: 1, cut: 0, openConnections: 0 })
  t.ok(result.durationMs >= 295 && result.durationMs < 300 + FLUSH_MS + PROMPT_MS, `${result.durationMs} ms`)
  t.equal(handle.stats().answered.shutdown, 1)
  t.equal(await connectionsOf(server), 0)
  const run = guard.drainRun as unknown as Record<string, unknown>
  for (const timer of ['delayTimer', 'deadlineTimer', 'sweepTimer', 'flushTimer', 'lingerTimer']) t.equal(run[timer], null, `${timer} cleared`)
})

t.test('a handler whose own deadline passes first gets its 504, and the drain does not wait for the hard deadline', async (t) => {
  const entered = deferred()
  const { handle, port } = await serve(t, () => entered.resolve(), { handlerTimeout: 200, drain: { delay: 0, timeout: 10_000 } })
  const answer = get(port, '/never', false)
  await entered.promise
  const drained = handle.drain()
  const a = await answer
  t.equal(a.status, 504)
  t.equal(a.code, 'HG_ERR_DEADLINE')
  t.equal(a.headers.connection, 'close', 'admitted before the drain, answered during it: the connection closes')
  const result = await drained
  t.match(result, { timedOut: false, answeredAtDeadline: 0 })
  t.ok(result.durationMs < 200 + PROMPT_MS, `${result.durationMs} ms`)
})

t.test('hard deadline: a response already started is cut, counted, and its socket destroyed', async (t) => {
  const started = deferred()
  const { handle, server, port } = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('partial')
    started.resolve()
  }, { drain: { delay: 0, timeout: 200 } })
  const answer = get(port, '/', false).then(() => null, (err: Error & { code?: string }) => err)
  await started.promise
  const result = await handle.drain()
  t.match(result, { timedOut: true, cut: 1, answeredAtDeadline: 0 })
  t.equal(handle.stats().cut.shutdown, 1)
  t.ok(await answer, 'the client sees the cut (an incident, counted)')
  t.equal(await connectionsOf(server), 0)
})

t.test('a response still flushing when the listener closes is delivered whole', async (t) => {
  const SIZE = 48 * 1024 * 1024
  const ended = deferred()
  const { handle, port } = await serve(t, (_req, res) => {
    res.end(Buffer.alloc(SIZE, 97))
    ended.resolve()
  }, { drain: { delay: 0, timeout: 10_000 } })
  const paused = deferred<http.IncomingMessage>()
  const received = new Promise<number>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/big', agent: false }, (res) => {
      res.pause()
      let bytes = 0
      res.on('data', (chunk: Buffer) => { bytes += chunk.length })
      res.on('end', () => resolve(bytes))
      res.on('error', reject)
      res.on('aborted', () => reject(new Error(`aborted after ${bytes} bytes`)))
      paused.resolve(res)
    })
    req.on('error', reject)
  })
  const res = await paused.promise
  await ended.promise
  t.equal(handle.stats().inFlight, 1, 'the response is ended but still flushing')
  const drained = handle.drain()
  res.resume()
  t.equal(await received, SIZE)
  const result = await drained
  t.match(result, { cut: 0, timedOut: false })
})

t.test('force() (a second signal) brings the hard deadline forward', async (t) => {
  const entered = deferred()
  const { handle, guard, port } = await serve(t, () => entered.resolve(), { drain: { delay: 5_000, timeout: 20_000 } })
  const answer = get(port, '/never', false)
  await entered.promise
  const drained = handle.drain()
  t.equal(guard.drainState().phase, 'grace')
  ;(guard.drainRun as DrainRun).force()
  const a = await answer
  t.equal(a.code, 'HG_ERR_SHUTDOWN')
  const result = await drained
  t.match(result, { forced: true, timedOut: true, answeredAtDeadline: 1 })
  t.ok(result.durationMs < FLUSH_MS + PROMPT_MS, `${result.durationMs} ms`)
})

t.test('a server that is not listening drains at once', async (t) => {
  const server = http.createServer((_req, res) => res.end())
  const handle = configureServerTimeouts(server, { drain: { delay: 0, timeout: 1_000 } })
  t.teardown(() => handle.close())
  const result = await handle.drain()
  t.match(result, { timedOut: false, requests: 0, openConnections: 0 })
})

t.test('the server closed by the application during the delay ends the drain', async (t) => {
  const { handle, server, guard } = await serve(t, (_req, res) => res.end(), { drain: { delay: 10_000, timeout: 20_000 } })
  const drained = handle.drain()
  server.close()
  const result = await drained
  t.equal(result.timedOut, false)
  t.equal(guard.drainState().phase, 'closed')
})

t.test('options: defaults, per-call overrides and mistakes', async (t) => {
  const { handle, guard } = await serve(t, (_req, res) => res.end())
  t.match(guard.drainState(), { phase: 'serving', startedAt: null, delayMs: 5_000, timeoutMs: 30_000 }, 'defaults: 5 s delay, 30 s deadline')
  await t.rejects(handle.drain({ dely: 0 } as never), { code: 'HG_ERR_OPT_UNKNOWN' })
  await t.rejects(handle.drain(null as never), { code: 'HG_ERR_OPT_TYPE' })
  await t.rejects(handle.drain({ delay: '2s', timeout: '1s' }), { code: 'HG_ERR_OPT_RANGE' })
  await t.rejects(handle.drain({ timeout: 'soon' }), { code: 'HG_ERR_OPT_DURATION' })
  t.equal(guard.drainState().phase, 'serving', 'a rejected drain() starts nothing')
  const drained = handle.drain({ timeout: '400ms' })
  t.match(guard.drainState(), { delayMs: 400, timeoutMs: 400 }, 'a per-call timeout alone caps the configured delay')
  t.equal((await drained).durationMs >= 395, true, 'a listening server is served through the delay')
  await t.rejects(configureServerTimeouts(http.createServer()).drain({ delay: -1 }), { code: 'HG_ERR_OPT_DURATION' })

  const closed = configureServerTimeouts(http.createServer())
  closed.close()
  await t.rejects(closed.drain(), { code: 'HG_ERR_CLOSED' })
  t.throws(() => configureServerTimeouts(http.createServer(), { drain: { delay: '10s', timeout: '5s' } }), { code: 'HG_ERR_OPT_RANGE' })
})

t.test('handleSignals: installed with process.once, removed by close(); a bad value installs nothing', async (t) => {
  const before = [process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]
  const handle = configureServerTimeouts(http.createServer(), { handleSignals: true })
  t.same([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')], [before[0]! + 1, before[1]! + 1])
  handle.close()
  t.same([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')], before, 'close() removes them')
  const server = http.createServer()
  t.throws(() => configureServerTimeouts(server, { handleSignals: 'yes' as never }), { code: 'HG_ERR_OPT_TYPE' })
  t.same([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')], before)
  configureServerTimeouts(server).close()
  t.same([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')], before, 'off by default')
})

t.test('drain state is per server', async (t) => {
  const a = await serve(t, (_req, res) => res.end('a'), { drain: { delay: 0, timeout: 1_000 } })
  const b = await serve(t, (_req, res) => res.end('b'), { drain: { delay: 0, timeout: 1_000 } })
  await a.handle.drain()
  t.equal(b.guard.drainState().phase, 'serving', 'drain state is per server')
  t.equal((await get(b.port, '/')).body, 'b')
})

t.test('a keep-alive connection left idle by a response that ended during the drain is closed after SWEEP_MS', async (t) => {
  let stream: ServerResponse | null = null
  const streaming = deferred()
  const { handle, server, port } = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('a')
    stream = res
    streaming.resolve()
  }, { drain: { delay: 0, timeout: 10_000 } })
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  const answer = get(port, '/stream', agent)
  await streaming.promise
  const drained = handle.drain()
  const res = stream as unknown as ServerResponse
  const settledAt = once(res, 'close').then(() => performance.now())
  const closedAt = once(server, 'close').then(() => performance.now())
  res.end('b')
  const a = await answer
  t.equal(a.headers.connection, 'keep-alive', 'headers sent before the drain: the client may reuse the connection')
  const result = await drained
  // 2 ms: libuv timers run on a millisecond loop clock, performance.now() does not.
  const open = await closedAt - await settledAt
  t.ok(open >= SWEEP_MS - 2, `left open ${Math.round(open)} ms (SWEEP_MS ${SWEEP_MS}) for a request to come (it would get a 503)`)
  t.match(result, { timedOut: false, cut: 0, refused: 0 })
  t.ok(result.durationMs < 10_000 - PROMPT_MS, 'closed long before the deadline')
  t.equal(await connectionsOf(server), 0)
})

t.test('hard deadline: a response still flushing gets FLUSH_MS, then is cut and counted', async (t) => {
  const SIZE = 48 * 1024 * 1024
  const ended = deferred()
  const { handle, server, port } = await serve(t, (_req, res) => {
    res.end(Buffer.alloc(SIZE, 97))
    ended.resolve()
  }, { drain: { delay: 0, timeout: 100 } })
  const response = deferred<http.IncomingMessage>()
  http.get({ host: '127.0.0.1', port, path: '/big', agent: false }, (res) => {
    res.pause() // does not read until the drain is over
    response.resolve(res)
  }).on('error', () => {})
  const res = await response.promise
  await ended.promise
  const result = await handle.drain()
  t.match(result, { timedOut: true, cut: 1, answeredAtDeadline: 0 })
  t.ok(result.durationMs >= 100 + FLUSH_MS - 10, `waited FLUSH_MS before destroying (${result.durationMs} ms)`)
  t.equal(handle.stats().cut.shutdown, 1)
  let bytes = 0
  res.on('data', (chunk: Buffer) => { bytes += chunk.length })
  const closed = new Promise((resolve) => res.on('close', resolve))
  res.on('error', () => {})
  res.resume()
  await closed
  t.ok(!res.complete && bytes < SIZE, `the client sees the cut (${bytes} of ${SIZE} bytes)`)
  t.equal(await connectionsOf(server), 0)
})

t.test('connections the http server does not track (upgraded) do not keep the drain pending forever', async (t) => {
  const upgraded: Socket[] = []
  const { handle, server, port } = await serve(t, (_req, res) => res.end(), { drain: { delay: 0, timeout: 100 } })
  server.on('upgrade', (_req, socket: Socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n')
    upgraded.push(socket)
  })
  t.teardown(() => { for (const s of upgraded) s.destroy() })
  const switched = new Promise<Socket>((resolve, reject) => {
    http.request({ host: '127.0.0.1', port, headers: { connection: 'Upgrade', upgrade: 'test' }, agent: false })
      .on('upgrade', (_res, socket: Socket) => resolve(socket)).on('error', reject).end()
  })
  const clientSocket = await switched
  t.teardown(() => clientSocket.destroy())
  const warned = once(process, 'warning')
  const result = await handle.drain()
  t.match(result, { openConnections: 1 })
  t.ok(result.durationMs >= 100 + LINGER_MS - 10, `resolved after LINGER_MS (${result.durationMs} ms)`)
  const [warning] = await warned as [Error]
  t.match(warning.message, /1 connection\(s\) still open .*upgraded sockets/)
  const closed = once(server, 'close')
  for (const s of upgraded) s.destroy()
  await closed
  t.pass('the server closes once the application closes them')
})

t.test('a keep-alive connection reused just as the listener closes gets 503, not a reset', async (t) => {
  const { handle, port } = await serve(t, (_req, res) => res.end('ok'), { drain: { delay: 0, timeout: 10_000 } })
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.setEncoding('utf8')
  let raw = ''
  const first = new Promise<void>((resolve) => {
    socket.on('data', (chunk: string) => {
      raw += chunk
      if (raw.endsWith('\r\n\r\nok')) resolve()
    })
  })
  socket.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\n')
  await first
  t.match(raw, /\r\nconnection: keep-alive\r\n/i, 'the connection is idle, kept alive')
  raw = ''
  const drained = handle.drain() // the listener closes now; Node counts the connection as idle
  socket.write('GET /second HTTP/1.1\r\nHost: x\r\n\r\n') // the client reuses it at that moment
  await once(socket, 'end')
  t.match(raw, /^HTTP\/1\.1 503 /)
  t.match(raw, /\r\nconnection: close\r\n/i)
  t.match(raw, /"code":"HG_ERR_DRAINING"/)
  t.match(await drained, { refused: 1, timedOut: false })
})
