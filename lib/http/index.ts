/**
 * The plain node:http front door: `configureServerTimeouts(server, options)` binds the core to the
 * server and puts the guard in front of every 'request' listener, whether it was added before or
 * after this call, through the core's server-level front (lib/core/front.ts: probes, then
 * admission). The handle removes all of it on close().
 */
import type { IncomingMessage, ServerResponse, Server } from 'node:http'
import type { TimeoutPlan } from '../core/plan'
import type { Guard } from '../core/guard'
import { type HangupGuardOptions, bindServer, checkServer } from '../core/bind'
import { HG_ERR_CLOSED } from '../core/errors'
import type { StatsSnapshot } from '../core/stats'
import type { HealthAnswer, HealthKind } from '../core/health'
import type { DrainOptions } from '../core/options'
import { startDrain } from '../core/drain'
import type { DrainResult } from '../core/drain-state'
import { type SignalHandlers, drainOnSignals } from '../core/signals'
import { resolveConfig } from '../core/config'
import { kEmit, kFrontGuard } from '../core/symbols'
import { Pending } from '../core/pending'
import { type FrontServer, answerProbe, installFront } from '../core/front'
import { refuse } from './raw'

export type { HangupGuardOptions } from '../core/bind'

/** What configureServerTimeouts returns. */
export interface ServerGuard {
  /** The frozen timeout plan in force. */
  readonly plan: TimeoutPlan
  /** The plan as a text table, with how it was applied. */
  explain (): string
  /** Counters (docs/api.md#counters). */
  stats (): StatsSnapshot
  /** The liveness or readiness document now (what /livez and /readyz answer). */
  health (kind?: HealthKind): HealthAnswer
  /**
   * Drains the server (options `drain: { delay, timeout }`, overridable per call) and closes it;
   * never calls process.exit. Every call returns the promise of the first.
   */
  drain (options?: DrainOptions): Promise<DrainResult>
  /** Removes everything installed: request guard, 'timeout' listener, signal handlers; restores the previous timeouts. */
  close (): void
}

/**
 * Runs before every 'request' listener. Returns false when the guard answered for the request
 * (then no listener runs).
 */
function admit (guard: Guard, req: IncomingMessage, res: ServerResponse): boolean {
  if (answerProbe(guard, req, res)) return false
  const admitted = guard.admit(req, res, guard.budget, null, null)
  if (admitted instanceof Pending) return true
  if (admitted !== null) refuse(guard, req, res, admitted) // null: the client is gone, no answer
  return false
}

type RequestListener = (this: Server, req: IncomingMessage, res: ServerResponse) => unknown

/**
 * Runs the request listeners as EventEmitter's emit would (a copy of the list, in order) and
 * watches what they return: a promise's rejection is the guard's to answer, not an unhandled
 * rejection that ends the process (lib/events.js reads `_events` the same way on Node 20 to 26).
 */
function emitWatched (server: FrontServer, guard: Guard, event: string, req: IncomingMessage, res: ServerResponse): boolean {
  const handlers = (server as unknown as { _events: Record<string, RequestListener | RequestListener[] | undefined> })._events[event]
  if (handlers === undefined) return false
  if (typeof handlers === 'function') {
    watch(guard, req, res, handlers.call(server, req, res))
  } else {
    const list = handlers.slice()
    for (let i = 0; i < list.length; i++) watch(guard, req, res, list[i]!.call(server, req, res))
  }
  return true
}

function watch (guard: Guard, req: IncomingMessage, res: ServerResponse, result: unknown): void {
  if (result === undefined || result === null || typeof (result as PromiseLike<unknown>).then !== 'function') return
  ;(result as PromiseLike<unknown>).then(undefined, (error: unknown) => { guard.handlerRejected(req, res, error) })
}

function guardedEmit (this: FrontServer, event: string | symbol, req?: unknown, res?: unknown): boolean {
  // 'checkContinue' and 'checkExpectation' carry requests too (Expect headers, when listened to).
  if (event === 'request' || event === 'checkContinue' || event === 'checkExpectation') {
    // Fixed arity on the hot path: no `arguments` object per request.
    const guard = this[kFrontGuard]
    if (!admit(guard, req as IncomingMessage, res as ServerResponse)) return true
    if (guard.options.catchRejections === true) return emitWatched(this, guard, event, req as IncomingMessage, res as ServerResponse)
    return (this[kEmit] as (event: string, req: unknown, res: unknown) => boolean).call(this, event, req, res)
  }
  return this[kEmit].apply(this, arguments as unknown as Parameters<Server['emit']>)
}

/**
 * Plans the server's timeouts from `options`, applies them (before or after listen()), and puts
 * the request guard in front of the server's request listeners.
 */
export function configureServerTimeouts (server: Server, options: HangupGuardOptions = {}): ServerGuard {
  checkServer(server)
  const config = resolveConfig(options) // every option checked before anything is installed
  const handleSignals = config.handleSignals
  const binding = bindServer(server, config)
  const { guard, plan, applied } = { guard: binding.guard, plan: binding.guard.plan, applied: binding.applied }
  const removeFront = installFront(server, guard, guardedEmit)
  const signals: SignalHandlers | null = handleSignals ? drainOnSignals(server, guard) : null

  let closed = false
  return {
    plan,
    explain: () => `${plan.explain()}\n${applied.notes.map((n) => `applied: ${n}`).join('\n')}`,
    stats: () => guard.snapshot(),
    health: (kind: HealthKind = 'readiness') => binding.health(kind),
    drain: (drainOptions?: DrainOptions) => closed && guard.drainRun === null ? Promise.reject(new HG_ERR_CLOSED()) : startDrain(server, guard, drainOptions),
    close (): void {
      if (closed) return
      closed = true
      signals?.uninstall()
      removeFront()
      binding.unbind()
    }
  }
}
