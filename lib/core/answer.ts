/**
 * The guard's own answers on a raw ServerResponse: a small `application/problem+json` body (or
 * text/plain for clients that only accept text), sent with the prototype's methods, after which
 * that one response's methods are neutralised so the handler's late writes crash nothing and add
 * nothing to the wire.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { HangupGuardError } from './errors'
import { kAnswered } from './symbols'

/** RFC 9457 `type`: a URN per code (listed in docs/api.md); not meant to be dereferenced. */
export const PROBLEM_TYPE_BASE = 'urn:hangup-guard:error:'

/** The JSON body the guard sends (RFC 9457 problem details, plus a stable `code`). */
export interface ProblemBody {
  type: string
  title: string
  status: number
  detail: string
  code: string
}

export function problemOf (err: HangupGuardError): ProblemBody {
  return {
    type: PROBLEM_TYPE_BASE + err.code.toLowerCase(),
    title: titleOf(err.statusCode),
    status: err.statusCode,
    detail: err.message,
    code: err.code
  }
}

function titleOf (status: number): string {
  switch (status) {
    case 408: return 'Request Timeout'
    case 503: return 'Service Unavailable'
    case 504: return 'Gateway Timeout'
    default: return 'Error'
  }
}

/** True when the client says it takes text but not JSON (curl's default accepts everything). */
function prefersText (req: IncomingMessage): boolean {
  const accept = req.headers.accept
  return accept !== undefined && !accept.includes('json') && !accept.includes('*/*') && accept.includes('text/')
}

export interface AnswerOptions {
  /** Seconds for a `Retry-After` header (503). */
  retryAfter?: number
  /** Send `Connection: close`. */
  close?: boolean
  /** Status to send instead of the error's own (the `timeoutStatus` option). */
  statusCode?: number
}

/**
 * Sends `err` as the answer, unless the response has already started. Returns false when it could
 * not answer (headers already sent). Headers a handler had already set are dropped: they belonged
 * to the answer it did not give.
 */
export function sendAnswer (req: IncomingMessage, res: ServerResponse, err: HangupGuardError, opts: AnswerOptions): boolean {
  if (res.writableEnded || res.destroyed || onWire(res)) return false
  if (res.headersSent) discardStagedHead(res)
  const status = opts.statusCode ?? err.statusCode
  const problem = problemOf(err)
  problem.status = status
  problem.title = titleOf(status)
  const text = prefersText(req)
  const body = text ? `${status} ${problem.title}: ${problem.detail} (${problem.code})\n` : JSON.stringify(problem)
  for (const name of res.getHeaderNames()) res.removeHeader(name)
  const headers: Record<string, string | number> = {
    'content-type': text ? 'text/plain; charset=utf-8' : 'application/problem+json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store'
  }
  if (opts.retryAfter !== undefined) headers['retry-after'] = opts.retryAfter
  if (opts.close === true) headers.connection = 'close'
  res.writeHead(status, headers)
  res.end(req.method === 'HEAD' ? undefined : body)
  neutralize(res)
  return true
}

/** Node's private fields of an OutgoingMessage that a staged head sets (lib/_http_outgoing.js `_storeHeader`, `writeHead` in lib/_http_server.js; the same on Node 20 to 26). */
interface StagedHead {
  _header: string | null
  _headerSent: boolean
  _last: boolean
  _hasBody: boolean
  chunkedEncoding: boolean
  statusMessage: string | undefined
}

/**
 * True once bytes of this response went out (or were queued for the socket): its head was flushed.
 * `headersSent` is already true after a bare writeHead(), when nothing is on the wire yet; Node
 * marks the flush in `_headerSent` (pinned on every supported line by test/issue-10/staged-head).
 */
export function onWire (res: ServerResponse): boolean {
  return (res as unknown as StagedHead)._headerSent === true
}

/**
 * Forgets a head that writeHead() stored but nothing flushed, so the response can be answered
 * afresh: the client gets the explicit answer instead of a reset.
 */
export function discardStagedHead (res: ServerResponse): void {
  const r = res as unknown as StagedHead
  r._header = null
  r._last = false
  r.chunkedEncoding = false
  r._hasBody = res.req.method !== 'HEAD'
  r.statusMessage = undefined
}

/**
 * A whole HTTP/1.1 answer as bytes for a socket that has no response to write it through (Node's
 * headersTimeout/requestTimeout, answered where Node would write its bare 408): problem+json,
 * `Connection: close`.
 */
export function rawAnswer (err: HangupGuardError): string {
  const body = JSON.stringify(problemOf(err))
  return `HTTP/1.1 ${err.statusCode} ${titleOf(err.statusCode)}\r\ncontent-type: application/problem+json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`
}

/** True once the guard answered for this response. */
export function isAnswered (res: ServerResponse): boolean {
  return (res as unknown as Record<symbol, unknown>)[kAnswered] === true
}

function returnThis (this: unknown): unknown { return this }
function lateEnd (this: ServerResponse, ...args: unknown[]): ServerResponse {
  const cb = args[args.length - 1]
  if (typeof cb === 'function') process.nextTick(cb as () => void)
  return this
}
function lateWrite (...args: unknown[]): boolean {
  const cb = args[args.length - 1]
  if (typeof cb === 'function') process.nextTick(cb as () => void)
  return true
}

const NEUTRALIZED: Record<string, (...args: unknown[]) => unknown> = {
  writeHead: returnThis,
  setHeader: returnThis,
  setHeaders: returnThis,
  appendHeader: returnThis,
  removeHeader: returnThis,
  flushHeaders: returnThis,
  addTrailers: returnThis,
  writeContinue: returnThis,
  writeProcessing: returnThis,
  writeEarlyHints: returnThis,
  cork: returnThis,
  uncork: returnThis,
  write: lateWrite,
  end: lateEnd
}

/**
 * Makes the handler's later calls on this one answered response harmless. Only responses the guard
 * answered are touched; the fast path never is.
 */
export function neutralize (res: ServerResponse): void {
  const target = res as unknown as Record<string | symbol, unknown>
  target[kAnswered] = true
  for (const name in NEUTRALIZED) target[name] = NEUTRALIZED[name]
}
