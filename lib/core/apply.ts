/**
 * Applies a plan to a node:http / node:https server, before or after listen(), and can restore
 * what was there before.
 */
import type { Server } from 'node:http'
import type { TimeoutPlan } from './plan'

const NODE_KEYS = ['timeout', 'keepAliveTimeout', 'headersTimeout', 'requestTimeout', 'connectionsCheckingInterval'] as const
type NodeKey = typeof NODE_KEYS[number]

export interface AppliedPlan {
  /** How each value took effect, for explain() and health. */
  readonly notes: readonly string[]
  /** Puts back the settings found before, and re-arms Node's connection check with them. */
  restore (): void
}

/**
 * Node reads connectionsCheckingInterval once, in the 'listening' listener `setupConnectionsTracking`
 * (lib/_http_server.js, v20 to v26), which clears and re-creates its interval. Calling that same
 * listener again re-arms the check with the new value on every supported line.
 */
function rearmConnectionsCheck (server: Server): boolean {
  const setup = server.listeners('listening').find((fn) => fn.name === 'setupConnectionsTracking')
  if (setup === undefined) return false
  setup.call(server)
  return true
}

export function applyPlan (server: Server, plan: TimeoutPlan): AppliedPlan {
  const target = server as unknown as Record<NodeKey, number>
  const previous = {} as Record<NodeKey, number>
  for (const key of NODE_KEYS) {
    previous[key] = target[key]
    target[key] = plan[key].value
  }
  const notes: string[] = []
  if (server.listening) {
    notes.push(rearmConnectionsCheck(server)
      ? 'connectionsCheckingInterval: applied after listen() by re-arming Node\'s connection check.'
      : 'connectionsCheckingInterval: NOT applied: the server was already listening and Node\'s connection check could not be re-armed on this Node version; configure before listen().')
    notes.push('timeout: connections accepted earlier keep their socket timeout until their next request.')
  } else {
    notes.push('All values take effect at listen().')
  }
  return Object.freeze({
    notes: Object.freeze(notes),
    restore (): void {
      for (const key of NODE_KEYS) target[key] = previous[key]
      if (server.listening) rearmConnectionsCheck(server)
    }
  })
}
