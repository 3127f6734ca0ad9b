/**
 * The Fastify door's registration: option checks, Fastify server options against the plan,
 * fastifyServerOptions(), route config validation, one guard per server.
 */
import t, { type Test } from 'tap'
import net from 'node:net'
import http from 'node:http'
import Fastify, { type FastifyInstance, type FastifyHttpOptions } from 'fastify'
import hangupGuard from '../lib/fastify'
import { fastifyServerOptions, FASTIFY_DEFAULTS } from '../lib/fastify/options'
import { planTimeouts } from '../lib/core/plan'
import { bindingOf } from '../lib/core/bind'
import { configureServerTimeouts } from '../lib/http'
import { request as undiciRequest } from 'undici'
import { get } from './helpers/net'

async function registerFails (t: Test, app: FastifyInstance, register: () => PromiseLike<unknown>, code: string, message?: RegExp): Promise<void> {
  await t.rejects(async () => { await register(); await app.ready() }, { code, ...(message === undefined ? {} : { message }) })
  t.equal(bindingOf(app.server), undefined, 'nothing stays applied')
  await app.close().catch(() => {})
}

t.test("Fastify's defaults, as the door assumes them (fastify 5 lib/config-validator.js)", async (t) => {
  const app = Fastify()
  const c = app.initialConfig as Record<string, unknown>
  t.equal(c.connectionTimeout, FASTIFY_DEFAULTS.connectionTimeout)
  t.equal(c.keepAliveTimeout, FASTIFY_DEFAULTS.keepAliveTimeout)
  t.equal(c.requestTimeout, FASTIFY_DEFAULTS.requestTimeout)
  t.equal(c.handlerTimeout, FASTIFY_DEFAULTS.handlerTimeout)
  t.equal(c.forceCloseConnections, undefined, "unset, which Fastify turns into 'idle'")
  t.equal(c.return503OnClosing, undefined, 'return503OnClosing is not exposed: the door cannot check it')
  await app.close()
})

t.test('Fastify options that contradict the plan are refused with the option to change', async (t) => {
  const cases: Array<[string, FastifyHttpOptions<http.Server>, RegExp]> = [
    ['keepAliveTimeout', { keepAliveTimeout: 10_000 }, /Fastify option 'keepAliveTimeout' \(10000\).*server\.keepAliveTimeout, which the plan sets to 5000 ms/],
    ['connectionTimeout', { connectionTimeout: 5_000 }, /'connectionTimeout' \(5000\).*socket inactivity timeout/],
    ['requestTimeout', { requestTimeout: 20_000 }, /'requestTimeout' \(20000\)/],
    ['http.headersTimeout', { http: { headersTimeout: 10_000 } }, /'http\.headersTimeout' \(10000\)/],
    ['forceCloseConnections', { forceCloseConnections: true }, /'forceCloseConnections' \(true\).*socket hang up/]
  ]
  for (const [name, fastifyOptions, message] of cases) {
    const app = Fastify(fastifyOptions)
    const before = app.server.keepAliveTimeout
    await registerFails(t, app, () => app.register(hangupGuard, {}), 'HG_ERR_FASTIFY_OPTION_CONFLICT', message)
    t.equal(app.server.keepAliveTimeout, before, `${name}: the server is restored`)
  }
})

t.test('a value equal to the plan, or to Fastify\'s default, passes', async (t) => {
  const app = Fastify({ keepAliveTimeout: 65_000, connectionTimeout: 72_000 })
  await app.register(hangupGuard, { upstream: 'aws-alb', timeout: 72_000 })
  await app.ready()
  t.equal(app.server.keepAliveTimeout, 65_000)
  await app.close()
})

t.test('fastifyServerOptions(): the fastify() factory gets the plan, and the plugin agrees (real listen)', async (t) => {
  const options = { upstream: 'nginx', handlerTimeout: '20s', headersTimeout: '30s' } as const
  const plan = planTimeouts(options)
  t.same(fastifyServerOptions(plan), fastifyServerOptions(options))
  t.same(fastifyServerOptions(options), {
    connectionTimeout: plan.timeout.value,
    keepAliveTimeout: plan.keepAliveTimeout.value,
    requestTimeout: plan.requestTimeout.value,
    http: { headersTimeout: 30_000, connectionsCheckingInterval: plan.connectionsCheckingInterval.value }
  })
  const app = Fastify({ ...fastifyServerOptions(options) })
  t.equal(app.server.headersTimeout, 30_000, 'Fastify passes `http` to http.createServer')
  await app.register(hangupGuard, options)
  app.get('/', async () => 'ok')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  for (const key of ['timeout', 'keepAliveTimeout', 'headersTimeout', 'requestTimeout', 'connectionsCheckingInterval'] as const) {
    t.equal((app.server as unknown as Record<string, number>)[key], plan[key].value, key)
  }
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  const answer = await get((app.server.address() as net.AddressInfo).port, '/', { agent })
  t.equal(answer.headers['keep-alive'], `timeout=${plan.keepAliveTimeout.value / 1000}`)
  t.throws(() => fastifyServerOptions({ handlerTimout: 1 } as never), { code: 'HG_ERR_OPT_UNKNOWN' })
})

