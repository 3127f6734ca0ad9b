/**
 * The error catalogue: the only place where hangup-guard creates error codes.
 *
 * Every code is stable. A retired code is listed below and MUST NOT be reused.
 * Retired codes: none yet.
 *
 * Option mistakes are TypeError (wrong type) or RangeError (value out of range or breaking a
 * rule between timeouts). Errors that are sent as HTTP answers carry their status code.
 */
import { format } from 'node:util'

export interface HangupGuardError extends Error {
  readonly code: string
  readonly statusCode: number
}

export interface HangupGuardErrorConstructor<Args extends unknown[] = unknown[]> {
  new (...args: Args): HangupGuardError
  (...args: Args): HangupGuardError
  readonly code: string
  readonly statusCode: number
  readonly prototype: HangupGuardError
}

type Base = ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor

function createError<Args extends unknown[] = unknown[]> (
  code: string,
  message: string,
  statusCode = 500,
  Base: Base = Error
): HangupGuardErrorConstructor<Args> {
  function HangupGuardError (this: unknown, ...args: Args): HangupGuardError {
    const err = new Base(format(message, ...args)) as HangupGuardError & { code: string, statusCode: number }
    Object.setPrototypeOf(err, HangupGuardError.prototype)
    err.code = code
    err.statusCode = statusCode
    if (typeof Error.captureStackTrace === 'function') Error.captureStackTrace(err, HangupGuardError)
    return err
  }
  HangupGuardError.prototype = Object.create(Base.prototype, {
    constructor: { value: HangupGuardError, writable: true, configurable: true },
    name: { value: `${Base.name} [${code}]`, writable: true, configurable: true }
  })
  Object.defineProperty(HangupGuardError, 'name', { value: code })
  Object.defineProperty(HangupGuardError, 'code', { value: code, enumerable: true })
  Object.defineProperty(HangupGuardError, 'statusCode', { value: statusCode, enumerable: true })
  // Symbol.hasInstance through a registry key (as undici does), so `instanceof` holds across two
  // installed copies of the package.
  const brand = Symbol.for(`hangup-guard.error.${code}`)
  Object.defineProperty(HangupGuardError.prototype, brand, { value: true })
  Object.defineProperty(HangupGuardError, Symbol.hasInstance, {
    value: (value: unknown) => value !== null && typeof value === 'object' && (value as Record<symbol, unknown>)[brand] === true
  })
  return HangupGuardError as unknown as HangupGuardErrorConstructor<Args>
}

/** Options */
export const HG_ERR_OPT_TYPE = createError<[string, unknown, string]>(
  'HG_ERR_OPT_TYPE', "Option '%s' got %j; it must be %s", 500, TypeError)
export const HG_ERR_OPT_DURATION = createError<[string, unknown]>(
  'HG_ERR_OPT_DURATION', "Option '%s' must be a duration: a number of milliseconds >= 0, or a string such as '500ms', '30s', '2m', '1h'; got %j", 500, TypeError)
export const HG_ERR_OPT_RANGE = createError<[string, unknown, string]>(
  'HG_ERR_OPT_RANGE', "Option '%s' is out of range: got %j, expected %s", 500, RangeError)
export const HG_ERR_OPT_UNKNOWN = createError<[string, string]>(
  'HG_ERR_OPT_UNKNOWN', "Unknown option '%s'%s", 500, TypeError)
export const HG_ERR_OPT_PRESET = createError<[unknown, string]>(
  'HG_ERR_OPT_PRESET', "Unknown upstream preset %j; known presets: %s (or pass { kind, idleTimeout, responseTimeout }, or 'none')", 500, RangeError)

/** Timeout plan rules (an explicit setting that would let a socket drop silently) */
export const HG_ERR_PLAN_KEEP_ALIVE_TOO_SHORT = createError<[number, string, number, number]>(
  'HG_ERR_PLAN_KEEP_ALIVE_TOO_SHORT',
  "keepAliveTimeout %d ms is too short: %s keeps idle connections for %d ms and may reuse one the server is closing (socket hang up / 502). Rule: behind a proxy that pools connections, keepAliveTimeout > the proxy's idle timeout + margin. Use %d ms or more", 500, RangeError)
export const HG_ERR_PLAN_KEEP_ALIVE_TOO_LONG = createError<[number, string, number, number]>(
  'HG_ERR_PLAN_KEEP_ALIVE_TOO_LONG',
  'keepAliveTimeout %d ms is too long: %s drops idle flows after %d ms without telling either side, so the client sends into a dead flow (ECONNRESET). Rule: behind a pass-through L4 balancer, keepAliveTimeout + Node\'s 1 s keep-alive buffer < the idle timeout - margin. Use %d ms or less', 500, RangeError)
export const HG_ERR_PLAN_SOCKET_TIMEOUT_TOO_SHORT = createError<[number, number, number]>(
  'HG_ERR_PLAN_SOCKET_TIMEOUT_TOO_SHORT',
  'timeout (socket inactivity) %d ms would destroy the socket of a handler still within its %d ms budget (socket hang up). Rule: timeout is 0 or >= handlerTimeout + margin. Use %d ms or more, or 0', 500, RangeError)
export const HG_ERR_PLAN_HEADERS_AFTER_REQUEST = createError<[number, number]>(
  'HG_ERR_PLAN_HEADERS_AFTER_REQUEST',
  'headersTimeout %d ms is longer than requestTimeout %d ms; Node refuses this (ERR_OUT_OF_RANGE) because the whole request cannot take less time than its headers. Rule: headersTimeout <= requestTimeout', 500, RangeError)
