/**
 * Health documents in the application/health+json shape (draft-inadarei-api-health-check):
 * `status` pass | warn | fail, `checks` keyed "component:measurement", plus our own fields.
 * Readiness says "send me traffic" (fails under pressure and while draining); liveness says "do
 * not restart me" and fails only on a sustained stall, never because the server is busy.
 */
import type { ContainerLimits } from './cgroup'
import type { Pressure, PressureCheck } from './pressure'
import type { Sampler, Stall } from './sampler'
import type { Watchdog } from './watchdog'

export const HEALTH_CONTENT_TYPE = 'application/health+json'
/** A check past this share of its limit is 'warn' (200: still serving, look closer). */
export const WARN_RATIO = 0.8
/**
 * Liveness fails when the probe waited behind a stall of at least this (ms): a loop stuck for 5 s
 * is either deadlocked on something synchronous or thrashing in GC; a restart is the cure.
 */
export const LIVENESS_STALL_MS = 5000
/** ...or when stalls took at least LIVENESS_STALLED_RATIO of the last LIVENESS_WINDOW_MS (60 s): recurring stalls each under 5 s. */
export const LIVENESS_WINDOW_MS = 60_000
export const LIVENESS_STALLED_RATIO = 0.5

export type HealthKind = 'liveness' | 'readiness'
export type HealthStatus = 'pass' | 'warn' | 'fail'

export interface HealthCheckResult {
  observedValue: number | string | boolean | null
  observedUnit?: string
  status: HealthStatus
  /** ISO 8601 time of the reading. */
  time: string
  output?: string
  /** Our own: the threshold and where it came from. */
  limit?: number
  limitSource?: string
}

export interface HealthDocument {
  status: HealthStatus
  description: string
  output?: string
  checks: Record<string, HealthCheckResult[]>
  /** Our own: the cgroup limits the figures depend on. */
  container?: object
  plan?: unknown
  stats?: object
}

export interface HealthSources {
  pressure: Pressure
  sampler: Sampler
  /** @default sampler.limits */
  limits?: ContainerLimits
  /** The off-thread watchdog, when enabled: it sees a stall while the main thread cannot. */
  watchdog?: Watchdog | null
  /** The timeouts in force (JSON-able), shown in readiness. */
  plan?: unknown
  stats?: () => object
  /** A reason while the server drains (readiness fails), else null. */
  draining?: () => string | null
  /** Liveness stall threshold (ms). @default LIVENESS_STALL_MS (5000 ms) */
  livenessStallMs?: number
}

export interface HealthAnswer {
  statusCode: 200 | 503
  contentType: typeof HEALTH_CONTENT_TYPE
  body: HealthDocument
}

const RANK: Record<HealthStatus, number> = { pass: 0, warn: 1, fail: 2 }

/** Builds a liveness or readiness answer; 503 only for 'fail' ('warn' still serves). */
export function buildHealth (kind: HealthKind, sources: HealthSources): HealthAnswer {
  const checks = kind === 'liveness' ? livenessChecks(sources) : readinessChecks(sources)
  let status: HealthStatus = 'pass'
  const outputs: string[] = []
  for (const results of Object.values(checks)) {
    for (const r of results) {
      if (RANK[r.status] > RANK[status]) status = r.status
      if (r.status === 'fail' && r.output !== undefined) outputs.push(r.output)
    }
  }
  const body: HealthDocument = { status, description: `hangup-guard ${kind}`, checks }
  if (outputs.length > 0) body.output = outputs.join('; ')
  if (kind === 'readiness') {
    const limits = sources.limits ?? sources.sampler.limits
    body.container = {
      cgroup: limits.version,
      cpuLimitCores: limits.cpu.limitCores,
      cpuLimitSource: limits.cpu.reason ?? limits.cpu.source,
      memoryLimitBytes: limits.memory.limitBytes,
      memoryLimitSource: limits.memory.reason ?? limits.memory.source
    }
    if (sources.plan !== undefined) body.plan = sources.plan
    if (sources.stats !== undefined) body.stats = sources.stats()
  }
  return { statusCode: status === 'fail' ? 503 : 200, contentType: HEALTH_CONTENT_TYPE, body }
}

/**
 * What anyone who can reach a health path may read: the status and each check's name with its
 * status. Figures, limits, failure texts (a health check's error), the plan, counters and cgroup
 * paths stay in the whole document (`health.details`, or the handle's health()).
 */
