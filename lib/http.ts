/**
 * The plain node:http front door: `configureServerTimeouts(server, options)` plans and applies
 * the timeouts, puts the guard in front of every request listener (before and after this call),
 * answers socket timeouts, and returns a handle that removes all of it on close().
 */
import http, { type IncomingMessage, type ServerResponse, type Server } from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { HG_ERR_ALREADY_CONFIGURED, HG_ERR_HTTP2_UNSUPPORTED, HG_ERR_NOT_A_SERVER, HG_ERR_OPT_TYPE } from './errors'
import { type PlanOptions, type TimeoutPlan, planTimeouts } from './plan'
import { type GuardOptions, checkKnownKeys, resolveGuardOptions } from './options'
import { Guard } from './guard'
import { applyPlan, type AppliedPlan } from './apply'
import type { StatsSnapshot } from './stats'
import { kGuard } from './symbols'

export type HangupGuardOptions = PlanOptions & GuardOptions

/** What configureServerTimeouts returns. */
export interface ServerGuard {
  /** The frozen timeout plan in force. */
  readonly plan: TimeoutPlan
  /** The plan as a text table, with how it was applied. */
  explain (): string
  /** Counters (docs/api.md#counters). */
  stats (): StatsSnapshot
  /** Removes everything installed: request guard, 'timeout' listener; restores the previous timeouts. */
  close (): void
}

interface Binding {
  readonly guard: Guard
  readonly emit: Server['emit']
  readonly hadOwnEmit: boolean
  readonly applied: AppliedPlan
}

type GuardedServer = Server & { [kGuard]?: Binding }

/**
 * Runs before every 'request' listener, whenever it was added. Returns false when the guard
 * answered for the request (no listener must run).
 */
function admit (guard: Guard, req: IncomingMessage, res: ServerResponse): boolean {
  const now = performance.now()
  const budget = guard.budgetFor(req)
  const refusal = guard.verdict(budget, now)
  if (refusal !== null) {
    guard.stats.requests++
    guard.refuseRaw(req, res, refusal)
    return false
  }
  guard.track(req, res, budget, now, null)
  return true
}

function guardedEmit (this: GuardedServer, event: string | symbol, req?: unknown, res?: unknown): boolean {
  const binding = this[kGuard] as Binding
  if (event === 'request' && !admit(binding.guard, req as IncomingMessage, res as ServerResponse)) return true
  // eslint-disable-next-line prefer-rest-params
  return binding.emit.apply(this, arguments as unknown as Parameters<Server['emit']>)
}

function onServerTimeout (this: GuardedServer, socket: Socket): void {
  this[kGuard]?.guard.socketTimeout(socket)
}

function checkServer (server: unknown): asserts server is Server {
  const ctor = (server as { constructor?: { name?: string } } | null)?.constructor?.name ?? ''
  if (ctor.startsWith('Http2')) throw new HG_ERR_HTTP2_UNSUPPORTED()
  if (!(server instanceof http.Server) && !(server instanceof https.Server)) {
    throw new HG_ERR_NOT_A_SERVER(server === null ? 'null' : typeof server === 'object' ? `an instance of ${ctor || 'Object'}` : typeof server)
  }
}

/**
 * Plans the server's timeouts from `options`, applies them (before or after listen()), and puts
 * the request guard in front of the server's request listeners.
 */
export function configureServerTimeouts (server: Server, options: HangupGuardOptions = {}): ServerGuard {
  checkServer(server)
  if (options === null || typeof options !== 'object') throw new HG_ERR_OPT_TYPE('options', options, 'an object')
  const target = server as GuardedServer
  if (target[kGuard] !== undefined) throw new HG_ERR_ALREADY_CONFIGURED()
  checkKnownKeys(options)
  const plan = planTimeouts(options)
  const guard = new Guard(plan, resolveGuardOptions(options, plan))
  const applied = applyPlan(server, plan)

  const hadOwnEmit = Object.hasOwn(server, 'emit')
  target[kGuard] = { guard, emit: server.emit, hadOwnEmit, applied }
  server.emit = guardedEmit as Server['emit']
  server.on('timeout', onServerTimeout)

  let closed = false
  return {
    plan,
    explain: () => `${plan.explain()}\n${applied.notes.map((n) => `applied: ${n}`).join('\n')}`,
    stats: () => guard.stats.snapshot(),
    close (): void {
      if (closed) return
      closed = true
      const binding = target[kGuard] as Binding
      if (binding.hadOwnEmit) server.emit = binding.emit
      else delete (server as Partial<Server>).emit
      server.removeListener('timeout', onServerTimeout)
      binding.applied.restore()
      delete target[kGuard]
    }
  }
}
