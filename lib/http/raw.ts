/**
 * How the node:http door sends what the core decided, on the raw response: a refusal (503 with
 * Retry-After, problem+json). Health probes are answered by the core's front (lib/core/front.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Guard, Refusal } from '../core/guard'
import { sendAnswer } from '../core/answer'

/** Sends the core's refusal and records it (counted once, by the core). */
export function refuse (guard: Guard, req: IncomingMessage, res: ServerResponse, refusal: Refusal): void {
  // The controller's refusal (not while draining: that one is a copy that closes): its
  // preformatted bytes, no Error, no JSON, nothing allocated.
  if (refusal === guard.queueRefusal && guard.queue !== null && guard.queue.sendRaw(req, res)) {
    guard.recordRefusal(req, res, refusal, 503, null)
    return
  }
  sendAnswer(req, res, refusal.error, { retryAfter: guard.options.retryAfter, close: refusal.close })
  guard.recordRefusal(req, res, refusal, refusal.error.statusCode, null)
}
