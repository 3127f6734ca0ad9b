/**
 * Composition with @fastify/under-pressure on real sockets: one registration, and its 503s
 * answered with hangup-guard's coded body, Retry-After and counters.
 */
import t from 'tap'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import underPressure from '@fastify/under-pressure'
import { request as undiciRequest } from 'undici'
import hangupGuard from '../lib/fastify'
import { bindingOf } from '../lib/core/bind'

async function listen (app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return (app.server.address() as net.AddressInfo).port
}

async function fetchOnce (port: number, path = '/'): Promise<{ status: number, headers: Record<string, unknown>, body: Record<string, unknown> }> {
  const res = await undiciRequest(`http://127.0.0.1:${port}${path}`)
  return { status: res.statusCode, headers: res.headers, body: await res.body.json() as Record<string, unknown> }
}

const unhealthy = async (): Promise<boolean> => false

for (const order of ['under-pressure first', 'hangup-guard first'] as const) {
  t.test(`a user-registered under-pressure (${order}) is not registered twice and sheds with the coded 503`, async (t) => {
    const app = Fastify()
    const registerUnderPressure = (): unknown => app.register(underPressure, { healthCheck: unhealthy, healthCheckInterval: 60_000 })
    if (order === 'under-pressure first') await registerUnderPressure()
    await app.register(hangupGuard, { retryAfter: 4 })
    if (order === 'hangup-guard first') await registerUnderPressure()
    app.get('/', async () => ({ ok: true }))
    const port = await listen(app)
    const answer = await fetchOnce(port)
    t.equal(answer.status, 503)
    t.equal(answer.headers['content-type'], 'application/problem+json; charset=utf-8')
    t.equal(answer.headers['retry-after'], '4')
    t.same(answer.body, {
      type: 'urn:hangup-guard:error:hg_err_overloaded',
      title: 'Service Unavailable',
      status: 503,
      detail: 'The server is overloaded; retry later',
      code: 'HG_ERR_OVERLOADED'
    })
    const stats = app.hangupGuard.stats()
    t.equal(stats.answered.overload, 1)
    t.equal(stats.requests, 1, 'counted once whichever hook ran first')
    t.equal(stats.inFlight, 0)
  })
}

t.test('thresholds with a user-registered under-pressure: HG_ERR_FASTIFY_UNDER_PRESSURE_REGISTERED', async (t) => {
  const app = Fastify()
  await app.register(underPressure, { maxEventLoopDelay: 1000 })
  await t.rejects(async () => { await app.register(hangupGuard, { underPressure: { maxEventLoopDelay: 500 } }) }, { code: 'HG_ERR_FASTIFY_UNDER_PRESSURE_REGISTERED' })
  await app.close()
})

t.test('underPressure: false leaves a user-registered under-pressure answering its own way', async (t) => {
  const app = Fastify()
  await app.register(underPressure, { healthCheck: unhealthy, healthCheckInterval: 60_000 })
  await app.register(hangupGuard, { underPressure: false })
  app.get('/', async () => ({ ok: true }))
  const answer = await fetchOnce(await listen(app))
  t.equal(answer.status, 503)
  t.equal(answer.body.code, 'FST_UNDER_PRESSURE')
  t.equal(app.hangupGuard.stats().answered.overload, 0)
})

t.test('hangup-guard registers under-pressure with its thresholds: a stalled loop sheds, then recovers; no status route', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, { handlerTimeout: 5000, underPressure: { maxEventLoopDelay: 20, sampleInterval: 200 } })
  t.equal(app.hasPlugin('@fastify/under-pressure'), true)
  app.get('/', async () => ({ ok: true }))
  app.get('/block', async () => {
    // under-pressure judges the mean delay of a sample window: (1000 + ~20 × 10 ms) / ~21 - 10 ≈ 47 ms > 20 ms.
    const end = Date.now() + 1000
    while (Date.now() < end);
    return { blocked: true }
  })
  const port = await listen(app)
  // under-pressure counts a window without readings as pressure, so the first answers may already be 503.
  const blocked = await fetchOnce(port, '/block')
  t.ok(blocked.status === 200 || blocked.body.code === 'HG_ERR_OVERLOADED', `/block: ${blocked.status}`)
  if (blocked.status !== 200) { const end = Date.now() + 1000; while (Date.now() < end); }
  let shed: Awaited<ReturnType<typeof fetchOnce>> | null = null
  for (let i = 0; i < 40 && shed === null; i++) {
    const answer = await fetchOnce(port)
    if (answer.status === 503) shed = answer
    else await sleep(5)
  }
  t.ok(shed, 'a request is shed after the stall')
  t.equal(shed?.body.code, 'HG_ERR_OVERLOADED')
  t.equal(shed?.body.detail, 'The server is overloaded; retry later', 'no internal reason in the public answer')
  t.equal(shed?.headers['retry-after'], '5', "the guard's default retryAfter")
  let recovered = false
  for (let i = 0; i < 100 && !recovered; i++) {
    await sleep(20)
    recovered = (await fetchOnce(port)).status === 200
  }
  t.ok(recovered, 'served again once the delay is back under the threshold')
  t.ok(app.hangupGuard.stats().answered.overload >= 1)
  t.equal((await undiciRequest(`http://127.0.0.1:${port}/status`)).statusCode, 404, "under-pressure's status route stays off")
  t.match(app.hangupGuard.explain(), /@fastify\/under-pressure registered by hangup-guard/)
})