t.test('registered twice on one server: HG_ERR_ALREADY_CONFIGURED, at the root or in sibling contexts', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, {})
  await t.rejects(async () => { await app.register(hangupGuard, {}) }, { code: 'HG_ERR_ALREADY_CONFIGURED' })
  await app.close()

  const siblings = Fastify()
  siblings.register(async (a) => { await a.register(hangupGuard, {}) })
  siblings.register(async (b) => { await b.register(hangupGuard, {}) })
  await t.rejects(async () => { await siblings.ready() }, { code: 'HG_ERR_ALREADY_CONFIGURED' })
  await siblings.close().catch(() => {})

  const plain = Fastify()
  const handle = configureServerTimeouts(plain.server, {})
  await t.rejects(async () => { await plain.register(hangupGuard, {}) }, { code: 'HG_ERR_ALREADY_CONFIGURED' }, 'the plain door and the plugin on one server')
  handle.close()
  await plain.close()
})

t.test('http2 is refused with HG_ERR_HTTP2_UNSUPPORTED', async (t) => {
  const app = Fastify({ http2: true }) as unknown as FastifyInstance
  await t.rejects(async () => { await app.register(hangupGuard, {}) }, { code: 'HG_ERR_HTTP2_UNSUPPORTED' })
  await app.close().catch(() => {})
})

t.test('option mistakes are coded errors; register() options such as prefix pass', async (t) => {
  const bad: Array<[unknown, string]> = [
    [{ handlerTimout: '2s' }, 'HG_ERR_OPT_UNKNOWN'],
    [{ handlerTimeout: 'soon' }, 'HG_ERR_OPT_DURATION'],
    [{ underPressure: 'yes' }, 'HG_ERR_OPT_TYPE'],
    [{ underPressure: { retryAfter: 3 } }, 'HG_ERR_OPT_UNKNOWN'],
    [{ underPressure: { maxEventLoopUtilization: 2 } }, 'HG_ERR_OPT_RANGE'],
    [{ underPressure: { maxHeapUsedBytes: -1 } }, 'HG_ERR_OPT_RANGE'],
    [{ underPressure: { healthCheck: 'yes' } }, 'HG_ERR_OPT_TYPE'],
    [{ underPressure: { healthCheckInterval: 0 } }, 'HG_ERR_OPT_RANGE'],
    [{ underPressure: { exposeStatusRoute: 'status' } }, 'HG_ERR_OPT_TYPE'],
    [{ handleSignals: 'yes' }, 'HG_ERR_OPT_TYPE']
  ]
  for (const [options, code] of bad) {
    const app = Fastify()
    await registerFails(t, app, () => app.register(hangupGuard, options as hangupGuard.Options), code)
  }
  const app = Fastify()
  await app.register(hangupGuard, { prefix: '/x', logLevel: 'warn' } as hangupGuard.Options)
  await app.ready()
  t.ok(bindingOf(app.server))
  await app.close()
})

