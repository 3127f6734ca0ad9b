/**
 * Per-server pressure evaluator over the shared sampler. It judges each sample (once a second),
 * never a request: the request path only reads `reason`. A NaN reading counts as pressure (fail
 * closed); a reading that was never available (no cgroup) is reported and not judged.
 */
import { toMs, type Duration } from './duration'
import { HG_ERR_OPT_RANGE, HG_ERR_OPT_TYPE } from './errors'
import type { Sampler } from './sampler'
import { type QueueOptions, createQueueController } from './overload'

/** Pressure set at a limit clears only at this fraction of it, so a reading hovering there does not flap. */
export const PRESSURE_HYSTERESIS = 0.9

/**
 * Hard limits (every request is refused while one fails, and readiness fails) and the
 * queueing-delay controller's settings (`queueTarget`, `queueInterval`: lib/overload.ts), which
 * sheds only the excess and never fails readiness.
 */
export interface PressureOptions extends QueueOptions {
  /**
   * Hard limit on the event-loop delay (ms, or '1s'), judged on the p99 of the last 1 s window.
   * Off by default: the queueing-delay controller sheds the excess load instead of refusing
   * everything for a window, and a long stall is handled per request (HG_ERR_STALLED) and by
   * liveness. Set it for an on/off switch (readiness then fails too).
   * @default false
   */
  maxEventLoopDelay?: Duration | false
  /**
   * Hard limit on the share of the last window the event loop was busy (0..1). Off by default: a
   * loop at 99% with short tasks still answers quickly; the queueing delay sees the case that hurts.
   * @default false
   */
  maxEventLoopUtilization?: number | false
  /** V8 heap used (bytes). @default 90% of V8's heap_size_limit */
  maxHeapUsedBytes?: number | false
  /** Resident set size (bytes). @default 90% of the cgroup memory limit when there is one, else off */
  maxRssBytes?: number | false
  /**
   * Hard limit on sustained CFS throttling: throttled periods / periods over the last 5 s (0..1).
   * Off by default: a pod serving at its CPU limit is throttled and still serving; the queueing
   * delay says when it cannot keep up.
   * @default false
   */
  maxThrottledRatio?: number | false
  /**
   * Your own check (database reachable…), run in the background every healthCheckInterval, never
   * per request. Anything but `true`, a throw or a rejection marks the server unhealthy.
   * @default false
   */
  healthCheck?: (() => boolean | Promise<boolean>) | false
  /** Time between two runs of healthCheck (ms, or '5s'); a run still pending after it fails. @default 5000 (ms) */
  healthCheckInterval?: Duration
}

export type PressureCheckName = 'eventLoop:delay' | 'eventLoop:utilization' | 'memory:heapUsed' | 'memory:rss' | 'cpu:throttling' | 'application:healthCheck'

/** One enabled check, updated in place on each sample. */
export interface PressureCheck {
  readonly name: PressureCheckName
  readonly unit: 'ms' | 'ratio' | 'bytes' | 'boolean'
  /** The threshold (for the health check: 1, meaning "must pass"). */
  readonly limit: number
  /** 'option', or how the default was derived. */
  readonly limitSource: string
  /** The last reading; null before the first one, or when the figure is not available. */
  observed: number | null
  /** Wall-clock epoch ms of the last reading; 0 before the first one. */
  observedAt: number
  failing: boolean
  /** Why it fails, for people; null when it does not. */
  reason: string | null
}

export interface Pressure {
  /** Null when every check passes, else the first failing check's reason. Hot-path field. */
  readonly reason: string | null
  readonly checks: readonly PressureCheck[]
  check (name: PressureCheckName): PressureCheck | undefined
  /** Stops listening to the sampler (the sampler itself belongs to the caller). */
  close (): void
}

type Reader = (sampler: Sampler) => number | null
const READERS: Record<Exclude<PressureCheckName, 'application:healthCheck'>, [string, Reader]> = {
  'eventLoop:delay': ['eventLoopDelay', s => s.sample.eventLoopDelayP99Ms],
  'eventLoop:utilization': ['eventLoopUtilization', s => s.sample.eventLoopUtilization],
  'memory:heapUsed': ['heapUsedBytes', s => s.sample.heapUsedBytes],
  'memory:rss': ['rssBytes', s => s.sample.rssBytes],
  'cpu:throttling': ['throttledRatio', s => s.sample.throttledRatio]
}

