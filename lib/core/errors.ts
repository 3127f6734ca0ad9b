/**
 * The error catalogue: the only place where hangup-guard creates error codes.
 *
 * Every code is stable. A retired code is listed below and MUST NOT be reused.
 * Retired codes:
 * - HG_ERR_PLAN_REQUEST_TIMEOUT_TOO_SHORT (rule R5, "requestTimeout >= handlerTimeout + margin"):
 *   retired in 0.2.0; Node's requestTimeout bounds only the receipt of a request, so the rule
 *   refused coherent plans. MUST NOT be reused.
 *
 * Option mistakes are TypeError (wrong type) or RangeError (value out of range or breaking a
 * rule between timeouts). Errors that are sent as HTTP answers carry their status code.
 */
import { inspect } from 'node:util'

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
    const err = new Base(formatMessage(message, args)) as HangupGuardError & { code: string, statusCode: number }
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

/**
 * printf-style %s, %d, %j, %% that never throws, whatever the value (a BigInt, a Symbol, NaN, an
 * object whose toJSON throws, a revoked Proxy): an error about a bad value must show the value.
 */
function formatMessage (template: string, args: readonly unknown[]): string {
  let i = 0
  return template.replace(/%[sdj%]/g, (spec) => {
    if (spec === '%%') return '%'
    if (i >= args.length) return spec
    const value = args[i++]
    if (spec === '%j') return show(value)
    if (spec === '%d') return typeof value === 'number' ? String(value) : show(value)
    return typeof value === 'string' ? value : show(value)
  })
}

const MAX_SHOWN = 120

/** A value as an error message shows it: strings quoted, cut at 120 characters. */
export function show (value: unknown): string {
  let text: string
  try {
    if (typeof value === 'string') text = JSON.stringify(value)
    else if (typeof value === 'bigint') text = `${value}n`
    else if (typeof value === 'symbol' || typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) text = String(value)
    else if (typeof value === 'function') text = `[function ${value.name || 'anonymous'}]`
    else text = inspect(value, { depth: 1, breakLength: Infinity, maxStringLength: MAX_SHOWN, maxArrayLength: 5, customInspect: false })
  } catch {
    text = '[a value that cannot be shown]'
  }
  return text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN - 1) + '…' : text
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
export const HG_ERR_OPT_INVALID = createError(
  'HG_ERR_OPT_INVALID', 'The options could not be read (see the cause)', 500, TypeError)
export const HG_ERR_OPT_PRESET = createError<[unknown, string]>(
  'HG_ERR_OPT_PRESET', "Unknown upstream preset %j%s (or pass { kind, idleTimeout, responseTimeout }, or 'none')", 500, RangeError)

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
export const HG_ERR_PLAN_HANDLER_TOO_LONG = createError<[number, string, number, number]>(
  'HG_ERR_PLAN_HANDLER_TOO_LONG',
  'handlerTimeout %d ms is too long: %s gives up on a response after %d ms and answers the client with its own error (502/504) while the handler still works. Rule: handlerTimeout <= the upstream response timeout - margin. Use %d ms or less', 500, RangeError)
export const HG_ERR_PLAN_CHECK_INTERVAL_TOO_COARSE = createError<[number, number, number]>(
  'HG_ERR_PLAN_CHECK_INTERVAL_TOO_COARSE',
  'connectionsCheckingInterval %d ms is too coarse for a %d ms headersTimeout/requestTimeout: Node checks those timeouts only every interval, so they could fire up to 50%% late. Rule: connectionsCheckingInterval <= half the smallest of headersTimeout and requestTimeout. Use %d ms or less', 500, RangeError)

/** Servers */
export const HG_ERR_NOT_A_SERVER = createError<[unknown]>(
  'HG_ERR_NOT_A_SERVER', 'Expected a node:http or node:https Server, got %s', 500, TypeError)
