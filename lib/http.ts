/**
 * The plain node:http front door: `configureServerTimeouts(server, options)` binds the core to the
 * server and puts the guard in front of every 'request' listener, whether it was added before or
 * after this call, by wrapping this one server's `emit`. The handle removes all of it on close().
 */
import type { IncomingMessage, ServerResponse, Server } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { TimeoutPlan } from './plan'
import type { Guard } from './guard'
import { type HangupGuardOptions, bindServer } from './bind'
import { HG_ERR_CLOSED } from './errors'
import type { StatsSnapshot } from './stats'
import type { HealthAnswer, HealthKind } from './health'
import type { DrainOptions } from './options'
import { type DrainResult, startDrain } from './drain'
import { type SignalHandlers, drainOnSignals, readHandleSignals } from './signals'

export type { HangupGuardOptions } from './bind'

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

const kEmit = Symbol('hangup-guard.http.emit')
const kHttpGuard = Symbol('hangup-guard.http.guard')

type GuardedServer = Server & { [kEmit]: Server['emit'], [kHttpGuard]: Guard }

/**
 * Runs before every 'request' listener. Returns false when the guard answered for the request
 * (then no listener runs).
 */
function admit (guard: Guard, req: IncomingMessage, res: ServerResponse): boolean {
  const health = guard.healthKind(req)
  if (health !== null) {
    guard.serveHealthRaw(req, res, health)
    return false
  }
  if (guard.clientLeft(req)) return false
  const now = performance.now()
  const budget = guard.budgetFor(req)
  const refusal = guard.verdict(budget, now, req.socket)
  if (refusal !== null) {
    guard.refuseRaw(req, res, refusal)
    return false
  }
  guard.track(req, res, budget, now, null)
  return true
}

function guardedEmit (this: GuardedServer, event: string | symbol, req?: unknown, res?: unknown): boolean {
  if (event === 'request') {
    // Fixed arity on the hot path: no `arguments` object per request.
    return admit(this[kHttpGuard], req as IncomingMessage, res as ServerResponse) ? (this[kEmit] as (event: string, req: unknown, res: unknown) => boolean).call(this, event, req, res) : true
  }
  return this[kEmit].apply(this, arguments as unknown as Parameters<Server['emit']>)
}

/**
 * Plans the server's timeouts from `options`, applies them (before or after listen()), and puts
 * the request guard in front of the server's request listeners.
 */
export function configureServerTimeouts (server: Server, options: HangupGuardOptions = {}): ServerGuard {
  const handleSignals = readHandleSignals((options as HangupGuardOptions | null)?.handleSignals)
  const binding = bindServer(server, options)
  const { guard, plan, applied } = { guard: binding.guard, plan: binding.guard.plan, applied: binding.applied }
  const target = server as GuardedServer
  const hadOwnEmit = Object.hasOwn(server, 'emit')
  target[kEmit] = server.emit
  target[kHttpGuard] = guard
  server.emit = guardedEmit as Server['emit']
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
      if (hadOwnEmit) server.emit = target[kEmit]
      else delete (server as Partial<Server>).emit
      delete (target as Partial<GuardedServer>)[kEmit]
      delete (target as Partial<GuardedServer>)[kHttpGuard]
      binding.unbind()
    }
  }
}
