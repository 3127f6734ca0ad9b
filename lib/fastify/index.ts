/**
 * `hangup-guard/fastify`: the Fastify v5 front door over the same core as the node:http one
 * (bindServer → plan applied to app.server, Guard, shared deadline timer, socket-timeout answers).
 *
 * Per server, wherever the plugin is registered: the timeouts, the socket-timeout listener, the
 * stats, drain and health. Per context (fastify-plugin puts the hooks in the context that
 * registers it, and its children): admission and deadlines. Register it at the root to guard every
 * route, or inside the plugin whose routes should be guarded; once per server.
 */
import type { Server } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { type Binding, bindServer } from '../core/bind'
import type { Guard, Refusal } from '../core/guard'
import { type Deadline, Pending, deadlineOf } from '../core/pending'
import type { TimeoutPlan } from '../core/plan'
import type { StatsSnapshot } from '../core/stats'
import type { DrainOptions } from '../core/options'
import type { HealthAnswer, HealthKind } from '../core/health'
import { startDrain, forceDrain } from '../core/drain'
import type { DrainResult } from '../core/drain-state'
import { type SignalHandlers, onDrainSignals } from '../core/signals'
import { HG_ERR_HTTP2_UNSUPPORTED, HG_ERR_FASTIFY_UNDER_PRESSURE_REGISTERED, HG_ERR_FASTIFY_HEALTH_PATH_TAKEN } from '../core/errors'
import { type ResolvedConfig, resolveConfig } from '../core/config'
import { installProbeFront } from '../core/front'
import { kDoor, kRoute } from '../core/symbols'
import {
  type FastifyHangupGuardOptions, type FastifyConfigView, type RouteRecord, type RouteConfigSlots, type RouteGuardConfig,
  type UnderPressureOptions, type FastifyTimeoutOptions, type RouteBudgetSource, type ResolvedUnderPressure,
  FASTIFY_KEYS, readUnderPressure, reconcileFastifyConfig, routeRecordFor, fastifyServerOptions
} from './options'
import { fastifyAnswerer, answerPayload } from './answer'
import { UNDER_PRESSURE_NAME, onPressure, registerUnderPressure } from './pressure'

/** `app.hangupGuard`: the server's guard, seen from Fastify. */
interface FastifyHangupGuard {
  /** The frozen timeout plan applied to app.server. */
  readonly plan: TimeoutPlan
  /** The plan as a text table, with how it was applied. */
  explain (): string
  /**
   * Counters (docs/api.md#counters). Fastify's `onRequestAbort` events are `clientGone` and its
   * `onTimeout` events (connectionTimeout firing) are `answered.socketTimeout` + `cut.socketTimeout`
   * (+ `idleClosed` between requests): the core counts them once, on the raw response and
   * server, without those Fastify hooks (each costs an allocation per request).
   */
  stats (): StatsSnapshot
  /** The liveness or readiness document now (what the health probes get). */
  health (kind?: HealthKind): HealthAnswer
  /**
   * Drains the server (options `drain: { delay, timeout }`, overridable per call): readiness
   * fails, connections close, in-flight handlers finish or are answered. Resolves when the HTTP
   * server has closed; call app.close() afterwards for your onClose hooks (`handleSignals: true`
   * does both on SIGTERM/SIGINT). Every call returns the promise of the first.
   */
  drain (options?: DrainOptions): Promise<DrainResult>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** hangup-guard (in the context it was registered in, and its children). */
    hangupGuard: FastifyHangupGuard
  }
  interface FastifyContextConfig {
    /** hangup-guard's per-route settings: `{ timeout: '2s' }`, or `{ timeout: false }` for a streaming route. */
    // `& object`: Fastify infers route config types from the argument and intersects them with
    // this one; a bare string would otherwise pass.
    hangupGuard?: RouteGuardConfig & object
  }
  interface FastifyRequest {
    /**
     * The request's deadline (the object `deadlineOf(request.raw)` returns): `signal` aborts at the
     * deadline or when the client leaves, with a coded reason. null (or absent) outside the
     * guarded context.
     */
    deadline: Deadline | null
  }
}

