/**
 * `hangup-guard/prometheus`: Prometheus metrics through prom-client (15.x, an optional peer
 * dependency: nothing here loads unless this entry is imported).
 *
 * Counters come from incidents (the `hangup-guard:incident` diagnostics channel, so every guarded
 * server of the process counts, whichever door); gauges are read at scrape time, from `stats()` of
 * the guards given and from the process-wide sampler. Names carry the prefix and their unit;
 * labels are bounded (cause, status, phase; `route` only on request, capped).
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import { Counter, Gauge, register as defaultRegistry, type Registry } from 'prom-client'
import { INCIDENT_CHANNEL, type Incident, type StatsSnapshot } from '../core/stats'
import { acquireSampler, type Sampler } from '../core/sampler'
import { HG_ERR_OPT_TYPE, HG_ERR_OPT_RANGE } from '../core/errors'
import type { DrainPhaseName } from '../core/drain-state'

/** What the gauges read: a node:http handle (configureServerTimeouts) or app.hangupGuard. */
export interface StatsSource {
  stats (): StatsSnapshot
}

export interface PrometheusOptions {
  /** Registry to register in. @default prom-client's global `register` */
  registry?: Registry
  /** Prefix of every metric name. @default 'hangup_guard_' */
  prefix?: string
  /**
   * Add a `route` label to the incident counters: Fastify's route pattern, or the path on
   * node:http (then mind the cardinality; `maxRoutes` caps it). @default false
   */
  routeLabel?: boolean
  /** Distinct `route` values kept; later ones are counted as `route="other"`. @default 100 */
  maxRoutes?: number
}

export interface PrometheusMetrics {
  readonly registry: Registry
  /** The metric names registered. */
  readonly names: readonly string[]
  /** Unsubscribes, releases the sampler and removes the metrics from the registry. */
  close (): void
}

/** The drain phases, as the values of `hangup_guard_drain_phase{phase}` (one is 1, the others 0). */
export const DRAIN_PHASES: readonly DrainPhaseName[] = ['serving', 'grace', 'closing', 'closed']
export const OTHER_ROUTE = 'other'

/** What gauges read at scrape time; one object per scrape. */
interface Reading { stats: StatsSnapshot[], sampler: Sampler }

/**
 * Gauges, one line each: name (after the prefix), help, how to read the value (null: no reading
 * yet, exported as NaN) and, optionally, whether it applies to this process at all.
 */
const GAUGES: ReadonlyArray<readonly [string, string, (r: Reading) => number | null, ((s: Sampler) => boolean)?]> = [
  ['in_flight_requests', 'Requests admitted and not yet answered.', (r) => r.stats.reduce((n, s) => n + s.inFlight, 0)],
  ['event_loop_delay_p99_seconds', 'Event-loop delay, 99th percentile over the last sample window (1 s).', (r) => finiteOrNull(r.sampler.sample.eventLoopDelayP99Ms / 1000)],
  ['event_loop_utilization_ratio', 'Share of the last sample window the event loop was busy (0..1).', (r) => finiteOrNull(r.sampler.sample.eventLoopUtilization)],
  ['queueing_delay_seconds', 'Estimated queueing delay of the last request admitted or shed (the overload controller; the largest over the guards).', (r) => r.stats.reduce<number | null>((max, s) => s.queue == null ? max : Math.max(max ?? 0, s.queue.delayMs / 1000), null)],
  ['cpu_throttled_ratio', 'Throttled CFS periods / periods over the last 5 s, under a cgroup CPU limit.', (r) => finiteOrNull(r.sampler.sample.throttledRatio ?? NaN), (s) => s.limits.cpu.limitCores !== null]
]

function finiteOrNull (n: number): number | null {
  return Number.isFinite(n) ? n : null
}

/**
 * Registers hangup-guard's metrics. `guards`: the handles whose `stats()` the gauges read (summed
 * when several). Incident counters count every guarded server of the process; call this once
 * per process and registry (a second call on the same registry throws prom-client's
 * duplicate-name error).
 */
