/**
 * The process-wide sampler: one unref'd timer, re-armed with refresh(), shared by every guarded
 * server through acquireSampler()/release() and stopped with the last release.
 *
 * Every TICK_MS it checks how late it is (a late tick is a main-thread stall) and writes the
 * watchdog heartbeat; every SAMPLE_INTERVAL_MS it takes the heavier readings (event-loop delay
 * percentiles, utilisation, memory) and every THROTTLE_INTERVAL_MS the cgroup CPU throttling.
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization, type IntervalHistogram } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import { readContainerLimits, readThrottling, type ContainerLimits, type Throttling } from './cgroup'

/** Period of the heartbeat tick (ms). */
export const TICK_MS = 20
/**
 * A tick later than TICK_MS + this is a stall (ms): above a young GC or a mid-size JSON.parse,
 * well below any request budget, so what it records is time requests really spent queued.
 */
export const STALL_THRESHOLD_MS = 100
/** Window of the heavier readings (ms): 100 histogram samples at 10 ms resolution, so p99 is not just the max. */
export const SAMPLE_INTERVAL_MS = 1000
/** Window of the CPU throttling ratio (ms): 50 CFS periods of 100 ms, enough for a ratio to mean "sustained". */
export const THROTTLE_INTERVAL_MS = 5000
/**
 * How long after a stall ends requests still count as its backlog (ms). After a long synchronous
 * block, libuv runs the late tick (timers phase) before the poll phase that delivers the queued
 * requests, but those come over 2–3 poll iterations (accept, then the new socket's data, then
 * pipelined requests), each as long as the handlers' synchronous work. 100 ms covers that for
 * ~5,000 queued hello-world requests (20 µs each) while traffic arriving later is served; the
 * window is extended while ticks still run late (the loop is still catching up), up to the
 * stall's own length.
 */
export const BACKLOG_WINDOW_MS = 100
const CATCHUP_LATE_MS = 10
const MAX_STALLS = 20
const ELD_RESOLUTION_MS = 10

/** A main-thread stall seen by the sampler. Times are performance.now() milliseconds. */
export interface Stall {
  /** The last on-time tick before the stall. */
  readonly startedAt: number
  /** The late tick that ended it. */
  readonly endedAt: number
  readonly durationMs: number
  /** startedAt as wall-clock epoch milliseconds. */
  readonly startedAtEpochMs: number
}

/** The readings of the last window, updated in place (read them, do not keep the object). */
export interface Sample {
  /** performance.now() when taken; 0 before the first sample. */
  at: number
  windowMs: number
  /**
   * Event-loop delay over the window (ms): how late the 10 ms histogram timer ran, i.e. its
   * intervals minus the resolution (as @fastify/under-pressure does for the mean). A stall seen by
   * the tick also counts in p99 and max: the histogram drops the interval that spans a reset(),
   * so a block that starts right after a sample would otherwise vanish. NaN: no data.
   */
  eventLoopDelayP50Ms: number
  eventLoopDelayP90Ms: number
  eventLoopDelayP99Ms: number
  eventLoopDelayMaxMs: number
  eventLoopDelayMeanMs: number
  /** Share of the window the loop was busy, 0..1. */
  eventLoopUtilization: number
  heapUsedBytes: number
  /** V8's heap_size_limit (bytes). */
  heapLimitBytes: number
  rssBytes: number
  /** Throttled CFS periods / periods over the last throttle window; null without cpu.stat; NaN if it became unreadable. */
  throttledRatio: number | null
  /** Time throttled over the last throttle window (ms). */
  throttledMs: number | null
}

export type SampleListener = (sampler: Sampler) => void