/** Per-server state the hooks read (hooks are module functions: nothing is allocated per request). */
interface Door {
  readonly guard: Guard
  readonly plan: TimeoutPlan
  /** Shared record of routes that set nothing. */
  readonly fallback: RouteRecord
  /** Fastify's server-level handlerTimeout (routes inherit it). */
  readonly fastifyHandlerTimeout: number
  /** Set each route's config.pressureHandler for a user-registered under-pressure. */
  readonly composePressure: boolean
  /** Fastify's slot for the route context on a request; undefined: not looked for yet, null: not found. */
  contextSlot: symbol | null | undefined
  /** False once the plugin's onClose ran (the hook lets requests through). */
  bound: boolean
  /** The health paths the core's front answers (with the context's prefix); empty with `health: false`. */
  readonly healthPaths: readonly string[]
}

type DoorServer = Server & { [kDoor]?: Door }

function routeLabel (method: string | string[], url: string): string {
  return `${Array.isArray(method) ? method.join(',') : method} ${url}`
}

function onRoute (this: FastifyInstance, route: RouteOptions): void {
  const door = (this.server as DoorServer)[kDoor]
  if (door === undefined) return
  const config = (route.config ?? {}) as RouteConfigSlots
  checkHealthPath(door, route.method, route.url ?? '')
  const record = routeRecordFor(routeLabel(route.method, route.url ?? ''), config, route.handlerTimeout ?? door.fastifyHandlerTimeout,
    route.errorHandler !== undefined, door.plan, door.fallback)
  // A copy: one config object may be shared by routes with different settings.
  const next: RouteConfigSlots = { ...config, [kRoute]: record }
  if (door.composePressure && next.pressureHandler === undefined) next.pressureHandler = onPressure
  route.config = next as RouteOptions['config']
}

/** A GET or HEAD route on a health path would never be called: the core's front answers first. */
function checkHealthPath (door: Door, method: string | string[], url: string): void {
  if (!door.healthPaths.includes(url)) return
  const methods = Array.isArray(method) ? method : [method]
  if (methods.some((m) => m.toUpperCase() === 'GET' || m.toUpperCase() === 'HEAD')) throw new HG_ERR_FASTIFY_HEALTH_PATH_TAKEN(routeLabel(method, url), url)
}

/** Routes declared before the plugin was registered were not seen by onRoute: parsed at their first request. */
function lateRecord (door: Door, request: FastifyRequest, config: RouteConfigSlots): RouteRecord {
  const o = request.routeOptions
  const record = o.url === undefined
    ? door.fallback // 404
    : routeRecordFor(routeLabel(o.method, o.url), config, o.handlerTimeout, false, door.plan, door.fallback)
  config[kRoute] = record
  return record
}

type ContextHolder = FastifyRequest & Record<symbol, { config?: unknown } | undefined>

/**
 * The route's config. `request.routeOptions` builds a 12-field object on each read, and reads
 * the server's initialConfig and constraint strategies to do it: the one public way, so it is
 * used once per door, to find Fastify's own slot for the route context (lib/symbols.js
 * `kRouteContext`, description 'fastify.context') and check it holds the same config. Later
 * requests read that slot; where it is not found (another Fastify), routeOptions it stays.
 */
function routeConfig (door: Door, request: FastifyRequest): RouteConfigSlots {
  const slot = door.contextSlot
  if (slot !== null && slot !== undefined) {
    const config = (request as ContextHolder)[slot]?.config
    if (config !== undefined) return config as RouteConfigSlots
  }
  const config = request.routeOptions.config as RouteConfigSlots
  if (slot === undefined) {
    const found = Object.getOwnPropertySymbols(request).find((s) => s.description === 'fastify.context')
    door.contextSlot = found !== undefined && (request as ContextHolder)[found]?.config === config ? found : null
  }
  return config
}

/**
 * Admission and deadline, in the context's onRequest chain (hooks added to the context before the
 * plugin run first: register it early). One closure per server over its door: reading the door
 * from `this.server` on each request cost about 340 instructions (a getter, then a symbol key on
 * the http.Server).
 */
function onRequestHook (door: Door) {
  return function onRequest (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (door.bound === true) admitRequest(door, request, reply, done)
    else done()
  }
}