t.test('route config is validated when the route is declared', async (t) => {
  const bad: Array<[object, string, RegExp]> = [
    [{ config: { hangupGuard: { timeout: true } } }, 'HG_ERR_FASTIFY_ROUTE_CONFIG', /Route 'GET \/r': config\.hangupGuard\.timeout must be a duration/],
    [{ config: { hangupGuard: { timeout: 'soon' } } }, 'HG_ERR_FASTIFY_ROUTE_CONFIG', /got "soon"/],
    [{ config: { hangupGuard: '2s' } }, 'HG_ERR_FASTIFY_ROUTE_CONFIG', /config\.hangupGuard must be an object/],
    [{ config: { hangupGuard: { timeot: 1 } } }, 'HG_ERR_FASTIFY_ROUTE_CONFIG', /config\.hangupGuard\.timeot/],
    [{ handlerTimeout: 500, config: { hangupGuard: { timeout: 1000 } } }, 'HG_ERR_FASTIFY_ROUTE_CONFIG', /keep one of the two/]
  ]
  for (const [routeOptions, code, message] of bad) {
    const app = Fastify()
    await app.register(hangupGuard, {})
    t.throws(() => app.get('/r', routeOptions, async () => 'x'), { code, message })
    await app.close()
  }
  const behindAlb = Fastify()
  await behindAlb.register(hangupGuard, { upstream: { name: 'edge', idleTimeout: '60s', responseTimeout: '30s' } })
  t.throws(() => behindAlb.get('/r', { config: { hangupGuard: { timeout: '40s' } } }, async () => 'x'), { code: 'HG_ERR_FASTIFY_ROUTE_BUDGET', message: /edge gives up after 30 s/ })
  t.throws(() => behindAlb.get('/f', { handlerTimeout: 40_000 }, async () => 'x'), { code: 'HG_ERR_FASTIFY_ROUTE_BUDGET', message: /Fastify's handlerTimeout 40000 ms/ })
  behindAlb.get('/ok', { config: { hangupGuard: { timeout: false } }, handlerTimeout: 1000 }, async () => 'x')
  await behindAlb.close()
  // Issue 11: requestTimeout bounds the receipt of a request only, so it does not limit a route's budget.
  const direct = Fastify()
  await direct.register(hangupGuard, {})
  direct.get('/export', { config: { hangupGuard: { timeout: '10min' } } }, async () => 'x')
  await direct.ready()
  await direct.close()
})

t.test('health probes are answered in front of Fastify: under the prefix, before any hook, and a route on a health path is refused', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  let hooked = 0
  let scope: FastifyInstance | null = null
  app.addHook('onRequest', async () => { hooked++ })
  await app.register(async (api) => {
    scope = api
    await api.register(hangupGuard, { health: { livenessPath: '/live', readinessPath: '/ready' } })
    api.get('/work', async () => 'done')
    t.throws(() => api.get('/live', async () => 'mine'), { code: 'HG_ERR_FASTIFY_HEALTH_PATH_TAKEN', message: /Route 'GET \/api\/live' takes the health path \/api\/live/ })
    t.throws(() => api.route({ method: ['HEAD', 'POST'], url: '/ready', handler: async () => 'mine' }), { code: 'HG_ERR_FASTIFY_HEALTH_PATH_TAKEN' })
    api.post('/live/x', async () => 'another path')
  }, { prefix: '/api' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as net.AddressInfo).port
  for (const [path, method, status] of [['/api/live', 'GET', 200], ['/api/ready?verbose=1', 'HEAD', 200], ['/live', 'GET', 404], ['/api/live', 'POST', 404]] as const) {
    const res = await undiciRequest(`http://127.0.0.1:${port}${path}`, { method })
    t.equal(res.statusCode, status, `${method} ${path}`)
    if (status === 200) t.equal(res.headers['content-type'], 'application/health+json')
    await res.body.dump()
  }
  t.equal(hooked, 2, 'probes run no Fastify hook (the two 404s did)')
  const guarded = scope as unknown as FastifyInstance
  t.equal(guarded.hangupGuard.stats().healthChecks, 2)
  t.equal((await undiciRequest(`http://127.0.0.1:${port}/api/work`)).statusCode, 200)
  t.match(guarded.hangupGuard.explain(), /health probes GET\/HEAD \/api\/live, \/api\/ready, answered before routing/)
  await app.close()
  t.equal(Object.hasOwn(app.server, 'emit'), false, "close() gives the server Node's emit back")
})

t.test('explain() shows the plan, how it was applied, and the Fastify side', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, { upstream: 'aws-alb' })
  const text = app.hangupGuard.explain()
  t.match(text, /^hangup-guard timeout plan; upstream: AWS/)
  t.match(text, /applied: All values take effect at listen\(\)\./)
  t.match(text, /fastify: deadlines by hangup-guard's onRequest hook/)
  t.equal(app.hangupGuard.plan.keepAliveTimeout.value, 65_000)
  await app.close()
})

t.test('a registration that fails after binding leaves nothing applied (route or decorator already taken)', async (t) => {
  const taken = Fastify()
  taken.get('/livez', async () => 'mine')
  await registerFails(t, taken, () => taken.register(hangupGuard, {}), 'HG_ERR_FASTIFY_HEALTH_PATH_TAKEN', /Route 'GET \/livez' takes the health path \/livez/)
  t.equal(Object.hasOwn(taken.server, 'emit'), false, "the server's emit is Node's again")
  const headOnly = Fastify({ exposeHeadRoutes: false })
  headOnly.head('/readyz', async () => '')
  await registerFails(t, headOnly, () => headOnly.register(hangupGuard, {}), 'HG_ERR_FASTIFY_HEALTH_PATH_TAKEN', /Route 'HEAD \/readyz'/)
  const decorated = Fastify()
  decorated.decorate('hangupGuard', null as never)
  await registerFails(t, decorated, () => decorated.register(hangupGuard, {}), 'FST_ERR_DEC_ALREADY_PRESENT')
  const free = Fastify()
  free.get('/livez', async () => 'mine')
  await free.register(hangupGuard, { health: false })
  t.ok(bindingOf(free.server), 'health: false frees the paths')
  await free.close()
})