export interface Sampler {
  readonly limits: ContainerLimits
  readonly sample: Readonly<Sample>
  /** The last MAX_STALLS (20) stalls, oldest first. */
  readonly stalls: readonly Stall[]
  readonly running: boolean
  /** performance.now() of the last tick. */
  readonly lastTickAt: number
  /** Time between the last two ticks (ms): TICK_MS on an idle loop, more when iterations run back to back. */
  readonly lastTickGapMs: number
  /** performance.now() at which the last stall ended (-Infinity: none yet). */
  readonly lastStallEndedAt: number
  readonly lastStallDurationMs: number
  /**
   * How long a request seen at `now` (performance.now()) may have waited behind stalls: since the
   * start of a stall still unrecorded (tick overdue) or that ended within the backlog window; else
   * 0. A stall that starts before the previous backlog drained extends it (its requests wait for
   * both). No allocation: meant for the request path.
   */
  backlogStallMs (now: number): number
  /**
   * Until when backlogStallMs() returns 0 for requests seen from now on: while no stall is in
   * progress (the next tick is not overdue) and no backlog window is open. -Infinity: ask it.
   */
  stallCalmUntil (): number
  onSample (fn: SampleListener): void
  offSample (fn: SampleListener): void
  /** @internal the watchdog's heartbeat writer, called on every tick. */
  setHeartbeat (beat: (() => void) | null): void
  /** @internal called on every tick (TICK_MS), after the heartbeat: the guards schedule their deferred deadlines. */
  onTick (fn: () => void): void
  offTick (fn: () => void): void
  /** Call once per acquireSampler(); the last release stops the timer and the histogram. */
  release (): void
}