function admitRequest (door: Door, request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const config = routeConfig(door, request)
  let record = config[kRoute]
  if (record === undefined) {
    try {
      record = lateRecord(door, request, config)
    } catch (err) {
      done(err as Error)
      return
    }
  }
  const guard = door.guard
  const admitted = guard.admit(request.raw, reply.raw, record.budget, reply, config.url ?? null)
  if (admitted instanceof Pending) {
    done() // request.deadline reads it (a getter: nothing stored per request)
    return
  }
  if (admitted === null) {
    reply.hijack() // the client is gone: no handler, no answer
    return
  }
  refuse(guard, request, reply, admitted, config.url ?? null)
}

function refuse (guard: Guard, request: FastifyRequest, reply: FastifyReply, refusal: Refusal, route: string | null): void {
  const status = refusal.error.statusCode
  reply.send(answerPayload(reply, refusal.error, { retryAfter: guard.options.retryAfter, close: refusal.close }))
  guard.recordRefusal(request.raw, reply.raw, refusal, status, route)
}

/**
 * The plugin. Why `request.deadline` and not Fastify's `request.signal`: Fastify keeps the
 * AbortController behind `request.signal` in a private symbol (lib/request.js, kRequestSignal), so
 * no public API can make it abort at our deadline; creating it per request is also most of the
 * cost of Fastify's handlerTimeout. `request.deadline.signal` creates its controller only when a
 * handler reads it. Fastify's own `request.signal` aborts when the client leaves, but not at the
 * guard's answer: to Fastify that is a response that finished (it removes its close listener on
 * 'finish' whenever a logger or onResponse hook is set).
 */
