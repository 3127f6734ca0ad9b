/**
 * How the Fastify door sends the guard's answers: through the reply, so onSend/onResponse hooks,
 * the access log and (when the app has one) its error handler see them, then the answered reply
 * is sealed so that the handler's late `reply.send` and raw writes crash nothing and add nothing
 * to the wire. Only answered replies are touched; the fast path never is.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import { type AnswerOptions, neutralize, problemOf, sendAnswer } from '../core/answer'
import type { HangupGuardError } from '../core/errors'
import type { Pending } from '../core/pending'
import { type RouteConfigSlots } from './options'
import { kRoute, kAnsweredReply, kOriginalLog, kProblemBody } from '../core/symbols'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8'

/** Headers describing the representation the handler was preparing; the answer replaces it. */
const REPRESENTATION_HEADERS = ['content-length', 'content-encoding', 'content-range', 'content-disposition', 'etag', 'last-modified']

type AnsweredResponse = ServerResponse & { [kAnsweredReply]?: FastifyReply }

/**
 * True when the app formats errors itself: a route `errorHandler`, or an instance error handler
 * other than Fastify's default one (recognised by its function name, stable through Fastify 4
 * and 5; a renamed default only means the error goes through it, still with its code). Fastify's
 * default handler would flatten the error into `{ statusCode, code, error, message }`, so then
 * the problem body is sent as it is on the plain node:http door.
 */
function appFormatsErrors (reply: FastifyReply): boolean {
  const record = (reply.routeOptions.config as RouteConfigSlots)[kRoute]
  if (record?.ownErrorHandler === true) return true
  return reply.server.errorHandler.name !== 'defaultErrorHandler'
}

/**
 * Prepares `reply` for the answer (status, headers) and returns the payload to send: the error
 * itself when the app formats errors (it carries `statusCode` and `code`), else the
 * application/problem+json body. Headers set before (CORS, request id) are kept, as Fastify does
 * for errors; those of the representation the handler was preparing are dropped.
 */
export function answerPayload (reply: FastifyReply, err: HangupGuardError, opts: AnswerOptions): HangupGuardError | string {
  const status = opts.statusCode ?? err.statusCode
  if (status !== err.statusCode) (err as { statusCode: number }).statusCode = status
  for (const name of REPRESENTATION_HEADERS) if (reply.hasHeader(name)) reply.removeHeader(name)
  reply.code(status)
  reply.header('cache-control', 'no-store')
  if (opts.retryAfter !== undefined) reply.header('retry-after', opts.retryAfter)
  if (opts.close === true) reply.header('connection', 'close')
  if (appFormatsErrors(reply)) return err
  reply.header('content-type', PROBLEM_CONTENT_TYPE)
  // A shared, preformatted error (the capacity refusal) carries its body: nothing to build.
  return (err as unknown as Record<symbol, string | undefined>)[kProblemBody] ?? JSON.stringify(problemOf(err))
}

/**
 * The guard's Answerer on a Fastify server (deadline, socket timeout, drain deadline). A hijacked
 * reply, or one whose pipeline throws, is answered raw as on the plain door.
 */
export function fastifyAnswerer (p: Pending, err: HangupGuardError, opts: AnswerOptions): boolean {
  const reply = p.ctx as FastifyReply | null
  if (reply === null || reply.sent) return sendAnswer(p.req, p.res, err, opts)
  try {
    reply.send(answerPayload(reply, err, opts))
  } catch {
    // reply.send throws only while an onError hook runs for this reply (FST_ERR_SEND_INSIDE_ONERR):
    // its pipeline is busy, so answer on the raw response, which also neutralises it.
    return sendAnswer(p.req, p.res, err, opts)
  }
  seal(reply)
  return true
}

/**
 * Neutralises the answered reply once Fastify has written the answer: at once in the usual
 * synchronous case, else when the response finishes (async onSend hooks or error handler).
 */
function seal (reply: FastifyReply): void {
  const res = reply.raw as AnsweredResponse
  if (res.writableEnded) {
    sealNow(reply)
    return
  }
  res[kAnsweredReply] = reply
  res.once('finish', onAnsweredDone)
  res.once('close', onAnsweredDone)
}

function onAnsweredDone (this: AnsweredResponse): void {
  const reply = this[kAnsweredReply]
  if (reply === undefined) return
  delete this[kAnsweredReply]
  sealNow(reply)
}

function sealNow (reply: FastifyReply): void {
  neutralize(reply.raw)
  const target = reply as { send: FastifyReply['send'], log: FastifyBaseLogger }
  // Shadows Reply.prototype.send on this one reply: Fastify's own would log
  // FST_ERR_REP_ALREADY_SENT at warn level for every handler that answers after its deadline.
  target.send = lateSend
  // A handler that gives up on its signal rejects with the guard's reason; Fastify would log that
  // at error level ('Promise errored, but reply.sent = true was set'). Only such consequences of
  // the answer are demoted to debug: other late errors still log as errors.
  const quiet = Object.create(target.log) as QuietLogger
  quiet[kOriginalLog] = target.log
  quiet.error = lateErrorLog
  target.log = quiet
}

type QuietLogger = FastifyBaseLogger & { [kOriginalLog]: FastifyBaseLogger }

/** The guard's own errors, and aborts (the handler's work was aborted by the guard's signal). */
function isAnswerConsequence (value: unknown): boolean {
  const err = (value as { err?: unknown } | null)?.err ?? value
  if (err === null || typeof err !== 'object') return false
  const { code, name } = err as { code?: unknown, name?: unknown }
  return (typeof code === 'string' && code.startsWith('HG_ERR_')) || name === 'AbortError'
}

function lateErrorLog (this: QuietLogger, ...args: unknown[]): void {
  const log = this[kOriginalLog]
  if (isAnswerConsequence(args[0])) (log.debug as (...a: unknown[]) => void)(...args)
  else (log.error as (...a: unknown[]) => void)(...args)
}

function lateSend (this: FastifyReply, payload?: unknown): FastifyReply {
  const stream = payload as { pipe?: unknown, destroy?: (err?: Error) => void } | null | undefined
  // A stream nobody will read would hold its file descriptor or upstream connection.
  if (typeof stream?.pipe === 'function' && typeof stream.destroy === 'function') stream.destroy()
  this.log.debug({ hangupGuard: 'late-send', lateError: payload instanceof Error ? payload.message : undefined }, 'hangup-guard: reply.send after the guard answered; ignored')
  return this
}