class Evaluator implements Pressure {
  reason: string | null = null
  readonly checks: PressureCheck[] = []
  private closed = false
  private healthRun = 0
  private healthRunStartedAt = -Infinity
  private healthRunning = false
  private readonly healthIntervalMs: number
  private readonly listener = (sampler: Sampler): void => this.evaluate(sampler)

  constructor (private readonly sampler: Sampler, options: PressureOptions, private readonly healthCheck: (() => boolean | Promise<boolean>) | null) {
    const { limits, sample } = sampler
    this.add('eventLoop:delay', 'ms', duration('maxEventLoopDelay', options.maxEventLoopDelay, 0), '')
    this.add('eventLoop:utilization', 'ratio', ratio('maxEventLoopUtilization', options.maxEventLoopUtilization, 0), '')
    this.add('memory:heapUsed', 'bytes', bytes('maxHeapUsedBytes', options.maxHeapUsedBytes, Math.floor(0.9 * sample.heapLimitBytes)),
      `default: 90% of V8 heap_size_limit (${mib(sample.heapLimitBytes)})`)
    const memoryLimit = limits.memory.limitBytes
    this.add('memory:rss', 'bytes', bytes('maxRssBytes', options.maxRssBytes, memoryLimit === null ? 0 : Math.floor(0.9 * memoryLimit)),
      `default: 90% of the cgroup memory limit (${memoryLimit === null ? '' : mib(memoryLimit)}, ${limits.memory.source})`)
    this.add('cpu:throttling', 'ratio', ratio('maxThrottledRatio', options.maxThrottledRatio, 0), '')
    this.healthIntervalMs = toMs('healthCheckInterval', options.healthCheckInterval ?? 5000)
    if (healthCheck !== null) {
      this.add('application:healthCheck', 'boolean', [1, true], 'option')
      this.runHealthCheck(performance.now())
    }
    sampler.onSample(this.listener)
  }

  check (name: PressureCheckName): PressureCheck | undefined {
    return this.checks.find(c => c.name === name)
  }

  close (): void {
    this.closed = true
    this.sampler.offSample(this.listener)
  }

  private add (name: PressureCheckName, unit: PressureCheck['unit'], limit: [number, boolean], defaultSource: string): void {
    if (limit[0] > 0) this.checks.push({ name, unit, limit: limit[0], limitSource: limit[1] ? 'option' : defaultSource, observed: null, observedAt: 0, failing: false, reason: null })
  }

  private evaluate (sampler: Sampler): void {
    const now = performance.now()
    const at = performance.timeOrigin + sampler.sample.at
    for (const c of this.checks) {
      if (c.name === 'application:healthCheck') {
        if (this.healthRunning && now - this.healthRunStartedAt > this.healthIntervalMs) {
          this.settle(++this.healthRun, false, `healthCheck still pending after ${Math.round(now - this.healthRunStartedAt)} ms`)
        } else if (!this.healthRunning && now - this.healthRunStartedAt >= this.healthIntervalMs) {
          this.runHealthCheck(now)
        }
      } else {
        const [label, read] = READERS[c.name]
        judge(c, label, read(sampler), at)
      }
    }
    this.reason = this.firstReason()
  }

  private firstReason (): string | null {
    for (const c of this.checks) if (c.reason !== null) return c.reason
    return null
  }

  private runHealthCheck (now: number): void {
    const run = ++this.healthRun
    this.healthRunning = true
    this.healthRunStartedAt = now
    try {
      Promise.resolve(this.healthCheck!()).then(
        ok => this.settle(run, ok === true, ok === true ? null : `healthCheck returned ${String(ok)}`),
        (err: unknown) => this.settle(run, false, `healthCheck failed: ${message(err)}`))
    } catch (err) {
      this.settle(run, false, `healthCheck threw: ${message(err)}`)
    }
  }

  /** Records a run's outcome; a run that was given up on (pending too long) is ignored. */
  private settle (run: number, ok: boolean, reason: string | null): void {
    if (run !== this.healthRun || this.closed) return
    this.healthRunning = false
    const c = this.check('application:healthCheck')!
    c.observed = ok ? 1 : 0
    c.observedAt = Date.now()
    c.failing = !ok
    c.reason = reason
    this.reason = this.firstReason() // at once, not at the next sample
  }
}

