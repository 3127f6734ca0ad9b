import https from 'node:https'
import Fastify, { type FastifyPluginAsync } from 'fastify'
import { expect } from 'tstyche'
import hangupGuard, { fastifyServerOptions, hangupGuard as named } from '../../lib/fastify'
import hangupGuardCjs = require('../../lib/fastify')
import type { Deadline, TimeoutPlan, StatsSnapshot, DrainResult } from '../../lib/index'

const app = Fastify()

// Registration: default import, typed options.
expect(app.register(hangupGuard)).type.not.toRaiseError()
expect(app.register(hangupGuard, { upstream: 'aws-alb', handlerTimeout: '20s', underPressure: { maxEventLoopDelay: 200 } })).type.not.toRaiseError()
expect(app.register(hangupGuard, { underPressure: true, pressure: { maxEventLoopDelay: '500ms' }, health: false })).type.not.toRaiseError()
expect(app.register(hangupGuard, { handlerTimeout: true })).type.toRaiseError()
expect(app.register(hangupGuard, { underPressure: { retryAfter: 5 } })).type.toRaiseError()
expect(app.register(hangupGuard, { underPressure: 'on' })).type.toRaiseError()
expect(app.register(hangupGuard, { timeoutStatus: 500 })).type.toRaiseError()
expect(hangupGuard).type.toBeAssignableTo<FastifyPluginAsync<hangupGuard.Options>>()
expect(hangupGuard.default).type.toBe<typeof hangupGuard>()
expect(hangupGuard.hangupGuard).type.toBe<typeof hangupGuard>()
expect(named).type.toBe<typeof hangupGuard>()
// CommonJS: require() is the plugin itself.
expect(app.register(hangupGuardCjs, { handlerTimeout: 1000 })).type.not.toRaiseError()
expect(app.register(hangupGuardCjs.default)).type.not.toRaiseError()
expect(hangupGuardCjs.fastifyServerOptions({}).http.headersTimeout).type.toBe<number>()

// An https instance takes the plugin too.
const secure = Fastify({ https: {} as https.ServerOptions })
expect(secure.register(hangupGuard, { upstream: 'nginx' })).type.not.toRaiseError()

// fastifyServerOptions: from options or a plan, spread into the factory.
expect(fastifyServerOptions({ upstream: 'nginx' }).keepAliveTimeout).type.toBe<number>()
expect(fastifyServerOptions(app.hangupGuard.plan)).type.toBe<hangupGuard.FastifyTimeoutOptions>()
expect(Fastify({ ...fastifyServerOptions({ upstream: 'aws-alb' }), logger: true })).type.not.toRaiseError()
expect(fastifyServerOptions({ upstream: 'nowhere' })).type.toRaiseError()

// Decorators.
expect(app.hangupGuard.plan).type.toBe<TimeoutPlan>()
expect(app.hangupGuard.explain()).type.toBe<string>()
expect(app.hangupGuard.stats()).type.toBe<StatsSnapshot>()
expect(app.hangupGuard.drain({ delay: '1s', timeout: 10_000 })).type.toBe<Promise<DrainResult>>()
expect(app.hangupGuard.drain({ delay: true })).type.toRaiseError()
expect(app.hangupGuard.stop()).type.toRaiseError()
expect(app.hangupGuard).type.toBe<hangupGuard.FastifyHangupGuard>()

// Route config.
expect(app.get('/a', { config: { hangupGuard: { timeout: '2s' } } }, async () => 'a')).type.not.toRaiseError()
expect(app.get('/b', { config: { hangupGuard: { timeout: 2000 } } }, async () => 'b')).type.not.toRaiseError()
expect(app.get('/c', { config: { hangupGuard: { timeout: false } } }, async () => 'c')).type.not.toRaiseError()
expect(app.get('/d', { config: { hangupGuard: { timeout: true } } }, async () => 'd')).type.toRaiseError()
// Unknown keys ({ budget: 1 }) type-check, because Fastify infers the route config type from the
// argument; they are refused when the route is declared (HG_ERR_FASTIFY_ROUTE_CONFIG).
expect(app.get('/f', { config: { hangupGuard: '2s' } }, async () => 'f')).type.toRaiseError()

// The deadline and its signal.
app.get('/g', async (request) => {
  expect(request.deadline).type.toBe<Deadline | null>()
  expect(request.deadline?.signal).type.toBe<AbortSignal | undefined>()
  expect(request.deadline?.remaining()).type.toBe<number | undefined>()
  expect(request.deadline?.extend('1s')).type.toBe<void | undefined>()
  expect(request.deadline?.extend(true)).type.toRaiseError()
  expect(request.deadline.signal).type.toRaiseError()
  expect(request.signal).type.toBe<AbortSignal>()
  return 'g'
})
