/**
 * The capacity refusal, preformatted once per server: 503 HG_ERR_AT_CAPACITY with Retry-After.
 * On node:http it is `writeHead(503, headerList)` + `end(body)` with the same array and Buffer
 * every time: no Error, no stack, no header object, no JSON per refusal. The Fastify door sends
 * the same body text through the reply (fastify-answer.ts reads it off the error).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { HG_ERR_AT_CAPACITY, type HangupGuardError } from './errors'
import { problemOf } from './answer'
import { kProblemBody } from './symbols'

export class CapacityAnswer {
  /** Created once: the one error every capacity refusal carries. */
  readonly error: HangupGuardError
  private headers: string[] = []
  private readonly body: Buffer

  constructor (retryAfterS: number) {
    this.error = new HG_ERR_AT_CAPACITY()
    const text = JSON.stringify(problemOf(this.error));
    (this.error as unknown as Record<symbol, string>)[kProblemBody] = text
    this.body = Buffer.from(text)
    this.retryAfter(retryAfterS)
  }

  /** Seconds in the Retry-After header. */
  retryAfter (seconds: number): void {
    this.headers = ['content-type', 'application/problem+json; charset=utf-8', 'content-length', String(this.body.length),
      'cache-control', 'no-store', 'retry-after', String(seconds)]
  }

  /** Sends it; false when the response has started or the client asks for text only (the caller formats it). */
  send (req: IncomingMessage, res: ServerResponse): boolean {
    const accept = req.headers.accept
    if (res.headersSent || (accept !== undefined && !accept.includes('json') && !accept.includes('*/*') && accept.includes('text/'))) return false
    res.writeHead(503, this.headers)
    res.end(req.method === 'HEAD' ? undefined : this.body)
    return true
  }
}