class SharedSampler implements Sampler {
  readonly limits = readContainerLimits()
  readonly sample: Sample
  readonly stalls: Stall[] = []
  running = true
  refs = 0
  lastTickAt = performance.now()
  lastTickGapMs = TICK_MS
  lastStallEndedAt = -Infinity
  lastStallDurationMs = 0
  backlogUntil = -Infinity
  backlogStartedAt = 0
  backlogMs = 0
  windowStallLateMs = 0
  heartbeat: (() => void) | null = null
  tickListeners: Array<() => void> = []
  readonly listeners = new Set<SampleListener>()
  readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS })
  readonly timer: NodeJS.Timeout
  private elu: EventLoopUtilization = performance.eventLoopUtilization()
  private throttling = this.limits.throttling as Throttling // only read when it was readable at start
  private throttlingAt = this.lastTickAt

  constructor () {
    const measurable = this.limits.throttling === null ? null : 0
    this.sample = {
      at: this.lastTickAt,
      windowMs: 0,
      eventLoopDelayP50Ms: NaN,
      eventLoopDelayP90Ms: NaN,
      eventLoopDelayP99Ms: NaN,
      eventLoopDelayMaxMs: NaN,
      eventLoopDelayMeanMs: NaN,
      eventLoopUtilization: NaN,
      heapUsedBytes: NaN,
      heapLimitBytes: getHeapStatistics().heap_size_limit,
      rssBytes: NaN,
      throttledRatio: measurable,
      throttledMs: measurable
    }
    this.histogram.enable()
    this.timer = setTimeout(onTick, TICK_MS).unref()
  }

  backlogStallMs (now: number): number {
    if (!this.running) return 0
    // Phase order: a block in a timer callback or a poll callback can let queued requests through
    // before the late tick has run; the overdue tick is the stall, still in progress for us.
    if (now - this.lastTickAt > TICK_MS + STALL_THRESHOLD_MS) {
      return now - (this.lastTickAt <= this.backlogUntil ? this.backlogStartedAt : this.lastTickAt)
    }
    return now <= this.backlogUntil ? this.backlogMs : 0
  }

  stallCalmUntil (): number {
    if (!this.running) return Infinity
    return this.backlogUntil < this.lastTickAt ? this.lastTickAt + TICK_MS + STALL_THRESHOLD_MS : -Infinity
  }

  onSample (fn: SampleListener): void { this.listeners.add(fn) }
  offSample (fn: SampleListener): void { this.listeners.delete(fn) }
  setHeartbeat (beat: (() => void) | null): void { this.heartbeat = beat }
  onTick (fn: () => void): void { this.tickListeners.push(fn) }
  offTick (fn: () => void): void { this.tickListeners = this.tickListeners.filter((f) => f !== fn) }

  release (): void {
    if (!this.running || --this.refs > 0) return
    this.running = false
    clearTimeout(this.timer)
    this.histogram.disable()
    this.listeners.clear()
    this.heartbeat = null
    this.tickListeners = []
    if (shared === this) shared = null
  }

  tick (now: number): void {
    const gapMs = now - this.lastTickAt
    if (gapMs > TICK_MS + STALL_THRESHOLD_MS) {
      this.stalls.push({ startedAt: this.lastTickAt, endedAt: now, durationMs: gapMs, startedAtEpochMs: performance.timeOrigin + this.lastTickAt })
      if (this.stalls.length > MAX_STALLS) this.stalls.shift()
      this.lastStallEndedAt = now
      this.lastStallDurationMs = gapMs
      if (this.lastTickAt > this.backlogUntil) this.backlogStartedAt = this.lastTickAt
      this.backlogMs = now - this.backlogStartedAt
      this.backlogUntil = now + BACKLOG_WINDOW_MS
      this.windowStallLateMs = Math.max(this.windowStallLateMs, gapMs - TICK_MS)
    } else if (gapMs > TICK_MS + CATCHUP_LATE_MS && now <= this.backlogUntil) {
      this.backlogUntil = Math.min(now + BACKLOG_WINDOW_MS, this.lastStallEndedAt + Math.max(BACKLOG_WINDOW_MS, this.backlogMs))
    }
    this.lastTickAt = now
    this.lastTickGapMs = gapMs
    if (this.heartbeat !== null) this.heartbeat()
    const ticks = this.tickListeners
    for (let i = 0; i < ticks.length; i++) (ticks[i] as () => void)()
    if (now - this.sample.at >= SAMPLE_INTERVAL_MS) this.takeSample(now)
  }

  private takeSample (now: number): void {
    const s = this.sample
    const h = this.histogram
    const empty = h.count === 0
    const stallMs = this.windowStallLateMs
    s.eventLoopDelayP50Ms = empty ? NaN : delayMs(h.percentile(50))
    s.eventLoopDelayP90Ms = empty ? NaN : delayMs(h.percentile(90))
    s.eventLoopDelayP99Ms = empty ? NaN : Math.max(delayMs(h.percentile(99)), stallMs)
    s.eventLoopDelayMaxMs = empty ? NaN : Math.max(delayMs(h.max), stallMs)
    s.eventLoopDelayMeanMs = delayMs(h.mean) // NaN stays NaN
    h.reset()
    this.windowStallLateMs = 0
    const elu = performance.eventLoopUtilization()
    s.eventLoopUtilization = performance.eventLoopUtilization(elu, this.elu).utilization
    this.elu = elu
    const memory = process.memoryUsage()
    s.heapUsedBytes = memory.heapUsed
    s.rssBytes = memory.rss
    if (s.throttledRatio !== null && now - this.throttlingAt >= THROTTLE_INTERVAL_MS) this.sampleThrottling(now)
    s.windowMs = now - s.at
    s.at = now
    for (const fn of this.listeners) {
      try {
        fn(this)
      } catch (err) {
        // One listener's bug must neither stop the others nor the tick (it would end sampling).
        process.emitWarning(`hangup-guard: a sampler listener threw: ${err instanceof Error ? err.message : String(err)}`, 'HangupGuardWarning')
      }
    }
  }

  private sampleThrottling (now: number): void {
    const current = readThrottling(this.limits)
    const previous = this.throttling
    this.throttlingAt = now
    if (current === null) {
      this.sample.throttledRatio = NaN // it was readable at start: a broken reading fails closed
      this.sample.throttledMs = NaN
      return
    }
    const periods = current.periods - previous.periods
    this.sample.throttledRatio = periods > 0 ? (current.throttledPeriods - previous.throttledPeriods) / periods : 0
    this.sample.throttledMs = current.throttledMs - previous.throttledMs
    this.throttling = current
  }
}

let shared: SharedSampler | null = null

function delayMs (intervalNs: number): number {
  return Math.max(0, intervalNs / 1e6 - ELD_RESOLUTION_MS)
}

function onTick (): void {
  const sampler = shared
  if (sampler === null) return
  sampler.timer.refresh()
  sampler.tick(performance.now())
}

/** Joins the process-wide sampler, starting it if needed. Call release() once when done. */
export function acquireSampler (): Sampler {
  shared ??= new SharedSampler()
  shared.refs++
  return shared
}
