/**
 * How the node:http door sends what the core decided, on the raw response: a refusal (503 with
 * Retry-After, problem+json) and a health probe's document.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Guard, Refusal } from '../core/guard'
import type { HealthKind } from '../core/health'
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

/** Answers a health probe with the core's document (public view unless `health.details`). */
export function serveProbe (guard: Guard, req: IncomingMessage, res: ServerResponse, kind: HealthKind): void {
  const answer = guard.probe(kind)
  res.writeHead(answer.statusCode, { 'content-type': answer.contentType, 'content-length': Buffer.byteLength(answer.body), 'cache-control': 'no-store' })
  res.end(req.method === 'HEAD' ? undefined : answer.body)
}