// %s: what to do, in the words of the door (the node:http handle, or the Fastify plugin).
export const HG_ERR_HTTP2_UNSUPPORTED = createError(
  'HG_ERR_HTTP2_UNSUPPORTED', 'HTTP/2 servers are not supported yet: hangup-guard guards node:http and node:https (HTTP/1.1) servers', 500, TypeError)
export const HG_ERR_ALREADY_CONFIGURED = createError<[string]>(
  'HG_ERR_ALREADY_CONFIGURED', 'This server is already guarded by hangup-guard; %s', 500)
export const HG_ERR_CLOSED = createError(
  'HG_ERR_CLOSED', 'This hangup-guard handle is closed', 500)

/** Answers sent by the guard */
export const HG_ERR_DEADLINE = createError<[number]>(
  'HG_ERR_DEADLINE', 'The handler did not answer within its %d ms budget', 504)
export const HG_ERR_SOCKET_TIMEOUT = createError<[number]>(
  'HG_ERR_SOCKET_TIMEOUT', 'The connection was inactive for %d ms with a request in flight', 504)
export const HG_ERR_REQUEST_BODY_TIMEOUT = createError<[number]>(
  'HG_ERR_REQUEST_BODY_TIMEOUT', 'The request body did not arrive within %d ms', 408)
export const HG_ERR_REQUEST_HEADERS_TIMEOUT = createError<[number]>(
  'HG_ERR_REQUEST_HEADERS_TIMEOUT', 'The request headers did not arrive within %d ms', 408)
// The public answer names no reason: a failing check's text (a health check's error) is for
// operators, and goes to incidents (`detail`) only.
export const HG_ERR_OVERLOADED = createError<[]>(
  'HG_ERR_OVERLOADED', 'The server is overloaded; retry later', 503)
export const HG_ERR_AT_CAPACITY = createError(
  'HG_ERR_AT_CAPACITY', 'The server is at capacity: requests wait longer than its queueing target before a handler runs; retry later', 503)
export const HG_ERR_STALLED = createError<[number]>(
  'HG_ERR_STALLED', 'The request waited behind a %d ms event-loop stall, longer than its budget; retry', 503)
export const HG_ERR_CLIENT_GONE = createError<[number]>(
  'HG_ERR_CLIENT_GONE', 'The client closed the connection %d ms after the request was admitted, before its answer', 499)
export const HG_ERR_DRAINING = createError(
  'HG_ERR_DRAINING', 'The server is shutting down; retry on another instance', 503)

export const HG_ERR_HANDLER_FAILED = createError(
  'HG_ERR_HANDLER_FAILED', 'The request handler failed before it answered', 500)

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
export const HG_ERR_FASTIFY_HEALTH_PATH_TAKEN = createError<[string, string]>(
  'HG_ERR_FASTIFY_HEALTH_PATH_TAKEN', "Route '%s' takes the health path %s, which hangup-guard answers before routing (the route would never be called). Set another path in the 'health' option, or 'health: false'", 500, TypeError)
export const HG_ERR_FASTIFY_UNDER_PRESSURE_REGISTERED = createError(
  'HG_ERR_FASTIFY_UNDER_PRESSURE_REGISTERED',
  "Option 'underPressure' asks hangup-guard to register @fastify/under-pressure, but it is already registered on this instance and a second registration would sample twice. Set the thresholds on your own registration and drop 'underPressure' (hangup-guard still answers its 503s with a coded body), or remove your registration", 500, TypeError)

/** Command line (hangup-guard plan | probe) */
export const HG_ERR_CLI_USAGE = createError<[string, string]>(
  'HG_ERR_CLI_USAGE', "%s; see '%s --help'", 500, TypeError)
export const HG_ERR_CLI_URL = createError<[unknown, string]>(
  'HG_ERR_CLI_URL', 'probe needs an http:// or https:// URL, got %j: %s', 500, TypeError)
export const HG_ERR_PROBE_CONNECT = createError<[string, string]>(
  'HG_ERR_PROBE_CONNECT', 'Could not measure %s: %s', 500)