export function publicHealth (body: HealthDocument): PublicHealthDocument {
  const checks: Record<string, Array<{ status: HealthStatus }>> = {}
  for (const [name, results] of Object.entries(body.checks)) {
    checks[name] = results.map((r) => ({ status: r.status }))
  }
  return { status: body.status, description: body.description, checks }
}

/** What a health endpoint shows without `health.details`. */
export interface PublicHealthDocument {
  status: HealthStatus
  description: string
  checks: Record<string, Array<{ status: HealthStatus }>>
}

/** The JSON text of a health document, readable (2-space indent). */
export function serializeHealth (body: HealthDocument | PublicHealthDocument): string {
  return JSON.stringify(body, null, 2) + '\n'
}

function readinessChecks (sources: HealthSources): Record<string, HealthCheckResult[]> {
  const checks: Record<string, HealthCheckResult[]> = {}
  const now = new Date().toISOString()
  for (const c of sources.pressure.checks) checks[c.name] = [fromPressure(c, now)]
  const draining = sources.draining?.() ?? null
  checks['server:draining'] = [draining === null
    ? { observedValue: false, status: 'pass', time: now }
    : { observedValue: true, status: 'fail', time: now, output: draining }]
  return checks
}

function fromPressure (c: PressureCheck, now: string): HealthCheckResult {
  const result: HealthCheckResult = {
    observedValue: c.unit === 'boolean' && c.observed !== null ? c.observed === 1 : c.observed,
    observedUnit: c.unit,
    status: 'pass',
    time: c.observedAt === 0 ? now : new Date(c.observedAt).toISOString()
  }
  if (c.unit !== 'boolean') {
    result.limit = c.limit
    result.limitSource = c.limitSource
  }
  if (c.failing) {
    result.status = 'fail'
    result.output = c.reason ?? undefined
  } else if (c.observedAt === 0) {
    result.status = 'warn'
    result.output = 'no reading yet'
  } else if (c.observed !== null && c.unit !== 'boolean' && !(c.observed <= c.limit * WARN_RATIO)) {
    result.status = 'warn'
    result.output = `above ${WARN_RATIO * 100}% of the limit`
  }
  return result
}

function livenessChecks (sources: HealthSources): Record<string, HealthCheckResult[]> {
  const time = new Date().toISOString()
  const limitMs = sources.livenessStallMs ?? LIVENESS_STALL_MS
  const now = performance.now()
  const watchdog = sources.watchdog ?? null
  // The stall this probe may have waited behind: still unrecorded, just ended, or (from the
  // worker) still flagged because the heartbeat has not resumed yet.
  const stallMs = Math.max(sources.sampler.backlogStallMs(now), watchdog === null ? 0 : watchdog.stalledForMs())
  const stall: HealthCheckResult = { observedValue: Math.round(stallMs), observedUnit: 'ms', status: 'pass', time, limit: limitMs }
  if (stallMs >= limitMs) {
    stall.status = 'fail'
    stall.output = `the event loop was stalled ${Math.round(stallMs)} ms (>= ${limitMs} ms)`
  } else if (stallMs > 0) {
    stall.status = 'warn'
    stall.output = `answered after a ${Math.round(stallMs)} ms stall`
  }
  const ratio = stalledRatio(sources.sampler.stalls, now)
  const recent: HealthCheckResult = { observedValue: Math.round(ratio * 1000) / 1000, observedUnit: 'ratio', status: 'pass', time, limit: LIVENESS_STALLED_RATIO }
  if (ratio >= LIVENESS_STALLED_RATIO) {
    recent.status = 'fail'
    recent.output = `stalled ${Math.round(ratio * 100)}% of the last ${LIVENESS_WINDOW_MS / 1000} s`
  } else if (ratio >= LIVENESS_STALLED_RATIO * WARN_RATIO) {
    recent.status = 'warn'
  }
  const checks: Record<string, HealthCheckResult[]> = { 'eventLoop:stall': [stall], 'eventLoop:stalledRatio': [recent] }
  if (watchdog !== null && !watchdog.running) {
    checks['eventLoop:watchdog'] = [{ observedValue: false, status: 'warn', time, output: `watchdog not running${watchdog.error === null ? '' : `: ${watchdog.error.message}`}` }]
  }
  return checks
}

/** Share of the last LIVENESS_WINDOW_MS spent in recorded stalls (clipped to the window). */
function stalledRatio (stalls: readonly Stall[], now: number): number {
  const from = now - LIVENESS_WINDOW_MS
  let stalledMs = 0
  for (const s of stalls) if (s.endedAt > from) stalledMs += s.endedAt - Math.max(s.startedAt, from)
  return stalledMs / LIVENESS_WINDOW_MS
}
