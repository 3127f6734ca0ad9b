/**
 * The one way in for options: `resolveConfig()` reads what the user passed once (each key once, so
 * a getter runs once and a Proxy is asked once), refuses unknown keys at every level with a
 * did-you-mean, checks every value, and returns one frozen configuration. Both doors call it
 * before they acquire anything (sampler, watchdog thread, health-check runs, listeners), so a
 * refused call leaves nothing behind. Every error it throws carries a string `code`.
 */
import type { PlanOptions, TimeoutPlan } from './plan'
import { planTimeouts } from './plan'
import { type GuardOptions, type ResolvedGuardOptions, resolveGuardOptions } from './options'
import { checkPressureOptions, type PressureOptions } from './pressure'
import { checkWatchdogOptions, type WatchdogOptions } from './watchdog'
import { readHandleSignals } from './signals'
import { HG_ERR_OPT_TYPE, HG_ERR_OPT_UNKNOWN, HG_ERR_OPT_INVALID } from './errors'
import { hint } from './suggest'

export interface ResolvedConfig {
  readonly plan: TimeoutPlan
  readonly guard: ResolvedGuardOptions
  /** The pressure thresholds as given (checked), or false: no shedding. */
  readonly pressure: Readonly<PressureOptions> | false
  /** The watchdog options as given (checked), or false: no worker thread. */
  readonly watchdog: Readonly<WatchdogOptions> | false
  readonly handleSignals: boolean
  /** The door's own keys (checked by the door), read once like the rest. */
  readonly door: Readonly<Record<string, unknown>>
}

const PLAN_KEYS = ['upstream', 'handlerTimeout', 'margin', 'timeout', 'keepAliveTimeout', 'headersTimeout', 'requestTimeout', 'connectionsCheckingInterval']
const GUARD_KEYS = ['timeoutStatus', 'exclude', 'deadlineHeader', 'deadlineMargin', 'retryAfter', 'onIncident', 'incidentQuery', 'catchRejections', 'health', 'drain', 'handleSignals', 'pressure', 'watchdog']

/** Known keys of the nested option objects. */
export const NESTED_KEYS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  upstream: ['name', 'kind', 'idleTimeout', 'responseTimeout', 'deadlineHeader'],
  health: ['livenessPath', 'readinessPath', 'details'],
  drain: ['delay', 'timeout'],
  pressure: ['queueTarget', 'queueInterval', 'maxEventLoopDelay', 'maxEventLoopUtilization', 'maxHeapUsedBytes', 'maxRssBytes', 'maxThrottledRatio', 'healthCheck', 'healthCheckInterval'],
  watchdog: ['logAfter', 'onStall']
})

/**
 * A plain, own copy of an options object: each own enumerable string key read once. Symbols,
 * inherited keys and `__proto__` as a key are not options. A throwing getter or Proxy trap is
 * refused with a coded error naming the key.
 */
export function snapshot (value: unknown, name: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || isArray(value, name)) throw new HG_ERR_OPT_TYPE(name, value, 'an object')
  let keys: string[]
  try {
    keys = Object.keys(value)
  } catch (cause) {
    throw unreadable(name, cause)
  }
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>
  for (const key of keys) {
    if (key === '__proto__') throw new HG_ERR_OPT_UNKNOWN(name === 'options' ? key : `${name}.${key}`, '; __proto__ is not an option')
    const path = name === 'options' ? key : `${name}.${key}`
    try {
      out[key] = (value as Record<string, unknown>)[key]
    } catch (cause) {
      throw unreadable(path, cause)
    }
    if (typeof out[key] === 'object' && out[key] !== null) isArray(out[key], path) // a revoked Proxy is refused here, by name
  }
  return out
}

/** Array.isArray, which throws on a revoked Proxy: then a coded error naming the option. */
function isArray (value: unknown, name: string): boolean {
  try {
    return Array.isArray(value)
  } catch (cause) {
    throw unreadable(name, cause)
  }
}

function unreadable (name: string, cause: unknown): Error {
  const err = new HG_ERR_OPT_TYPE(name, '[a value whose read threw]', 'a plain value (reading it threw)')
  ;(err as Error).cause = cause
  return err
}

function checkKeys (object: Record<string, unknown>, known: readonly string[], prefix: string): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) throw new HG_ERR_OPT_UNKNOWN(prefix + key, hint(key, known, 'options'))
  }
}

/** Reads a nested option: an object is copied and its keys checked; anything else is left to the option's own check. */
function nested (options: Record<string, unknown>, key: string): void {
  const value = options[key]
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof RegExp) return
  if (key === 'pressure' || key === 'watchdog' || key === 'health' || key === 'drain' || key === 'upstream') {
    const copy = snapshot(value, key)
    checkKeys(copy, NESTED_KEYS[key]!, `${key}.`)
    options[key] = copy
  }
}

/**
 * Resolves every option of both doors. `doorKeys`: the keys the calling door reads itself (they
 * are read once too, and returned in `door` for the door to check).
 */
export function resolveConfig (options: unknown, doorKeys: readonly string[] = []): ResolvedConfig {
  try {
    const o = snapshot(options ?? {}, 'options')
    checkKeys(o, [...GUARD_KEYS, ...PLAN_KEYS, ...doorKeys], '')
    for (const key of Object.keys(NESTED_KEYS)) nested(o, key)
    const plan = planTimeouts(o as PlanOptions)
    const guard = resolveGuardOptions(o as GuardOptions & PlanOptions, plan)
    const pressure = o.pressure === false ? false : checkPressureOptions((o.pressure ?? {}) as PressureOptions)
    const watchdog = o.watchdog === false ? false : checkWatchdogOptions((o.watchdog ?? {}) as WatchdogOptions)
    const handleSignals = readHandleSignals(o.handleSignals)
    const door: Record<string, unknown> = {}
    for (const key of doorKeys) if (key in o) door[key] = o[key]
    return Object.freeze({ plan, guard, pressure, watchdog, handleSignals, door: Object.freeze(door) })
  } catch (err) {
    // Every refusal is coded; anything else is a bug in a check, reported with its cause.
    if (typeof (err as { code?: unknown } | null)?.code === 'string' && String((err as { code: string }).code).startsWith('HG_ERR_')) throw err
    const wrapped = new HG_ERR_OPT_INVALID()
    ;(wrapped as Error).cause = err
    throw wrapped
  }
}