export function prometheusMetrics (guards: StatsSource | readonly StatsSource[], options: PrometheusOptions = {}): PrometheusMetrics {
  const sources = Array.isArray(guards) ? guards as readonly StatsSource[] : [guards as StatsSource]
  for (const [i, g] of sources.entries()) {
    if (g === null || typeof g !== 'object' || typeof g.stats !== 'function') throw new HG_ERR_OPT_TYPE(`guards[${i}]`, g, 'a hangup-guard handle with stats() (configureServerTimeouts() or app.hangupGuard)')
  }
  if (options === null || typeof options !== 'object') throw new HG_ERR_OPT_TYPE('options', options, 'an object')
  const registry = options.registry ?? defaultRegistry
  const prefix = options.prefix ?? 'hangup_guard_'
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(prefix)) throw new HG_ERR_OPT_TYPE('prefix', prefix, 'a Prometheus name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)')
  const routeLabel = options.routeLabel === true
  const maxRoutes = options.maxRoutes ?? 100
  if (!Number.isInteger(maxRoutes) || maxRoutes < 1) throw new HG_ERR_OPT_RANGE('maxRoutes', maxRoutes, 'an integer >= 1')
  const route = routeLabel ? ['route'] as const : [] as const
  const registers = [registry]

  const answers = new Counter({ name: `${prefix}answers_total`, help: 'Explicit answers the guard sent instead of a dropped socket (504, 503, 408), by cause and status.', labelNames: ['cause', 'status', ...route], registers })
  const cut = new Counter({ name: `${prefix}cut_responses_total`, help: 'Responses destroyed after they had started (the client got a truncated response), by cause.', labelNames: ['cause', ...route], registers })
  const gone = new Counter({ name: `${prefix}clients_gone_total`, help: 'Clients that closed the connection before their answer.', labelNames: [...route], registers })
  const wasted = new Counter({ name: `${prefix}wasted_handler_seconds_total`, help: 'Handler time spent for clients that left before their answer.', labelNames: [...route], registers })
  const requests = new Counter({
    name: `${prefix}requests_total`,
    help: 'Requests seen by the guard (health probes excluded), read from stats() at scrape time.',
    registers,
    collect () {
      const total = sources.reduce((n, s) => n + s.stats().requests, 0)
      this.reset()
      this.inc(total)
    }
  })

  const sampler = acquireSampler()
  let reading: Reading | null = null
  // All gauges of one scrape read one snapshot (prom-client calls collect() per metric).
  const read = (): Reading => {
    if (reading === null) {
      reading = { stats: sources.map((s) => s.stats()), sampler }
      queueMicrotask(() => { reading = null })
    }
    return reading
  }
  const gauges = GAUGES.filter(([, , , applies]) => applies === undefined || applies(sampler)).map(([name, help, value]) => new Gauge({
    name: `${prefix}${name}`,
    help,
    registers,
    collect () {
      this.set(value(read()) ?? NaN)
    }
  }))
  const phase = new Gauge({
    name: `${prefix}drain_phase`,
    help: `Drain phase: 1 for the current one (${DRAIN_PHASES.join(', ')}), 0 for the others.`,
    labelNames: ['phase'],
    registers,
    collect () {
      const phases = read().stats.map((s) => s.drain.phase)
      // Several servers: the most advanced phase.
      const current = DRAIN_PHASES[Math.max(0, ...phases.map((p) => DRAIN_PHASES.indexOf(p)))]
      for (const p of DRAIN_PHASES) this.set({ phase: p }, p === current ? 1 : 0)
    }
  })

  const routes = new Set<string>()
  const routeOf = (i: Incident): string => {
    if (routes.has(i.route)) return i.route
    if (routes.size < maxRoutes) {
      routes.add(i.route)
      return i.route
    }
    return OTHER_ROUTE
  }
  const onIncident = (message: unknown): void => {
    const i = message as Incident
    const labels: Record<string, string> = routeLabel ? { route: routeOf(i) } : {}
    if (i.kind === 'answered') answers.inc({ ...labels, cause: i.cause, status: String(i.statusCode ?? 0) })
    else if (i.kind === 'cut') cut.inc({ ...labels, cause: i.cause })
    else {
      gone.inc(labels)
      wasted.inc(labels, Math.max(0, i.elapsedMs) / 1000)
    }
  }
  diagnosticsChannel.subscribe(INCIDENT_CHANNEL, onIncident)
  // Label-less counters show 0 from the first scrape.
  if (!routeLabel) {
    gone.inc(0)
    wasted.inc(0)
  }

  const metrics = [answers, cut, gone, wasted, requests, ...gauges, phase]
  const names = Object.freeze(metrics.map((m) => (m as unknown as { name: string }).name))
  let closed = false
  return {
    registry,
    names,
    close (): void {
      if (closed) return
      closed = true
      diagnosticsChannel.unsubscribe(INCIDENT_CHANNEL, onIncident)
      for (const name of names) registry.removeSingleMetric(name)
      sampler.release()
    }
  }
}

export default prometheusMetrics
