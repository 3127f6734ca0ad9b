/**
 * What both front doors do to a server: check it, plan, apply the plan, create the guard, answer
 * socket timeouts, and undo all of it. The adapters add only their way into the request path
 * (an emit wrapper for node:http, hooks for Fastify).
 */
import http, { type Server } from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { HG_ERR_ALREADY_CONFIGURED, HG_ERR_HTTP2_UNSUPPORTED, HG_ERR_NOT_A_SERVER } from './errors'
import type { PlanOptions } from './plan'
import type { GuardOptions } from './options'
import type { ResolvedConfig } from './config'
import { Guard, type Answerer } from './guard'
import { applyPlan, type AppliedPlan } from './apply'
import { kGuard } from './symbols'
import { createQueueController, type QueueController } from './overload'
import { acceptQueueReader } from './accept-queue'
import { acquireSampler, type Sampler } from './sampler'
import { createPressure, type Pressure, type PressureOptions } from './pressure'
import { acquireWatchdog, watchdogHasWork, type Watchdog, type WatchdogOptions } from './watchdog'
import type { HealthAnswer, HealthKind } from './health'
import { holdTickShape } from './tick-shape'

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
  readonly config: ResolvedConfig
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

/**
 * Prepended, so it answers before any other listener (Fastify's clientErrorHandler finds the socket
 * destroyed). Other client errors are left to the other listeners, or, when this one is alone,
 * answered as Node does without a listener (lib/_http_server.js `socketOnError`).
 */
function onClientError (this: BoundServer, err: NodeJS.ErrnoException, socket: Socket): void {
  const binding = this[kGuard]
  if (binding !== undefined && binding.guard.requestTimedOut(err, socket)) return
  if (this.listenerCount('clientError') > 1) return
  if (socket.writable && !((socket as unknown as { _httpMessage?: { _headerSent?: boolean } | null })._httpMessage?._headerSent ?? false)) {
    socket.write(NODE_CLIENT_ERROR_ANSWERS[err.code ?? ''] ?? NODE_CLIENT_ERROR_ANSWERS.default)
  }
  socket.destroy(err)
}

/** Node's own answers to client errors (lib/_http_server.js, v20 to v26). */
const NODE_CLIENT_ERROR_ANSWERS: Record<string, string> = {
  HPE_HEADER_OVERFLOW: 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n',
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 'HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n',
  ERR_HTTP_REQUEST_TIMEOUT: 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n',
  default: 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'
}

function onListening (this: BoundServer): void {
  const binding = this[kGuard]
  if (binding === undefined) return
  binding.guard.listening(performance.now())
  if (binding.guard.queue !== null) watchAcceptQueue(this, binding.guard.queue)
}

function onConnection (this: BoundServer): void {
  this[kGuard]?.guard.queue?.onConnection()
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
    const s = server as { listen?: unknown, use?: unknown, handle?: unknown } | null
    if (typeof server === 'function' && typeof s?.listen === 'function' && (typeof s.use === 'function' || typeof s.handle === 'function')) {
      // An Express / Connect app: a request handler, not the server it runs in.
      throw new HG_ERR_NOT_A_SERVER('an application (a request handler such as an Express app), not its server. Pass the http.Server: `const server = app.listen(3000)`, or `const server = http.createServer(app)`')
    }
    throw new HG_ERR_NOT_A_SERVER(server === null ? 'null' : typeof server === 'object' ? `an instance of ${ctor || 'Object'}` : typeof server)
  }
}

/** The binding of a guarded server, if any. */
export function bindingOf (server: Server): Binding | undefined {
  return (server as BoundServer)[kGuard]
}

/**
 * Applies a resolved configuration (lib/config.ts: every option already checked) to a server:
 * applies the plan, creates the server's guard, and only then acquires the shared sampler, the
 * pressure evaluator and the watchdog.
 */
export function bindServer (server: Server, config: ResolvedConfig, door: 'http' | 'fastify' = 'http', answerer: Answerer | null = null): Binding {
  checkServer(server)
  const target = server as BoundServer
  if (target[kGuard] !== undefined) {
    throw new HG_ERR_ALREADY_CONFIGURED(door === 'fastify'
      ? 'register the plugin once per server: at the root to guard every route, or in the one context whose routes it guards (a configureServerTimeouts() on app.server counts too)'
      : 'call close() on the handle configureServerTimeouts() returned before configuring it again (or, on a Fastify app, use the plugin alone)')
  }
  holdTickShape() // once per process: see lib/core/tick-shape.ts
  const plan = config.plan
  // The controller is plain state (no timer): made before anything is acquired.
  const queue = config.pressure === false ? null : createQueueController(config.pressure, config.guard.retryAfter)
  const sampler = acquireSampler()
  let pressure: Pressure | null = null
  let watchdog: Watchdog | null = null
  try {
    pressure = createPressure(sampler, config.pressure === false ? NO_PRESSURE : config.pressure)
    if (config.watchdog !== false && watchdogHasWork(config.watchdog)) watchdog = acquireWatchdog(config.watchdog)
  } catch (err) {
    pressure?.close()
    sampler.release()
    throw err
  }
  // Built whole from its parts: nothing is assigned into the guard afterwards.
  const guard = new Guard(plan, config.guard, {
    stall: config.pressure === false ? null : sampler,
    pressure: config.pressure === false ? null : pressure,
    answerer,
    health: { pressure, sampler, watchdog, plan: JSON.parse(JSON.stringify(plan)) as unknown },
    queue,
    ticks: sampler
  })
  if (queue !== null) {
    queue.loop = sampler
    if (server.listening) watchAcceptQueue(server, queue)
  }
  const applied = applyPlan(server, plan)
  server.on('timeout', onServerTimeout)
  server.prependListener('clientError', onClientError)
  server.on('listening', onListening)
  server.on('connection', onConnection)
  const binding: Binding = {
    server,
    config,
    guard,
    applied,
    sampler,
    pressure,
    watchdog,
    health: (kind: HealthKind): HealthAnswer => guard.health(kind),
    unbind (): void {
      if (target[kGuard] !== binding) return
      server.removeListener('timeout', onServerTimeout)
      server.removeListener('clientError', onClientError)
      server.removeListener('listening', onListening)
      server.removeListener('connection', onConnection)
      applied.restore()
      guard.detach()
      pressure.close()
      watchdog?.release()
      sampler.release()
      delete target[kGuard]
    }
  }
  target[kGuard] = binding
  return binding
}
