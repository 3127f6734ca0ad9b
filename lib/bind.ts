/**
 * What both front doors do to a server: check it, plan, apply the plan, create the guard, answer
 * socket timeouts, and undo all of it. The adapters add only their way into the request path
 * (an emit wrapper for node:http, hooks for Fastify).
 */
import http, { type Server } from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { HG_ERR_ALREADY_CONFIGURED, HG_ERR_HTTP2_UNSUPPORTED, HG_ERR_NOT_A_SERVER, HG_ERR_OPT_TYPE } from './errors'
import { type PlanOptions, planTimeouts } from './plan'
import { type GuardOptions, checkKnownKeys, resolveGuardOptions } from './options'
import { Guard } from './guard'
import { applyPlan, type AppliedPlan } from './apply'
import { kGuard } from './symbols'
import { acquireSampler, type Sampler } from './sampler'
import { createPressure, type Pressure, type PressureOptions } from './pressure'
import { acquireWatchdog, type Watchdog, type WatchdogOptions } from './watchdog'
import { buildHealth, type HealthAnswer, type HealthKind } from './health'
import { createQueueController, type QueueController } from './overload'
import { acceptQueueReader } from './accept-queue'

/** Stall detection, load shedding and health: the parts that watch the process, not a request. */
export interface WatchOptions {
  /**
   * Load shedding thresholds (503 + Retry-After before any handler work), also judged by
   * readiness. `false` turns shedding off, stall shedding included (health still reports).
   * @default {} (event-loop delay p99 1 s, heap 90% of V8's limit, RSS 90% of the cgroup memory limit, throttling 0.5 under a CPU limit)
   */
  pressure?: PressureOptions | false
  /** Off-main-thread stall watchdog (a worker thread); false turns it off. @default {} */
  watchdog?: WatchdogOptions | false
}

export type HangupGuardOptions = PlanOptions & GuardOptions & WatchOptions

const NO_PRESSURE: PressureOptions = { maxEventLoopDelay: false, maxEventLoopUtilization: false, maxHeapUsedBytes: false, maxRssBytes: false, maxThrottledRatio: false }

export interface Binding {
  readonly server: Server
  readonly guard: Guard
  readonly applied: AppliedPlan
  readonly sampler: Sampler
  readonly pressure: Pressure
  readonly watchdog: Watchdog | null
  /** The liveness or readiness answer now. */
  health (kind: HealthKind): HealthAnswer
  /** Removes what bindServer installed and restores the previous timeouts. */
  unbind (): void
}

export type BoundServer = Server & { [kGuard]?: Binding }

function onServerTimeout (this: BoundServer, socket: Socket): void {
  this[kGuard]?.guard.socketTimeout(socket)
}

function onListening (this: BoundServer): void {
  const binding = this[kGuard]
  if (binding === undefined) return
  binding.guard.listeningAt = performance.now()
  if (binding.guard.queue !== null) watchAcceptQueue(this, binding.guard.queue)
}

function onConnection (this: BoundServer, socket: Socket): void {
  this[kGuard]?.guard.queue?.onConnection(socket)
}

/** Points the controller at this server's listening socket (Linux: /proc/net/tcp{,6}; elsewhere none). */
function watchAcceptQueue (server: Server, queue: QueueController): void {
  const address = server.address()
  queue.acceptQueue = address !== null && typeof address === 'object' ? acceptQueueReader(address.port, address.family === 'IPv6' ? 6 : 4) : null
}

export function checkServer (server: unknown): asserts server is Server {
  const ctor = (server as { constructor?: { name?: string } } | null)?.constructor?.name ?? ''
  if (ctor.startsWith('Http2')) throw new HG_ERR_HTTP2_UNSUPPORTED()
  if (!(server instanceof http.Server) && !(server instanceof https.Server)) {
    throw new HG_ERR_NOT_A_SERVER(server === null ? 'null' : typeof server === 'object' ? `an instance of ${ctor || 'Object'}` : typeof server)
  }
}

/** The binding of a guarded server, if any. */
export function bindingOf (server: Server): Binding | undefined {
  return (server as BoundServer)[kGuard]
}

/**
 * Plans and applies the timeouts and creates the server's guard. `extraKeys`: option names the
 * calling adapter reads itself (they pass the unknown-option check).
 */
export function bindServer (server: Server, options: HangupGuardOptions, extraKeys: readonly string[] = []): Binding {
  checkServer(server)
  if (options === null || typeof options !== 'object') throw new HG_ERR_OPT_TYPE('options', options, 'an object')
  const target = server as BoundServer
  if (target[kGuard] !== undefined) throw new HG_ERR_ALREADY_CONFIGURED()
  checkKnownKeys(options, extraKeys)
  const plan = planTimeouts(options)
  const guard = new Guard(plan, resolveGuardOptions(options, plan))
  if (options.pressure !== undefined && options.pressure !== false && (options.pressure === null || typeof options.pressure !== 'object')) {
    throw new HG_ERR_OPT_TYPE('pressure', options.pressure, 'an object of thresholds, or false')
  }
  if (options.watchdog !== undefined && options.watchdog !== false && (options.watchdog === null || typeof options.watchdog !== 'object')) {
    throw new HG_ERR_OPT_TYPE('watchdog', options.watchdog, '{ logAfter, onStall }, or false')
  }
  const sampler = acquireSampler()
  let pressure: Pressure
  let watchdog: Watchdog | null = null
  try {
    pressure = createPressure(sampler, options.pressure === false ? NO_PRESSURE : options.pressure)
    if (options.watchdog !== false) watchdog = acquireWatchdog(options.watchdog)
  } catch (err) {
    sampler.release()
    throw err
  }
  if (options.pressure !== false) {
    guard.stall = sampler
    guard.pressure = pressure
    let queue: QueueController | null
    try {
      queue = createQueueController(options.pressure, guard.options.retryAfter)
    } catch (err) {
      pressure.close()
      watchdog?.release()
      sampler.release()
      throw err
    }
    if (queue !== null) {
      queue.loop = sampler
      guard.queue = queue
      guard.queueRefusal = { error: queue.error, cause: 'capacity', close: false }
      if (server.listening) watchAcceptQueue(server, queue)
    }
  }
  const planJson = JSON.parse(JSON.stringify(plan)) as unknown
  guard.healthOf = (kind) => buildHealth(kind, {
    pressure,
    sampler,
    watchdog,
    plan: planJson,
    stats: () => guard.snapshot(),
    draining: () => guard.drainPhase === 0 ? null : `draining (${guard.drainState().phase})`
  })
  const applied = applyPlan(server, plan)
  server.on('timeout', onServerTimeout)
  server.on('listening', onListening)
  server.on('connection', onConnection)
  const binding: Binding = {
    server,
    guard,
    applied,
    sampler,
    pressure,
    watchdog,
    health: (kind) => (guard.healthOf as (kind: HealthKind) => HealthAnswer)(kind),
    unbind (): void {
      if (target[kGuard] !== binding) return
      server.removeListener('timeout', onServerTimeout)
      server.removeListener('listening', onListening)
      server.removeListener('connection', onConnection)
      applied.restore()
      pressure.close()
      watchdog?.release()
      sampler.release()
      guard.stall = null
      guard.pressure = null
      guard.queue = null
      delete target[kGuard]
    }
  }
  target[kGuard] = binding
  return binding
}
