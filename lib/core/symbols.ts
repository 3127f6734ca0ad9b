/**
 * Private slots, all in one place, the doors' included: `kArea + Thing:
 * Symbol('hangup-guard.area.thing')` (as fastify's lib/symbols.js).
 */
export const kGuard = Symbol('hangup-guard.server.guard')
export const kPending = Symbol('hangup-guard.request.pending')
export const kAnswered = Symbol('hangup-guard.response.answered')
export const kQueued = Symbol('hangup-guard.socket.queued')
export const kLastResponse = Symbol('hangup-guard.socket.lastResponse')
export const kCloseMarked = Symbol('hangup-guard.response.closeMarked')
export const kProblemBody = Symbol('hangup-guard.error.problemBody')
// The server-level front both doors install (front.ts)
export const kEmit = Symbol('hangup-guard.server.emit')
export const kFrontGuard = Symbol('hangup-guard.server.frontGuard')
// Fastify door
export const kDoor = Symbol('hangup-guard.fastify.door')
export const kRoute = Symbol('hangup-guard.fastify.route')
export const kAnsweredReply = Symbol('hangup-guard.fastify.answeredReply')
export const kOriginalLog = Symbol('hangup-guard.fastify.originalLog')
