/**
 * The third place a request waits: inside the process, while handlers await a saturated
 * dependency (a pool of 10 connections held 20 ms each). The loop is idle then, so neither the
 * loop nor the accept-queue estimate sees it. Little's law does: over a window, the mean time
 * in the process is W = L / λ (mean requests in flight over completions per ms), and a request
 * admitted now waits about `inFlight / λ - minLatency` before its own work starts, where
 * minLatency is the fastest W seen recently (Envoy's minRTT, Gradient2's long-term baseline).
 *
 * Per request: one field increment at completion, a sum and a count at admission. The window
 * (ASYNC_WINDOW_MS) rolls at the sampler's first tick after it ends (tick()), or, with no tick
 * source, at the first admission after it ends. The estimate counts only once
 * the baseline is at least ASYNC_MIN_BASELINE_MS: with a fast synchronous handler, L / λ is the
 * time a poll batch's responses take to be written and closed, the loop's own queue (judged by
 * overload.ts with its own target); a hello world with 512 connections would otherwise look like
 * 30 ms of in-process wait. (A gate on event-loop utilisation was tried and dropped: under a 3x
 * async overload on a busy machine the loop itself got busy, the gate closed, and nothing was
 * shed.)
 *
 * Start-up (no baseline yet): a 100 ms window that opens on an overload has its W inflated by the
 * queue that built up before anything completed (measured in simulation: 130 ms for a 20 ms
 * dependency at 3x, and the min kept it for 30 s). So the first baseline also takes one probe,
 * Vegas' RTT sample: a request admitted with nothing in flight did not queue, and the first
 * completion after it is seen at the next admission, `now - probeAt` later. And the first window
 * closes after MIN_COMPLETIONS completions instead of 100 ms, so the rate is known from then on
 * (its W is not a sample: it began with nothing in flight and reads low).
 */
/** Window of the rate and in-flight averages (ms). */
export const ASYNC_WINDOW_MS = 100
/** Fewest completions in a window for its figures to count. */
const MIN_COMPLETIONS = 10
/**
 * Fewest completions behind one baseline sample: consecutive windows are pooled until they have
 * this many. The baseline is a minimum, so a noisy sample pulls it down: from 100 ms windows of
 * ~10 completions (100 req/s) it fell to 10 ms for a 20 ms dependency over 30 s, and with a
 * baseline under 2/3 of the true latency even one request in flight reads above the target (half
 * the baseline): the server then serves one request at a time (simulation: 53% of capacity).
 */
const SAMPLE_COMPLETIONS = 50
/** The baseline is the smallest W over this long (ms), in BUCKETS buckets: a slower dependency becomes the new normal. */
export const MIN_LATENCY_MEMORY_MS = 30_000
const BUCKETS = 10
const BUCKET_MS = MIN_LATENCY_MEMORY_MS / BUCKETS
/**
 * Below this baseline (ms) the estimate is off: responses of a fast handler finish within the
 * loop iteration that read them, and what L / λ then measures is the poll batch, the loop's queue.
 */
export const ASYNC_MIN_BASELINE_MS = 5
/** The in-process wait allowed is half the baseline, at least this (ms): served requests stay within 1.5x the fastest. */
export const ASYNC_TARGET_FLOOR_MS = 2

export class AsyncWait {
  /** Estimated in-process wait of the last request judged (ms). */
  waitMs = 0
  /** Completions per ms over the last window with enough requests; 0 until then. */
  rate = 0
  /** The baseline W (ms); Infinity until the start-up probe or a pooled sample gave one. */
  minLatencyMs = Infinity
  private winStart = -1
  /** tick() rolls the windows (set at its first call): admissions only sample. */
  private ticked = false
  /** Admission time of the start-up probe (-1: none), and the completions counted then. */
  private probeAt = -1
  private probeDone = 0
  private completedAtWin = 0
  private inFlightSum = 0
  private samples = 0
  /** Windows pooled for the next baseline sample: their in-flight sum and count, completions, span. */
  private poolInFlight = 0
  private poolSamples = 0
  private poolDone = 0
  private poolSpan = 0
  private readonly mins = new Float64Array(BUCKETS).fill(Infinity)
  private readonly stamps = new Float64Array(BUCKETS).fill(-1)

  /** In-process wait allowed (ms): half the baseline, at least ASYNC_TARGET_FLOOR_MS (a field: read on every admission). */
  targetMs = Infinity

  /**
   * Until when estimate() would only sample (no window to roll, no probe): the window's end, or
   * -Infinity while it must look at every admission (start-up: no rate or baseline yet).
   */
  calmUntil (): number {
    if (this.winStart < 0 || this.rate === 0 || this.probeAt >= 0 || this.minLatencyMs === Infinity) return -Infinity
    return this.ticked ? Infinity : this.winStart + ASYNC_WINDOW_MS
  }

