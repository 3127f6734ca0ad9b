/**
 * Options of the request guard (the plan's own options are in plan.ts), read once into a frozen
 * object with defaults, so the hot path only tests fields.
 */
import type { IncomingMessage } from 'node:http'
import { type Duration, toMs } from './duration'
import { HG_ERR_OPT_TYPE, HG_ERR_OPT_RANGE } from './errors'
import { type PlanOptions, type TimeoutPlan } from './plan'
import type { Incident } from './stats'

/** Paths (exact, or a prefix ending in '*'), regular expressions, or a predicate. */
export type ExcludeOption = ReadonlyArray<string | RegExp> | ((req: IncomingMessage) => boolean)

export interface HealthOptions {
  /** Liveness path. @default '/livez' */
  livenessPath?: string
  /** Readiness path. @default '/readyz' */
  readinessPath?: string
  /**
   * What the health endpoints show. false: the status and each check's name with its status, no
   * figures, limits, plan, counters or failure texts (anyone the balancer forwards to the path can
   * read it). true: the whole document; turn it on only where the path is not public (an internal
   * port), or serve `guard.health()` (always the whole document) on an admin server yourself.
   * @default false
   */
  details?: boolean
}

export interface DrainOptions {
  /** How long new requests are still served (with `Connection: close`) after the drain starts, for the load balancer to notice. @default '5s' */
  delay?: Duration
  /** Hard deadline, counted from the start of the drain, `delay` included. @default '30s' */
  timeout?: Duration
}

export interface GuardOptions {
  /** Status of the deadline answer. @default 504 */
  timeoutStatus?: 504 | 503
  /** Requests that get no deadline (streaming routes). Upgrade requests are never touched. */
  exclude?: ExcludeOption
  /** Header carrying the client's remaining time in ms; false to ignore. @default the preset's (Envoy: 'x-envoy-expected-rq-timeout-ms'), else false */
  deadlineHeader?: string | false
  /** Taken off an upstream deadline header's value, so the 504 arrives before the upstream gives up. @default '100ms' */
  deadlineMargin?: Duration
  /** Seconds in the `Retry-After` header of 503 answers. @default 5 */
  retryAfter?: number
  /** Called with every incident (also published on the `hangup-guard:incident` diagnostics channel). */
  onIncident?: (incident: Incident) => void
  /**
   * Incidents carry the request's query string in `url` (capped at 2048 characters). Off, `url`
   * is the path alone, at most 256 characters: queries carry reset tokens and OAuth codes.
   * @default false
   */
  incidentQuery?: boolean
  /**
   * node:http door: catch the rejection of an async request listener. A rejection with the
   * guard's own abort reason (after its 504, or when the client left) is only counted; any other
   * gets a coded 500 (HG_ERR_HANDLER_FAILED) while no byte of the response is out, the response is
   * destroyed (counted as cut) when it had started, and only counted when it was done. The error
   * goes to incidents (`error`), or to a process warning when nobody reads incidents. false: Node's
   * own behaviour (an unhandled rejection, which ends the process by default). The Fastify door
   * leaves errors to Fastify.
   * @default true
   */
  catchRejections?: boolean
  /** Health endpoints; false turns them off. @default { livenessPath: '/livez', readinessPath: '/readyz' } */
  health?: HealthOptions | false
  /** Graceful drain phases. */
  drain?: DrainOptions
  /** Drain on SIGTERM/SIGINT (a second signal forces); installed with process.once, removed by close(); never calls process.exit. @default false */
  handleSignals?: boolean
}

export interface ResolvedGuardOptions {
  readonly timeoutStatus: 504 | 503
  readonly exclude: ((req: IncomingMessage) => boolean) | null
  readonly deadlineHeader: string | null
  readonly deadlineMargin: number
  readonly retryAfter: number
  readonly onIncident: ((incident: Incident) => void) | null
  readonly incidentQuery: boolean
  readonly catchRejections: boolean
  readonly healthDetails: boolean
  readonly livenessPath: string | null
  readonly readinessPath: string | null
  readonly drainDelay: number
  readonly drainTimeout: number
}

export const DEFAULT_DEADLINE_MARGIN_MS = 100
export const DEFAULT_RETRY_AFTER_S = 5
export const DEFAULT_DRAIN_DELAY_MS = 5_000 // 5 seconds: endpoint removal usually propagates within it
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000 // 30 seconds: Kubernetes' default terminationGracePeriodSeconds

function compileExclude (exclude: ExcludeOption | undefined): ((req: IncomingMessage) => boolean) | null {
  if (exclude === undefined) return null
  if (typeof exclude === 'function') return exclude
  if (!Array.isArray(exclude)) throw new HG_ERR_OPT_TYPE('exclude', exclude, 'an array of paths / RegExps, or a function (req) => boolean')
  const exact = new Set<string>()
  const prefixes: string[] = []
  const patterns: RegExp[] = []
  for (const item of exclude) {
    if (item instanceof RegExp) patterns.push(item)
    else if (typeof item === 'string' && item.startsWith('/')) {
      if (item.endsWith('*')) prefixes.push(item.slice(0, -1))
      else exact.add(item)
    } else throw new HG_ERR_OPT_TYPE('exclude[]', item, "a path starting with '/' (a trailing '*' matches a prefix) or a RegExp")
  }
  return function isExcluded (req: IncomingMessage): boolean {
    const path = normalizePath(req.url ?? '/')
    if (exact.has(path)) return true
    for (const p of prefixes) if (path.startsWith(p)) return true
    for (const re of patterns) if (re.test(path)) return true
    return false
  }
}