t.test("underPressure.healthCheck passes through to under-pressure's health check", async (t) => {
  const app = Fastify()
  let calls = 0
  await app.register(hangupGuard, { underPressure: { healthCheck: async () => { calls++; return false }, healthCheckInterval: '1s' } })
  app.get('/', async () => ({ ok: true }))
  const answer = await fetchOnce(await listen(app))
  t.equal(answer.status, 503)
  t.equal(answer.body.code, 'HG_ERR_OVERLOADED')
  t.ok(calls >= 1)
})

t.test("underPressure: true mirrors the core's pressure verdict into under-pressure; probes are never shed", async (t) => {
  const app = Fastify()
  const details: Array<string | null> = []
  await app.register(hangupGuard, { underPressure: true, pressure: { healthCheck: () => false }, onIncident: (i) => details.push(i.detail) })
  app.get('/', async () => ({ ok: true }))
  const port = await listen(app)
  t.equal(app.isUnderPressure(), true, "under-pressure's own API reports the core's judgement")
  const shed = await fetchOnce(port)
  t.equal(shed.status, 503)
  t.equal(shed.body.code, 'HG_ERR_OVERLOADED')
  t.equal(shed.body.detail, 'The server is overloaded; retry later', 'the client is told nothing internal')
  t.match(details[0], /healthCheck returned false/, "the core's reason goes to the incident, not just 'healthCheck'")
  const live = await undiciRequest(`http://127.0.0.1:${port}/livez`)
  t.equal(live.statusCode, 200, 'liveness is not shed under pressure')
  t.equal(live.headers['content-type'], 'application/health+json', 'the core answers, as behind the node:http door')
  t.not((await live.body.json() as { status: string }).status, 'fail', "'pass', or 'warn' when the probe waited behind a stall on a loaded machine")
  const ready = await undiciRequest(`http://127.0.0.1:${port}/readyz`)
  t.equal(ready.statusCode, 503, 'readiness fails under pressure')
  const doc = await ready.body.json() as { status: string, checks: Record<string, Array<{ status: string }>> }
  t.equal(doc.status, 'fail')
  t.equal(doc.checks['application:healthCheck']?.[0]?.status, 'fail')
  const stats = app.hangupGuard.stats()
  t.equal(stats.healthChecks, 2)
  t.equal(stats.requests, 1, 'probes are not counted as requests')
})

t.test('health routes with a user-registered under-pressure that sheds everything, and HEAD', async (t) => {
  const app = Fastify()
  await app.register(underPressure, { healthCheck: unhealthy, healthCheckInterval: 60_000 })
  await app.register(hangupGuard, { health: { livenessPath: '/health/live', readinessPath: '/health/ready' } })
  const port = await listen(app)
  const live = await undiciRequest(`http://127.0.0.1:${port}/health/live`)
  t.equal(live.statusCode, 200)
  await live.body.dump()
  const head = await undiciRequest(`http://127.0.0.1:${port}/health/ready`, { method: 'HEAD' })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['cache-control'], 'no-store')
  await head.body.dump()
  t.equal((await undiciRequest(`http://127.0.0.1:${port}/livez`)).statusCode, 503, 'the default paths are not served: / and others are shed')
  t.match(app.hangupGuard.explain(), /health probes GET\/HEAD \/health\/live, \/health\/ready, answered before routing/)
})

t.test('health: false declares no health routes', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, { health: false })
  app.get('/', async () => 'ok')
  const port = await listen(app)
  t.equal((await undiciRequest(`http://127.0.0.1:${port}/livez`)).statusCode, 404)
})

t.test("underPressure: true gets only the core's hard limits: while the queueing controller sheds, under-pressure does not refuse everything", async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, { underPressure: { healthCheckInterval: 20 }, retryAfter: 3 })
  app.get('/', async () => ({ ok: true }))
  const port = await listen(app)
  const queue = bindingOf(app.server)!.guard.queue!
  let shed = true
  queue.shouldShed = () => shed // a standing queue, as a real overload makes it (test/overload-shed.test.ts)
  const refused = await fetchOnce(port)
  t.equal(refused.status, 503)
  t.equal(refused.body.code, 'HG_ERR_AT_CAPACITY', "the core's controller answered")
  t.equal(refused.headers['retry-after'], '3')
  await sleep(100) // several under-pressure health checks ran meanwhile
  t.equal(app.isUnderPressure(), false, 'under-pressure is not switched on by the shedding')
  shed = false
  t.equal((await fetchOnce(port)).status, 200, 'the next request below the target is served')
  t.equal(app.hangupGuard.stats().answered.capacity, 1)
})