async function hangupGuard (app: FastifyInstance, options: FastifyHangupGuardOptions): Promise<void> {
  const fastifyConfig = app.initialConfig as FastifyConfigView
  if (fastifyConfig.http2 === true) throw new HG_ERR_HTTP2_UNSUPPORTED()
  // Everything is checked before anything is installed.
  const config = withPrefix(resolveConfig(options, FASTIFY_KEYS), app.prefix)
  const underPressure = readUnderPressure(config.door.underPressure)
  const server = app.server as DoorServer
  const before = { headersTimeout: server.headersTimeout, connectionsCheckingInterval: (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval }
  reconcileFastifyConfig(fastifyConfig, before, config.plan)
  if (underPressure !== null && app.hasPlugin(UNDER_PRESSURE_NAME)) throw new HG_ERR_FASTIFY_UNDER_PRESSURE_REGISTERED()
  const binding = bindServer(server, config, 'fastify', fastifyAnswerer) // HG_ERR_ALREADY_CONFIGURED on a second registration
  try {
    await install(app, binding, underPressure, config.handleSignals)
  } catch (err) {
    // Nothing stays applied when registration fails (a decorator taken, a route on a health path…).
    delete server[kDoor]
    binding.unbind()
    throw err
  }
}

/** The health paths under the prefix of the context that registers the plugin (as its routes' URLs). */
function withPrefix (config: ResolvedConfig, prefix: string): ResolvedConfig {
  const { livenessPath, readinessPath } = config.guard
  if (prefix === '' || livenessPath === null || readinessPath === null) return config
  const guard = Object.freeze({ ...config.guard, livenessPath: prefix + livenessPath, readinessPath: prefix + readinessPath })
  return Object.freeze({ ...config, guard })
}

async function install (app: FastifyInstance, binding: Binding, underPressure: ResolvedUnderPressure | null, handleSignals: boolean): Promise<void> {
  const composeUnderPressure = binding.config.door.underPressure !== false
  const { guard, applied } = binding
  const server = app.server as DoorServer
  const plan = guard.plan
  const door: Door = {
    guard,
    plan,
    fallback: Object.freeze({ budget: guard.budget, source: 'default' as RouteBudgetSource, ownErrorHandler: false }),
    fastifyHandlerTimeout: (app.initialConfig as FastifyConfigView).handlerTimeout ?? 0,
    composePressure: composeUnderPressure,
    contextSlot: undefined,
    bound: true,
    healthPaths: guard.options.livenessPath === null ? [] : [guard.options.livenessPath, guard.options.readinessPath as string]
  }
  // Routes declared before the plugin: onRoute below sees the later ones.
  for (const url of door.healthPaths) {
    for (const method of ['GET', 'HEAD']) if (app.hasRoute({ method, url })) throw new HG_ERR_FASTIFY_HEALTH_PATH_TAKEN(routeLabel(method, url), url)
  }
  server[kDoor] = door

  const notes = [
    ...applied.notes.map((n) => `applied: ${n}`),
    "fastify: deadlines by hangup-guard's onRequest hook (route config hangupGuard.timeout overrides; routes with Fastify's handlerTimeout keep Fastify's).",
    underPressure !== null
      ? `fastify: @fastify/under-pressure registered by hangup-guard, its health check fed with the core's hard limits only, the queueing-delay controller sheds in the core (${JSON.stringify({ ...underPressure, healthCheck: underPressure.healthCheck === undefined ? undefined : 'fn' })}); its 503s answered by hangup-guard.`
      : !composeUnderPressure ? 'fastify: @fastify/under-pressure left alone.' : "fastify: a @fastify/under-pressure you register answers with hangup-guard's 503 (route config.pressureHandler)."
  ]
  const handle: FastifyHangupGuard = {
    plan,
    explain: () => `${plan.explain()}\n${notes.join('\n')}`,
    stats: () => guard.snapshot(),
    health: (kind: HealthKind = 'readiness') => binding.health(kind),
    drain: (drainOptions?: DrainOptions) => startDrain(server, guard, drainOptions)
  }
  if (guard.queue !== null) {
    // One log line per change of the shedding state, never one per refusal.
    guard.queue.onChange = (e) => {
      if (e.shedding) app.log.warn({ hangupGuard: 'shedding', delayMs: e.delayMs, targetMs: e.targetMs }, 'hangup-guard: standing queue, shedding requests above the queueing target')
      else app.log.info({ hangupGuard: 'shedding-stopped', delayMs: e.delayMs, targetMs: e.targetMs }, 'hangup-guard: queue drained, shedding stopped')
    }
  }
  app.decorate('hangupGuard', handle)
  // A getter on the context's Request prototype: nothing per request (a value decoration is
  // written into every Request Fastify builds, guarded or not, and set again at admission).
  app.decorateRequest('deadline', { getter (this: FastifyRequest) { return deadlineOf(this.raw) } })
  app.addHook('onRoute', onRoute)
  // under-pressure first: under pressure it sheds before the guard tracks anything.
  if (underPressure !== null) await registerUnderPressure(app, underPressure, binding)
  app.addHook('onRequest', onRequestHook(door))
  // Probes are answered in front of Fastify (lib/core/front.ts), as behind the node:http door.
  const removeFront = door.healthPaths.length > 0 ? installProbeFront(server, guard) : null
  if (removeFront !== null) notes.push(`fastify: health probes GET/HEAD ${door.healthPaths.join(', ')}, answered before routing (not admitted, not shed, no Fastify hook or log).`)

  const signals: SignalHandlers | null = handleSignals
    ? onDrainSignals(() => startDrain(server, guard).then(() => app.close()), () => { forceDrain(guard) })
    : null
  app.addHook('onClose', (_instance, next) => {
    // Fastify's own server close ran before (onClose handlers run last-registered first).
    signals?.uninstall()
    removeFront?.()
    door.bound = false
    delete server[kDoor]
    binding.unbind()
    next()
  })
}

fp(hangupGuard, { fastify: '5.x', name: 'hangup-guard' })
Object.assign(hangupGuard, { default: hangupGuard, hangupGuard, fastifyServerOptions })

// Names for Node's CommonJS-from-ESM lexer (the annotation esbuild emits): `import { fastifyServerOptions }`
// works from ESM. Never executed; module.exports is the plugin itself (export = below).
0 && (module.exports = { hangupGuard, fastifyServerOptions })

// `export =` with a namespace, as @fastify/under-pressure's types: `require()` returns the plugin,
// and default, named and CommonJS imports all type-check.
declare namespace hangupGuard {
  export type {
    FastifyHangupGuardOptions, FastifyHangupGuardOptions as Options, UnderPressureOptions, RouteGuardConfig,
    FastifyTimeoutOptions, FastifyHangupGuard, Deadline, DrainResult, DrainOptions, StatsSnapshot, TimeoutPlan, HealthAnswer, HealthKind
  }
  export { hangupGuard as default, hangupGuard, fastifyServerOptions }
}
export = hangupGuard