const UNRESERVED = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g

function decodeUnreserved (hex: string): string {
  return String.fromCharCode(parseInt(hex.slice(1), 16))
}

/**
 * The path of a request target as routers that normalise it see it (RFC 3986 section 6.2.2):
 * percent-encoded unreserved characters decoded, then dot segments removed (section 5.2.4), so that
 * `/sse/../api` and `/sse/%2e%2e/api` match what they are served as (`/api`), not their prefix.
 * The common path (no '%', no '.') costs two scans.
 */
export function normalizePath (url: string): string {
  const q = url.indexOf('?')
  let path = q === -1 ? url : url.slice(0, q)
  if (path.includes('%')) path = path.replace(UNRESERVED, decodeUnreserved)
  if (!path.includes('.')) return path
  const out: string[] = []
  const segments = path.split('/')
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!
    if (seg === '..') {
      if (out.length > 1) out.pop()
      if (i === segments.length - 1) out.push('')
    } else if (seg === '.') {
      if (i === segments.length - 1) out.push('')
    } else out.push(seg)
  }
  const joined = out.join('/')
  return joined.startsWith('/') ? joined : '/' + joined
}

function pathOption (name: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback
  if (typeof value !== 'string' || !value.startsWith('/') || value.includes('?')) throw new HG_ERR_OPT_TYPE(name, value, "a path starting with '/' and without a query")
  return value
}

export function resolveGuardOptions (options: GuardOptions & PlanOptions, plan: TimeoutPlan): ResolvedGuardOptions {
  const timeoutStatus = options.timeoutStatus ?? 504
  if (timeoutStatus !== 504 && timeoutStatus !== 503) throw new HG_ERR_OPT_RANGE('timeoutStatus', timeoutStatus, '504 or 503')

  let deadlineHeader: string | null = plan.upstream.deadlineHeader
  if (options.deadlineHeader === false) deadlineHeader = null
  else if (options.deadlineHeader !== undefined) {
    if (typeof options.deadlineHeader !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(options.deadlineHeader)) {
      throw new HG_ERR_OPT_TYPE('deadlineHeader', options.deadlineHeader, 'a header name, or false')
    }
    deadlineHeader = options.deadlineHeader.toLowerCase()
  }
  const deadlineMargin = options.deadlineMargin === undefined ? DEFAULT_DEADLINE_MARGIN_MS : toMs('deadlineMargin', options.deadlineMargin)

  const retryAfter = options.retryAfter ?? DEFAULT_RETRY_AFTER_S
  if (typeof retryAfter !== 'number' || !Number.isInteger(retryAfter) || retryAfter < 0) {
    throw new HG_ERR_OPT_RANGE('retryAfter', retryAfter, 'a whole number of seconds >= 0')
  }
  if (options.onIncident !== undefined && typeof options.onIncident !== 'function') throw new HG_ERR_OPT_TYPE('onIncident', options.onIncident, 'a function')
  const incidentQuery = booleanOption('incidentQuery', options.incidentQuery, false)
  const catchRejections = booleanOption('catchRejections', options.catchRejections, true)
  let healthDetails = false

  let livenessPath: string | null = null
  let readinessPath: string | null = null
  if (options.health !== false) {
    const h = options.health ?? {}
    if (h === null || typeof h !== 'object') throw new HG_ERR_OPT_TYPE('health', h, '{ livenessPath, readinessPath } or false')
    healthDetails = booleanOption('health.details', h.details, false)
    livenessPath = pathOption('health.livenessPath', h.livenessPath, '/livez')
    readinessPath = pathOption('health.readinessPath', h.readinessPath, '/readyz')
    if (livenessPath === readinessPath) throw new HG_ERR_OPT_RANGE('health.readinessPath', readinessPath, 'a path other than health.livenessPath')
  }

  const drain = options.drain ?? {}
  if (drain === null || typeof drain !== 'object') throw new HG_ERR_OPT_TYPE('drain', drain, '{ delay, timeout }')
  const { drainDelay, drainTimeout } = resolveDrainTimes(drain, DEFAULT_DRAIN_DELAY_MS, DEFAULT_DRAIN_TIMEOUT_MS, 'drain.')

  return Object.freeze({
    timeoutStatus,
    exclude: compileExclude(options.exclude),
    deadlineHeader,
    deadlineMargin,
    retryAfter,
    onIncident: options.onIncident ?? null,
    incidentQuery,
    catchRejections,
    healthDetails,
    livenessPath,
    readinessPath,
    drainDelay,
    drainTimeout
  })
}

function booleanOption (name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new HG_ERR_OPT_TYPE(name, value, 'a boolean')
  return value
}

/** Reads `{ delay, timeout }` over defaults; the hard deadline must leave room for the delay. */
export function resolveDrainTimes (drain: DrainOptions, delayDefault: number, timeoutDefault: number, prefix: string): { drainDelay: number, drainTimeout: number } {
  const drainDelay = drain.delay === undefined ? delayDefault : toMs(`${prefix}delay`, drain.delay)
  const drainTimeout = drain.timeout === undefined ? Math.max(timeoutDefault, drainDelay) : toMs(`${prefix}timeout`, drain.timeout)
  if (drainTimeout < drainDelay) throw new HG_ERR_OPT_RANGE(`${prefix}timeout`, drain.timeout, `>= ${prefix}delay (${drainDelay} ms): the hard deadline counts from the start of the drain, delay included`)
  return { drainDelay, drainTimeout }
}