export const HG_ERR_PLAN_REQUEST_TIMEOUT_TOO_SHORT = createError<[number, number, number]>(
  'HG_ERR_PLAN_REQUEST_TIMEOUT_TOO_SHORT',
  'requestTimeout %d ms would let Node cut a request (raw 408 and destroy) whose %d ms handler budget still runs while its body arrives. Rule: requestTimeout is 0 or >= handlerTimeout + margin. Use %d ms or more, or 0', 500, RangeError)
export const HG_ERR_PLAN_HANDLER_TOO_LONG = createError<[number, string, number, number]>(
  'HG_ERR_PLAN_HANDLER_TOO_LONG',
  'handlerTimeout %d ms is too long: %s gives up on a response after %d ms and answers the client with its own error (502/504) while the handler still works. Rule: handlerTimeout <= the upstream response timeout - margin. Use %d ms or less', 500, RangeError)
export const HG_ERR_PLAN_CHECK_INTERVAL_TOO_COARSE = createError<[number, number, number]>(
  'HG_ERR_PLAN_CHECK_INTERVAL_TOO_COARSE',
  'connectionsCheckingInterval %d ms is too coarse for a %d ms headersTimeout/requestTimeout: Node checks those timeouts only every interval, so they could fire up to 50%% late. Rule: connectionsCheckingInterval <= half the smallest of headersTimeout and requestTimeout. Use %d ms or less', 500, RangeError)

/** Servers */
export const HG_ERR_NOT_A_SERVER = createError<[unknown]>(
  'HG_ERR_NOT_A_SERVER', 'Expected a node:http or node:https Server, got %s', 500, TypeError)
export const HG_ERR_HTTP2_UNSUPPORTED = createError(
  'HG_ERR_HTTP2_UNSUPPORTED', 'HTTP/2 servers are not supported yet: hangup-guard guards node:http and node:https (HTTP/1.1) servers', 500, TypeError)
export const HG_ERR_ALREADY_CONFIGURED = createError(
  'HG_ERR_ALREADY_CONFIGURED', 'This server is already guarded by hangup-guard; call close() on the first handle before configuring it again', 500)
export const HG_ERR_CLOSED = createError(
  'HG_ERR_CLOSED', 'This hangup-guard handle is closed', 500)

/** Answers sent by the guard */
export const HG_ERR_DEADLINE = createError<[number]>(
  'HG_ERR_DEADLINE', 'The handler did not answer within its %d ms budget', 504)
export const HG_ERR_SOCKET_TIMEOUT = createError<[number]>(
  'HG_ERR_SOCKET_TIMEOUT', 'The connection was inactive for %d ms with a request in flight', 504)
export const HG_ERR_REQUEST_BODY_TIMEOUT = createError<[number]>(
  'HG_ERR_REQUEST_BODY_TIMEOUT', 'The request body did not arrive within %d ms', 408)
export const HG_ERR_OVERLOADED = createError<[string]>(
  'HG_ERR_OVERLOADED', 'The server is under pressure (%s); retry later', 503)
export const HG_ERR_AT_CAPACITY = createError(
  'HG_ERR_AT_CAPACITY', 'The server is at capacity: requests wait longer than its queueing target before a handler runs; retry later', 503)
export const HG_ERR_STALLED = createError<[number]>(
  'HG_ERR_STALLED', 'The request waited behind a %d ms event-loop stall, longer than its budget; retry', 503)
export const HG_ERR_CLIENT_GONE = createError<[number]>(
  'HG_ERR_CLIENT_GONE', 'The client closed the connection %d ms after the request was admitted, before its answer', 499)
export const HG_ERR_DRAINING = createError(
  'HG_ERR_DRAINING', 'The server is shutting down; retry on another instance', 503)

/** Drain */
export const HG_ERR_SHUTDOWN = createError<[number]>(
  'HG_ERR_SHUTDOWN', 'The server shut down: its drain deadline (%d ms) passed before the handler answered', 503)

/** Fastify */
export const HG_ERR_FASTIFY_OPTION_CONFLICT = createError<[string, unknown, string, string]>(
  'HG_ERR_FASTIFY_OPTION_CONFLICT', "Fastify option '%s' (%j) contradicts the hangup-guard plan: %s. %s", 500, RangeError)
export const HG_ERR_FASTIFY_ROUTE_CONFIG = createError<[string, string, string, unknown]>(
  'HG_ERR_FASTIFY_ROUTE_CONFIG', "Route '%s': %s must be %s, got %j", 500, TypeError)
export const HG_ERR_FASTIFY_ROUTE_BUDGET = createError<[string, string, number, string]>(
  'HG_ERR_FASTIFY_ROUTE_BUDGET', "Route '%s': %s %d ms is too long: %s", 500, RangeError)
export const HG_ERR_FASTIFY_UNDER_PRESSURE_REGISTERED = createError(
  'HG_ERR_FASTIFY_UNDER_PRESSURE_REGISTERED',
  "Option 'underPressure' asks hangup-guard to register @fastify/under-pressure, but it is already registered on this instance and a second registration would sample twice. Set the thresholds on your own registration and drop 'underPressure' (hangup-guard still answers its 503s with a coded body), or remove your registration", 500, TypeError)
