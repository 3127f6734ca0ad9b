/**
 * What both front doors do to a server: check it, plan, apply the plan, create the guard, answer
 * socket timeouts, and undo all of it. The adapters add only their way into the request path
 * (an emit wrapper for node:http, hooks for Fastify).
 */
import http, { type Server } from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import { HG_ERR_ALREADY_CONFIGURED, HG_ERR_HTTP2_UNSUPPORTED, HG_ERR_NOT_A_SERVER, HG_ERR_OPT_TYPE } from './errors'
import { type PlanOptions, planTimeouts } from './plan'
import { type GuardOptions, checkKnownKeys, resolveGuardOptions } from './options'
import { Guard } from './guard'
import { applyPlan, type AppliedPlan } from './apply'
import { kGuard } from './symbols'

export type HangupGuardOptions = PlanOptions & GuardOptions

export interface Binding {
  readonly server: Server
  readonly guard: Guard
  readonly applied: AppliedPlan
  /** Removes what bindServer installed and restores the previous timeouts. */
  unbind (): void
}

export type BoundServer = Server & { [kGuard]?: Binding }

function onServerTimeout (this: BoundServer, socket: Socket): void {
  this[kGuard]?.guard.socketTimeout(socket)
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
  const applied = applyPlan(server, plan)
  server.on('timeout', onServerTimeout)
  const binding: Binding = {
    server,
    guard,
    applied,
    unbind (): void {
      if (target[kGuard] !== binding) return
      server.removeListener('timeout', onServerTimeout)
      applied.restore()
      delete target[kGuard]
    }
  }
  target[kGuard] = binding
  return binding
}
