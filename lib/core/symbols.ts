/** Private slots, one place: `kArea + Thing: Symbol('hangup-guard.area.thing')` (as fastify's lib/symbols.js). */
export const kGuard = Symbol('hangup-guard.server.guard')
export const kPending = Symbol('hangup-guard.request.pending')
export const kAnswered = Symbol('hangup-guard.response.answered')
export const kQueued = Symbol('hangup-guard.socket.queued')
export const kLastResponse = Symbol('hangup-guard.socket.lastResponse')
export const kCloseMarked = Symbol('hangup-guard.response.closeMarked')
