/**
 * Options of the Fastify front door: its own keys, the check of Fastify's server options against
 * the plan, `fastifyServerOptions()`, and per-route budgets (parsed once, at onRoute time).
 */
import type { FastifyInstance } from 'fastify'
import type { HangupGuardOptions } from '../core/bind'
import { type TimeoutPlan, budgetLimit, NODE_DEFAULTS } from '../core/plan'
import { resolveConfig } from '../core/config'
import { kRoute } from '../core/symbols'
import { type Duration, toMs } from '../core/duration'
import {
  HG_ERR_OPT_TYPE, HG_ERR_OPT_RANGE, HG_ERR_OPT_UNKNOWN,
  HG_ERR_FASTIFY_OPTION_CONFLICT, HG_ERR_FASTIFY_ROUTE_CONFIG, HG_ERR_FASTIFY_ROUTE_BUDGET
} from '../core/errors'

/**
 * Thresholds handed to @fastify/under-pressure when hangup-guard registers it (they pass through
 * unchanged; see its README), on top of the core's pressure verdict, which feeds its health
 * check. Its 503s are answered with hangup-guard's coded body and the top-level `retryAfter`.
 */
export interface UnderPressureOptions {
  /** Mean event-loop delay over a sample (ms, or '200ms') above which requests are shed. */
  maxEventLoopDelay?: Duration
  /** Event-loop utilisation (0..1) above which requests are shed. */
  maxEventLoopUtilization?: number
  /** V8 heap used (bytes) above which requests are shed. */
  maxHeapUsedBytes?: number
  /** Resident set size (bytes) above which requests are shed. */
  maxRssBytes?: number
  /** Sampling period (ms, or '1s'). @default 1000 (ms) */
  sampleInterval?: Duration
  /** Your own check; false (or a rejection) sheds every request until it passes again. */
  healthCheck?: (app: FastifyInstance) => Promise<boolean | Record<string, unknown>>
  /** Period of healthCheck (ms, or '5s'), which hangup-guard combines with the core's pressure verdict. @default 1000 (ms) */
  healthCheckInterval?: Duration
  /** under-pressure's own status route; hangup-guard keeps it off (its health probes are /livez and /readyz). @default false */
  exposeStatusRoute?: boolean | string
}

export interface FastifyHangupGuardOptions extends HangupGuardOptions {
  /**
   * @fastify/under-pressure composition. true or an object: hangup-guard registers it, its health
   * check fed with the core's pressure verdict (the `pressure` option), plus the object's own
   * thresholds. Omitted: hangup-guard registers nothing, and an under-pressure you register
   * yourself answers with hangup-guard's coded 503 (each route's `config.pressureHandler` is set,
   * unless the route has one). false: leave under-pressure alone.
   * @default undefined
   */
  underPressure?: UnderPressureOptions | boolean
}

/** `config: { hangupGuard: { … } }` on a route. */
export interface RouteGuardConfig {
  /** This route's budget (ms, or '2s'), instead of the default handlerTimeout; false (or 0): no deadline (streaming routes). */
  timeout?: Duration | false
}

/** Keys the Fastify door reads itself, plus the ones Fastify's register() may pass along. */
export const FASTIFY_KEYS = ['underPressure', 'prefix', 'logLevel', 'logSerializers'] as const

const UNDER_PRESSURE_KEYS = ['maxEventLoopDelay', 'maxEventLoopUtilization', 'maxHeapUsedBytes', 'maxRssBytes', 'sampleInterval', 'healthCheck', 'healthCheckInterval', 'exposeStatusRoute']

/** What the plugin passes to @fastify/under-pressure (numbers in ms / bytes). */
export interface ResolvedUnderPressure {
  maxEventLoopDelay?: number
  maxEventLoopUtilization?: number
  maxHeapUsedBytes?: number
  maxRssBytes?: number
  sampleInterval?: number
  healthCheck?: (app: FastifyInstance) => Promise<boolean | Record<string, unknown>>
  healthCheckInterval?: number
  exposeStatusRoute: boolean | string
}

