/** Private slots, one place: `kArea + Thing: Symbol('hangup-guard.area.thing')` (as fastify's lib/symbols.js). */
export const kGuard = Symbol('hangup-guard.server.guard')
export const kPending = Symbol('hangup-guard.request.pending')
export const kAnswered = Symbol('hangup-guard.response.answered')
export const kProblemBody = Symbol('hangup-guard.error.problemBody')
export const kFreshConnection = Symbol('hangup-guard.socket.fresh')