function judge (c: PressureCheck, label: string, value: number | null, at: number): void {
  c.observed = value
  c.observedAt = at
  if (value === null) {
    c.failing = false
    c.reason = null
  } else if (Number.isNaN(value)) {
    c.failing = true
    c.reason = `${label} unreadable (NaN), counted as pressure`
  } else if (value > c.limit) {
    c.failing = true
    c.reason = `${label} ${show(c.unit, value)} > ${show(c.unit, c.limit)}`
  } else if (c.failing && value > c.limit * PRESSURE_HYSTERESIS) {
    c.reason = `${label} ${show(c.unit, value)}, until <= ${show(c.unit, c.limit * PRESSURE_HYSTERESIS)}`
  } else {
    c.failing = false
    c.reason = null
  }
}

function message (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function show (unit: PressureCheck['unit'], value: number): string {
  if (unit === 'ms') return `${Math.round(value)} ms`
  if (unit === 'bytes') return mib(value)
  return String(Math.round(value * 1000) / 1000)
}

function mib (bytes: number): string {
  return `${Math.round(bytes / 1048576)} MiB`
}

/** [limit, set by the user]; a limit of 0 means off. */
function duration (name: string, value: Duration | false | undefined, fallback: number): [number, boolean] {
  if (value === undefined) return [fallback, false]
  return [value === false ? 0 : toMs(name, value), true]
}

function ratio (name: string, value: number | false | undefined, fallback: number): [number, boolean] {
  if (value === undefined) return [fallback, false]
  if (value === false) return [0, true]
  if (typeof value !== 'number') throw new HG_ERR_OPT_TYPE(name, value, 'a ratio between 0 and 1, or false')
  if (!(value >= 0 && value <= 1)) throw new HG_ERR_OPT_RANGE(name, value, 'a ratio between 0 and 1 (0 or false: off)')
  return [value, true]
}

function bytes (name: string, value: number | false | undefined, fallback: number): [number, boolean] {
  if (value === undefined) return [fallback, false]
  if (value === false) return [0, true]
  if (typeof value !== 'number') throw new HG_ERR_OPT_TYPE(name, value, 'a number of bytes, or false')
  if (!(Number.isSafeInteger(value) && value >= 0)) throw new HG_ERR_OPT_RANGE(name, value, 'a whole number of bytes >= 0 (0 or false: off)')
  return [value, true]
}

/**
 * Checks pressure options without starting anything (the resolver runs it before any resource
 * is acquired): every threshold's type and range, and the health check. Returns them.
 */
export function checkPressureOptions (options: PressureOptions): PressureOptions {
  duration('maxEventLoopDelay', options.maxEventLoopDelay, 0)
  ratio('maxEventLoopUtilization', options.maxEventLoopUtilization, 0)
  bytes('maxHeapUsedBytes', options.maxHeapUsedBytes, 0)
  bytes('maxRssBytes', options.maxRssBytes, 0)
  ratio('maxThrottledRatio', options.maxThrottledRatio, 0)
  if (options.healthCheckInterval !== undefined) toMs('healthCheckInterval', options.healthCheckInterval)
  const healthCheck = options.healthCheck ?? false
  if (healthCheck !== false && typeof healthCheck !== 'function') {
    throw new HG_ERR_OPT_TYPE('healthCheck', healthCheck, 'a function returning a boolean or a promise of one, or false')
  }
  createQueueController(options) // plain state: checks queueTarget / queueInterval
  return options
}

/**
 * Starts judging the shared sampler's readings for one server. Validates the options (coded
 * TypeError/RangeError naming the option); close() stops it.
 */
export function createPressure (sampler: Sampler, options: PressureOptions = {}): Pressure {
  const healthCheck = options.healthCheck ?? false
  if (healthCheck !== false && typeof healthCheck !== 'function') {
    throw new HG_ERR_OPT_TYPE('healthCheck', healthCheck, 'a function returning a boolean or a promise of one, or false')
  }
  return new Evaluator(sampler, options, healthCheck === false ? null : healthCheck)
}