/** Validates the `underPressure` option; null when hangup-guard should not register under-pressure. */
export function readUnderPressure (value: unknown): ResolvedUnderPressure | null {
  if (value === undefined || value === false) return null
  if (value === true) return { exposeStatusRoute: false }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new HG_ERR_OPT_TYPE('underPressure', value, 'true, an object of thresholds, or false')
  const v = value as Record<string, unknown>
  for (const key of Object.keys(v)) {
    if (!UNDER_PRESSURE_KEYS.includes(key)) {
      throw new HG_ERR_OPT_UNKNOWN(`underPressure.${key}`, key === 'retryAfter' ? "; Retry-After comes from the top-level 'retryAfter' option" : `; known keys: ${UNDER_PRESSURE_KEYS.join(', ')}`)
    }
  }
  const out: ResolvedUnderPressure = { exposeStatusRoute: false }
  if (v.maxEventLoopDelay !== undefined) out.maxEventLoopDelay = toMs('underPressure.maxEventLoopDelay', v.maxEventLoopDelay)
  if (v.sampleInterval !== undefined) out.sampleInterval = toMs('underPressure.sampleInterval', v.sampleInterval)
  if (v.maxEventLoopUtilization !== undefined) {
    const elu = v.maxEventLoopUtilization
    if (typeof elu !== 'number' || !(elu > 0 && elu <= 1)) throw new HG_ERR_OPT_RANGE('underPressure.maxEventLoopUtilization', elu, 'a ratio > 0 and <= 1')
    out.maxEventLoopUtilization = elu
  }
  for (const key of ['maxHeapUsedBytes', 'maxRssBytes'] as const) {
    const n = v[key]
    if (n === undefined) continue
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) throw new HG_ERR_OPT_RANGE(`underPressure.${key}`, n, 'a whole number of bytes > 0')
    out[key] = n
  }
  if (v.healthCheck !== undefined) {
    if (typeof v.healthCheck !== 'function') throw new HG_ERR_OPT_TYPE('underPressure.healthCheck', v.healthCheck, 'an async function (app) => boolean')
    out.healthCheck = v.healthCheck as ResolvedUnderPressure['healthCheck']
  }
  if (v.healthCheckInterval !== undefined) {
    out.healthCheckInterval = toMs('underPressure.healthCheckInterval', v.healthCheckInterval)
    if (out.healthCheckInterval === 0) throw new HG_ERR_OPT_RANGE('underPressure.healthCheckInterval', v.healthCheckInterval, 'a duration > 0')
  }
  if (v.exposeStatusRoute !== undefined) {
    const route = v.exposeStatusRoute
    if (typeof route !== 'boolean' && (typeof route !== 'string' || !route.startsWith('/'))) throw new HG_ERR_OPT_TYPE('underPressure.exposeStatusRoute', route, "a boolean or a path starting with '/'")
    out.exposeStatusRoute = route
  }
  return out
}

/** Fastify 5's defaults (lib/config-validator.js `defaultInitOptions`, fastify 5.12). */
export const FASTIFY_DEFAULTS = Object.freeze({
  connectionTimeout: 0, // off
  keepAliveTimeout: 72_000, // 72 seconds
  requestTimeout: 0, // off
  handlerTimeout: 0, // off (Fastify >= 5.8)
  forceCloseConnections: 'idle' // when the server has closeIdleConnections(), as on every supported Node
})

/** What the door reads of `app.initialConfig` (return503OnClosing is not exposed there). */
export interface FastifyConfigView {
  readonly connectionTimeout?: number
  readonly keepAliveTimeout?: number
  readonly requestTimeout?: number
  readonly handlerTimeout?: number
  readonly forceCloseConnections?: boolean | 'idle'
  readonly http2?: boolean
}

/** Server values that only `http: { … }` or a serverFactory could have set, read before the plan is applied. */
export interface ServerView {
  readonly headersTimeout: number
  readonly connectionsCheckingInterval: number
}

const FIX = 'Remove it from the fastify() options (hangup-guard sets the server itself), or pass the same value to hangup-guard so the plan is checked with it; fastifyServerOptions(plan) builds matching options'

/**
 * Refuses Fastify server options that contradict the plan. initialConfig cannot tell an explicit
 * value from a default, so a value equal to Fastify's default is taken as not chosen (an explicit
 * keepAliveTimeout: 72000 is silently replaced by the plan).
 */
export function reconcileFastifyConfig (config: FastifyConfigView, before: ServerView, plan: TimeoutPlan): void {
  const pairs = [
    ['connectionTimeout', config.connectionTimeout, FASTIFY_DEFAULTS.connectionTimeout, 'timeout', 'socket inactivity timeout (server.timeout)'],
    ['keepAliveTimeout', config.keepAliveTimeout, FASTIFY_DEFAULTS.keepAliveTimeout, 'keepAliveTimeout', 'server.keepAliveTimeout'],
    ['requestTimeout', config.requestTimeout, FASTIFY_DEFAULTS.requestTimeout, 'requestTimeout', 'server.requestTimeout'],
    ['http.headersTimeout', before.headersTimeout, NODE_DEFAULTS.headersTimeout, 'headersTimeout', 'server.headersTimeout'],
    ['http.connectionsCheckingInterval', before.connectionsCheckingInterval, NODE_DEFAULTS.connectionsCheckingInterval, 'connectionsCheckingInterval', 'server.connectionsCheckingInterval']
  ] as const
  for (const [name, value, fallback, key, what] of pairs) {
    if (value === undefined || value === fallback || value === plan[key].value) continue
    throw new HG_ERR_FASTIFY_OPTION_CONFLICT(name, value, `it sets the ${what}, which the plan sets to ${plan[key].value} ms ('${key}', ${plan[key].source}: ${plan[key].reason})`, FIX)
  }
  if (config.forceCloseConnections === true) {
    throw new HG_ERR_FASTIFY_OPTION_CONFLICT('forceCloseConnections', true, 'app.close() would destroy connections with requests in flight (socket hang up)',
      "Remove it: Fastify's default ('idle') closes only idle connections, and app.hangupGuard.drain() answers what is still in flight")
  }
}