  /**
   * The sampler's tick (every TICK_MS): rolls a window that has run its length. Periodic work on
   * the periodic callback: rolling it at an admission put it on one request per window, and that
   * request out of the calm window (lib/core/guard.ts judge), so that the full estimate, rarely run
   * and never optimised, cost ~10,000 instructions each time (bench/cost.js under callgrind, where
   * a window holds ~50 requests: ~200 per request).
   */
  tick (now: number, completed: number): void {
    this.ticked = true
    if (this.winStart >= 0 && now - this.winStart >= ASYNC_WINDOW_MS) this.roll(now, completed)
  }

  /** Fewer requests in flight than this keep the estimate under targetMs (Infinity: the estimate is off). */
  calmInFlight (): number {
    if (this.rate === 0 || !(this.minLatencyMs >= ASYNC_MIN_BASELINE_MS)) return Infinity
    return (this.targetMs + this.minLatencyMs) * this.rate
  }

  /** Little's law's in-flight sample: every judged request's, with or without the estimate. */
  sampleOnly (inFlight: number): void {
    this.inFlightSum += inFlight
    this.samples++
  }

  /** The estimate for `inFlight` requests now, without sampling (estimate() and the reports). */
  peek (inFlight: number): number {
    if (this.rate === 0 || !(this.minLatencyMs >= ASYNC_MIN_BASELINE_MS)) return 0
    const w = inFlight / this.rate - this.minLatencyMs
    return w > 0 ? w : 0
  }

  /** Estimated in-process wait of a request admitted at `now` with `inFlight` others; `completed`: completions so far. */
  estimate (now: number, inFlight: number, completed: number): number {
    this.sampleOnly(inFlight)
    if (this.winStart < 0) {
      this.winStart = now
      this.completedAtWin = completed
    } else if ((!this.ticked && now - this.winStart >= ASYNC_WINDOW_MS) || (this.rate === 0 && completed - this.completedAtWin >= MIN_COMPLETIONS)) this.roll(now, completed)
    if (this.minLatencyMs === Infinity || this.probeAt >= 0) this.probe(now, inFlight, completed)
    return (this.waitMs = this.peek(inFlight))
  }

  /** The start-up probe (until the first baseline): see the module comment. */
  private probe (now: number, inFlight: number, completed: number): void {
    if (this.probeAt < 0) {
      if (inFlight === 0) {
        this.probeAt = now
        this.probeDone = completed
      }
    } else if (completed > this.probeDone) {
      const latency = now - this.probeAt
      this.probeAt = -1
      this.sample(now, latency)
    }
  }

  private roll (now: number, completed: number): void {
    const span = now - this.winStart
    const done = completed - this.completedAtWin
    if (span >= 2 * ASYNC_WINDOW_MS) {
      // Nothing was admitted for a window or more (idle, or a stall): its completions over the
      // whole span are no rate (0.02 per ms after light traffic and a pause, under which one
      // request in flight reads as 30 ms of wait). The next window measures afresh.
    } else if (done >= MIN_COMPLETIONS) {
      this.rate = done / span
      // A first window closed early gives the rate only: it began with nothing in flight, so its
      // mean in flight, and the W from it, read low (the probe gives the first baseline).
      if (span >= ASYNC_WINDOW_MS) this.pool(now, span, done)
    } else if (this.inFlightSum / this.samples >= MIN_COMPLETIONS) {
      // Requests wait and (almost) none complete: the dependency stalls. The rate is low, not
      // unknown (an unknown rate would read as "no queue" and let everything in).
      this.rate = (done > 0 ? done : 1) / span
    } // else: too few requests to tell; the last rate stands
    this.winStart = now
    this.completedAtWin = completed
    this.inFlightSum = 0
    this.samples = 0
  }

  /** Pools a window; a sample (W = mean in flight / rate) once SAMPLE_COMPLETIONS completed. */
  private pool (now: number, span: number, done: number): void {
    this.poolInFlight += this.inFlightSum
    this.poolSamples += this.samples
    this.poolDone += done
    this.poolSpan += span
    if (this.poolDone < SAMPLE_COMPLETIONS) return
    this.sample(now, this.poolInFlight / this.poolSamples / (this.poolDone / this.poolSpan))
    this.poolInFlight = this.poolSamples = this.poolDone = this.poolSpan = 0
  }

  /** A latency sample (ms) for the baseline: the smallest over MIN_LATENCY_MEMORY_MS. */
  private sample (now: number, latency: number): void {
    const n = Math.floor(now / BUCKET_MS)
    const i = n % BUCKETS
    if (this.stamps[i] !== n) {
      this.stamps[i] = n
      this.mins[i] = latency
    } else if (latency < (this.mins[i] as number)) this.mins[i] = latency
    let min = Infinity
    for (let k = 0; k < BUCKETS; k++) if ((this.stamps[k] as number) > n - BUCKETS && (this.mins[k] as number) < min) min = this.mins[k] as number
    this.minLatencyMs = min
    const half = min / 2
    this.targetMs = half > ASYNC_TARGET_FLOOR_MS ? half : ASYNC_TARGET_FLOOR_MS
  }
}