/** Options for the `fastify()` factory that match a plan (spread them in: `fastify({ ...fastifyServerOptions(opts), logger })`). */
export interface FastifyTimeoutOptions {
  connectionTimeout: number
  keepAliveTimeout: number
  requestTimeout: number
  /** Passed by Fastify to http.createServer (ignored with `https`/`http2`: the plugin applies them to the server anyway). */
  http: { headersTimeout: number, connectionsCheckingInterval: number }
}

function isPlan (value: unknown): value is TimeoutPlan {
  const v = value as Partial<TimeoutPlan> | null
  return v !== null && typeof v === 'object' && typeof v.explain === 'function' && typeof v.handlerTimeout?.value === 'number'
}

/** Turns a plan, or the options hangup-guard is given, into the timeout options of the `fastify()` factory. */
export function fastifyServerOptions (planOrOptions: TimeoutPlan | FastifyHangupGuardOptions = {}): FastifyTimeoutOptions {
  let plan: TimeoutPlan
  if (isPlan(planOrOptions)) plan = planOrOptions
  else {
    if (planOrOptions === null || typeof planOrOptions !== 'object') throw new HG_ERR_OPT_TYPE('fastifyServerOptions(options)', planOrOptions, 'a plan or hangup-guard options')
    plan = resolveConfig(planOrOptions, FASTIFY_KEYS).plan
  }
  return {
    connectionTimeout: plan.timeout.value,
    keepAliveTimeout: plan.keepAliveTimeout.value,
    requestTimeout: plan.requestTimeout.value,
    http: { headersTimeout: plan.headersTimeout.value, connectionsCheckingInterval: plan.connectionsCheckingInterval.value }
  }
}

/** Where a route's budget comes from. */
export type RouteBudgetSource = 'default' | 'route' | 'off' | 'fastify'

/** A route's deadline, parsed once at onRoute time and kept in its config under kRoute. */
export interface RouteRecord {
  /** Budget (ms) hangup-guard enforces; 0: none. */
  readonly budget: number
  readonly source: RouteBudgetSource
  /** The route has its own `errorHandler` (then deadline answers go through it). */
  readonly ownErrorHandler: boolean
}

/** The slots of a route's `config` the door reads and writes. */
export interface RouteConfigSlots { [kRoute]?: RouteRecord, url?: string, hangupGuard?: unknown, pressureHandler?: unknown }

/** A route's budget must fit the planner's limit (rule R6); the socket timeout follows each request's deadline (Guard.deadlineMoved). */
function checkBudget (route: string, what: string, ms: number, plan: TimeoutPlan): void {
  if (ms <= plan.handlerTimeout.value) return
  const limit = budgetLimit(plan)
  if (ms > limit.maxMs) throw new HG_ERR_FASTIFY_ROUTE_BUDGET(route, what, ms, limit.reason)
}

/**
 * Parses a route's `config.hangupGuard` and Fastify `handlerTimeout` (route option, else the
 * server's) into its record. `fallback` is the shared record of routes that set nothing.
 */
export function routeRecordFor (route: string, config: RouteConfigSlots | undefined, fastifyHandlerTimeout: number, ownErrorHandler: boolean, plan: TimeoutPlan, fallback: RouteRecord): RouteRecord {
  const raw = config?.hangupGuard
  let timeout: unknown
  if (raw !== undefined) {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new HG_ERR_FASTIFY_ROUTE_CONFIG(route, 'config.hangupGuard', "an object such as { timeout: '2s' }", raw)
    for (const key of Object.keys(raw)) {
      if (key !== 'timeout') throw new HG_ERR_FASTIFY_ROUTE_CONFIG(route, `config.hangupGuard.${key}`, "absent (known key: 'timeout')", (raw as Record<string, unknown>)[key])
    }
    timeout = (raw as RouteGuardConfig).timeout
  }
  if (fastifyHandlerTimeout > 0) {
    // Fastify runs its own deadline (a timer and an AbortController per request): no second one.
    if (timeout !== undefined && timeout !== false && timeout !== 0) {
      throw new HG_ERR_FASTIFY_ROUTE_CONFIG(route, 'config.hangupGuard.timeout', `absent or false where Fastify's handlerTimeout (${fastifyHandlerTimeout} ms) runs the deadline; keep one of the two`, timeout)
    }
    checkBudget(route, "Fastify's handlerTimeout", fastifyHandlerTimeout, plan)
    return { budget: 0, source: 'fastify', ownErrorHandler }
  }
  if (timeout === undefined) return ownErrorHandler ? { ...fallback, ownErrorHandler } : fallback
  if (timeout === false) return { budget: 0, source: 'off', ownErrorHandler }
  let ms: number
  try {
    ms = toMs('config.hangupGuard.timeout', timeout)
  } catch (cause) {
    const err = new HG_ERR_FASTIFY_ROUTE_CONFIG(route, 'config.hangupGuard.timeout', "a duration (ms, or a string such as '2s') or false", timeout)
    err.cause = cause
    throw err
  }
  if (ms === 0) return { budget: 0, source: 'off', ownErrorHandler }
  checkBudget(route, 'config.hangupGuard.timeout', ms, plan)
  return { budget: ms, source: 'route', ownErrorHandler }
}
