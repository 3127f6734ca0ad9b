/**
 * Admission from measured queueing delay: a CoDel-style controller (Nichols & Jacobson 2012, as
 * Facebook runs it for server queues) over three estimates of how long a request waited before
 * its handler could run. docs/overload.md gives the reasons; the numbers are here.
 *
 * - Loop: a request admitted while the current event-loop iteration has already run X ms past
 *   the sampler's tick waited at least X ms (`now - lastTickAt - TICK_MS`, a field read). While
 *   the loop is busy every iteration is a batch, and the requests read at its start arrived during
 *   the previous one: they waited about half of it (keep-alive connections queue here).
 * - Accept queue: libuv accepts one connection per iteration, so with a new connection per
 *   request the queue sits in the kernel. Its depth (lib/accept-queue.ts) times the time between
 *   accepts (Little's law) is the wait; between two reads the depth is decremented per accept.
 *   It counts for every request, kept-alive ones too: the time between accepts is the length of an
 *   iteration, which their handlers fill, so shedding them is what drains that queue.
 * - The controller: while every estimate has stayed at or above `target` for `interval` (a
 *   standing queue), requests whose estimate is at or above `target` are answered 503 at once;
 *   the first estimate below `target` ends it. A one-off burst (a stall's backlog) drains within
 *   the interval and is served while its budgets allow (the stall rule in guard.ts still sheds
 *   those whose budget was spent).
 *
 * No allocation on the request path: estimates and counters are fields.
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import { toMs, type Duration } from './duration'
import { HG_ERR_OPT_TYPE, type HangupGuardError } from './errors'
import type { AcceptQueueReader } from './accept-queue'
import { STALL_THRESHOLD_MS, TICK_MS } from './sampler'
import { CapacityAnswer } from './capacity-answer'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { AsyncWait } from './async-wait'

/** Queueing delay allowed while a standing queue lasts (ms). See docs/overload.md#target. */
export const DEFAULT_QUEUE_TARGET_MS = 250
/** How long the delay must stay at or above the target before shedding starts (ms). */
export const DEFAULT_QUEUE_INTERVAL_MS = 100
/** Fewest milliseconds between two accept-queue reads (each costs ~0.1–0.4 ms of CPU). */
export const ACCEPT_READ_MS = 50
/** Accepts since the last read that make the server "busy with new connections" (a read is worth it). */
const ACCEPT_READ_MIN = 4
/** A tick this much later than TICK_MS means the loop runs back-to-back iterations (ms). */
const BUSY_LATE_MS = 5

/** A stall is a one-off burst when the loop ran this long without one before it (ms). */
export const ONE_OFF_MS = 1000
/** Channel on which each change of the shedding state is published (not each refusal). */
export const SHEDDING_CHANNEL = 'hangup-guard:shedding'
const sheddingChannel = diagnosticsChannel.channel(SHEDDING_CHANNEL)

export interface QueueOptions {
  /**
   * Queueing delay a request may have had while a standing queue lasts (ms, or '250ms'): beyond
   * it, and only then, requests are answered 503 HG_ERR_AT_CAPACITY. false turns the controller off.
   * @default 250 (ms)
   */
  queueTarget?: Duration | false
  /** How long the delay must stay at or above queueTarget before shedding starts (ms, or '100ms'). @default 100 (ms) */
  queueInterval?: Duration
}

/** The loop's side of the estimate (the shared sampler). */
export interface LoopClock {
  /** performance.now() of the last tick. */
  readonly lastTickAt: number
  /** Time between the last two ticks (ms). */
  readonly lastTickGapMs: number
  /** The last stalls (ticks later than TICK_MS + STALL_THRESHOLD_MS), oldest first. */
  readonly stalls: ReadonlyArray<{ readonly startedAt: number, readonly endedAt: number }>
}

/** What the controller reports (stats(), health details, the shedding channel). */
export interface QueueState {
  /** Estimated queueing delay (ms) of the last request judged in full, or, in the calm window, of one admitted at the last tick. */
  readonly delayMs: number
  /** Its parts: the loop iteration, the kernel's accept queue, and in-process waits (ms). */
  readonly loopDelayMs: number
  readonly acceptDelayMs: number
  readonly inProcessDelayMs: number
  /** The in-process wait allowed: half the baseline latency, at least 2 ms. */
  readonly inProcessTargetMs: number
  /** Baseline latency (smallest windowed mean over 30 s, Little's law); null until known. */
  readonly minLatencyMs: number | null
  /** Accept-queue depth at the last read; null when not read (not Linux, or never busy). */
  readonly acceptQueueDepth: number | null
  readonly targetMs: number
  readonly intervalMs: number
  /** True while requests above the target are shed. */
  readonly shedding: boolean
  /** Requests shed by the controller since start, and their share of the requests it judged. */
  readonly shed: number
  readonly shedShare: number
  /** Accept-queue reads, and their total cost (ms of the synchronous read). */
  readonly acceptReads: number
  readonly acceptReadMs: number
}

export interface SheddingEvent {
  readonly shedding: boolean
  readonly delayMs: number
  readonly targetMs: number
}

export class QueueController {
  readonly targetMs: number
  readonly intervalMs: number
  /** The one error every capacity refusal carries (created once: no stack per refusal). */
  readonly error: HangupGuardError
  /** The preformatted answer. */
  readonly answer: CapacityAnswer
  loop: LoopClock | null = null
  acceptQueue: AcceptQueueReader | null = null
  /** Called on each change of the shedding state (the Fastify door logs it). */
  onChange: ((event: SheddingEvent) => void) | null = null
  // Estimates
  delayMs = 0
  loopDelayMs = 0
  acceptDelayMs = 0
  /** In-process waits (handlers awaiting a saturated dependency): lib/async-wait.ts. */
  readonly inProcess: AsyncWait
  /** Requests completed (the guard's settle()): Little's law for the in-process wait. */
  completed = 0
  // CoDel state: when the delay was first seen at or above target (-1: below), and dropping.
  firstAboveAt = -1
  /** The last time the in-process estimate was at or above its target. */
  lastInProcessAboveAt = -Infinity
  shedding = false
  judged = 0
  shed = 0
  // Accept queue: connections accepted (the server's 'connection' events), and the last read.
  accepts = 0
  depth: number | null = null
  private readAt = -Infinity
  private acceptsAtRead = 0
  /** performance.now() (the loop's tick) of the first accept since the last read. */
  private firstAcceptAt = -Infinity
  /** Mean time between accepts over the last read interval (ms). */
  private acceptGapMs = 0
  /**
   * The calm window (refreshCalm): before this performance.now(), a request admitted with fewer
   * than `calmInFlight` others in flight would be admitted by shouldShed() with no change to any
   * state but Little's law's sample, so the guard admits it through admitCalm() instead, without
   * the estimate. -Infinity: every request is judged in full.
   */
  calmUntil = -Infinity
  calmInFlight = 0

  constructor (targetMs: number, intervalMs: number, retryAfterS = 5, inProcess = new AsyncWait()) {
    this.inProcess = inProcess
    this.targetMs = targetMs
    this.intervalMs = intervalMs
    this.answer = new CapacityAnswer(retryAfterS)
    this.error = this.answer.error
  }

  /** Sends the preformatted 503 (lib/capacity-answer.ts); false when the caller must format it. */
  sendRaw (req: IncomingMessage, res: ServerResponse): boolean {
    return this.answer.send(req, res)
  }

  /**
   * A connection was accepted (counts for the accept-queue estimate). No mark on the socket: a
   * request on a kept-alive connection did not wait in the accept queue, but while that queue
   * stands it is judged by its wait too, since the handlers it would run are what keep the loop
   * from accepting (docs/overload.md, "Kept-alive requests and the accept queue").
   */
  onConnection (): void {
    // The first accept since the last read: when that read saw no queue, the time before it was
    // idle, not time between accepts (the loop's last tick dates it, within TICK_MS: no clock read).
    if (this.accepts === this.acceptsAtRead && this.loop !== null) this.firstAcceptAt = this.loop.lastTickAt
    this.accepts++
    // Enough accepts for a read: it is due ACCEPT_READ_MS after the last one, calm or not.
    if (this.accepts - this.acceptsAtRead === ACCEPT_READ_MIN && this.acceptQueue !== null && this.readAt + ACCEPT_READ_MS < this.calmUntil) {
      this.calmUntil = this.readAt + ACCEPT_READ_MS
    }
  }

  /** A request in the calm window (see calmUntil): counted and sampled as shouldShed() would, admitted. */
  admitCalm (inFlight: number): void {
    this.judged++
    this.inProcess.sampleOnly(inFlight)
  }

  /**
   * Recomputes the calm window from the state a full verdict leaves (the guard calls it after
   * each one, and on each tick). A stall needs no bound of its own: while one is in progress,
   * the loop's part of the estimate is its overrun, which the window's time bound covers, and
   * its backlog is the guard's stall rule (guard.ts judge).
   */
  refreshCalm (): void {
    this.calmUntil = this.calmWindow()
    this.calmInFlight = this.inProcess.calmInFlight()
  }

  /**
   * The tick: the in-process window rolls when due, and the calm window moves with the loop's
   * clock; while it holds, the reported estimates are those of a request admitted now (requests
   * in the window are not estimated one by one).
   */
  tick (inFlight: number): void {
    if (this.loop !== null) this.inProcess.tick(this.loop.lastTickAt, this.completed)
    this.refreshCalm()
    if (this.calmUntil === -Infinity || !(inFlight < this.calmInFlight)) return
    this.loopDelayMs = backToBackMs(this.loop as LoopClock)
    this.acceptDelayMs = 0
    this.inProcess.waitMs = this.inProcess.peek(inFlight)
    this.delayMs = this.loopDelayMs + this.inProcess.waitMs
  }

  /**
   * Until when estimate() stays under every target and shouldShed() would change nothing: not
   * shedding and no interval running, no accept queue at the last read and no read due, the loop
   * late by less than the target (the overrun grows with `now`: the bound is a time), and no
   * start-up probe in the in-process estimate.
   */
  private calmWindow (): number {
    const loop = this.loop
    if (this.shedding || this.firstAboveAt >= 0 || loop === null) return -Infinity
    const reader = this.acceptQueue !== null
    if (reader && this.depth !== null && this.depth > 0) return -Infinity
    const room = this.targetMs - backToBackMs(loop)
    if (!(room > 0)) return -Infinity
    let until = Math.min(loop.lastTickAt + TICK_MS + room, this.inProcess.calmUntil())
    if (reader && this.accepts - this.acceptsAtRead >= ACCEPT_READ_MIN && this.readAt + ACCEPT_READ_MS < until) until = this.readAt + ACCEPT_READ_MS
    return until
  }

  /**
   * Estimated queueing delay of a request seen at `now` (performance.now()) with `inFlight`
   * requests already admitted; stored in fields. The in-process part is judged against its own
   * target (shouldShed).
   */
  estimate (now: number, inFlight = 0): number {
    let loopMs = 0
    const loop = this.loop
    if (loop !== null) {
      const overrun = now - loop.lastTickAt - TICK_MS
      if (overrun > 0) loopMs = overrun
      loopMs += backToBackMs(loop)
    }
    const acceptMs = this.acceptQueue === null ? 0 : this.acceptWait(now)
    this.loopDelayMs = loopMs
    this.acceptDelayMs = acceptMs
    this.delayMs = loopMs + acceptMs + this.inProcess.estimate(now, inFlight, this.completed)
    return this.delayMs
  }

  /** The accept queue's part: its depth (read at most every ACCEPT_READ_MS while busy) times the time between accepts. */
  private acceptWait (now: number): number {
    const since = this.accepts - this.acceptsAtRead
    if (now - this.readAt >= ACCEPT_READ_MS && (since >= ACCEPT_READ_MIN || (this.depth !== null && this.depth > 0))) this.readAcceptQueue(now, since)
    const depth = this.depth === null ? 0 : this.depth - (this.accepts - this.acceptsAtRead)
    return depth > 0 ? depth * this.acceptGapMs : 0
  }

  private readAcceptQueue (now: number, since: number): void {
    // After a read that found no queue, the gap is counted from the first accept since: an idle
    // pause before a burst of connections (a load test's next round, a proxy reconnecting) is
    // no time the loop took per accept (measured: one pause of 1 s read as 250 ms per accept,
    // and a hello world under 50 fresh connections shed 574 requests).
    const from = (this.depth === null || this.depth <= 0) && this.firstAcceptAt > this.readAt ? this.firstAcceptAt : this.readAt
    const elapsed = now - from
    const depth = (this.acceptQueue as AcceptQueueReader).depth()
    // Time between accepts over the interval just ended; with no accept at all while a queue was
    // waiting, the whole interval (the loop did not get to accept).
    if (elapsed !== Infinity) this.acceptGapMs = since > 0 ? elapsed / since : elapsed
    this.depth = depth
    this.readAt = now
    this.acceptsAtRead = this.accepts
  }

  /**
   * The admission verdict: true to shed (answer 503 at once). CoDel's rule: shed only while the
   * estimate has been at or above the target for a whole interval, and only requests whose own
   * estimate is at or above it.
   */
  shouldShed (now: number, inFlight = 0): boolean {
    this.judged++
    const delay = this.estimate(now, inFlight)
    const inProcess = this.inProcess
    if (this.loopDelayMs + this.acceptDelayMs < this.targetMs && inProcess.waitMs < inProcess.targetMs) {
      return this.shedding || this.firstAboveAt >= 0 ? this.below(now, delay) : false
    }
    return this.above(now, delay)
  }

  /** An estimate below the targets while a queue stood (or was building): admitted. */
  private below (now: number, delay: number): boolean {
    // Admitted at once. For the in-process queue the shedding state ends only after a whole
    // interval below its target (hysteresis): its estimate is exact enough that an admission
    // under the target does not mean the queue emptied, and reopening an interval in which
    // every request is let in costs, at 3x capacity, 200 ms of queue per 100 ms. For the loop
    // and accept queue, whose estimates have a noise floor (a CFS quota pauses the loop up to
    // 75 ms), below the target is CoDel's "empty": shedding ends at once (measured: in
    // scenario (a) hysteresis there cost 10% of the capacity in extra refusals).
    // The same holds for CoDel's clock before shedding starts: the in-process estimate dips below
    // its target each time a batch of the dependency's calls completes (every ~20 ms for a 20 ms
    // dependency), and a clock restarted at each dip never ran a whole interval: the standing
    // queue was declared ~400 ms into a 3x overload, and until then the burst bound (a wait of
    // one baseline) held the queue at twice the wait the target allows (first-second p99 1.7-1.9x
    // the unloaded one, later seconds 1.5x).
    if (now - this.lastInProcessAboveAt < this.intervalMs) return false
    this.firstAboveAt = -1
    if (this.shedding) this.change(false, delay)
    return false
  }

  /** An estimate at or above a target: CoDel's interval, then shedding. */
  private above (now: number, delay: number): boolean {
    const inProcess = this.inProcess
    if (inProcess.waitMs >= inProcess.targetMs) this.lastInProcessAboveAt = now
    if (this.firstAboveAt < 0) {
      // The queue was empty before. Just after a stall this is its backlog, a burst: the clock
      // starts once the backlog had as long to drain as the stall took to build it (budgets
      // still apply: guard.ts sheds a request that waited longer than its budget).
      const loop = this.loop
      this.firstAboveAt = loop === null ? now : burstEnd(loop, now)
      return this.burstTooLong(inProcess.waitMs)
    }
    if (now - this.firstAboveAt < this.intervalMs) return this.burstTooLong(inProcess.waitMs) // (negative during a stall's backlog)
    if (!this.shedding) this.change(true, delay)
    this.shed++
    return true
  }

  /**
   * Facebook's long timeout, for the in-process queue: before a standing queue is declared, a
   * burst is admitted while the wait it adds stays under the interval. A late load generator or a
   * proxy that flushes its queue sends 3x capacity for 100 ms as 900 requests at once, and
   * admitting them all would be 1.8 s of queue. (Not for the loop and accept queue: the
   * backlog of a stall must be served, requirement (d), and their noise floor is the quota's.)
   */
  private burstTooLong (inProcessWaitMs: number): boolean {
    const baseline = this.inProcess.minLatencyMs
    if (inProcessWaitMs < (baseline < this.intervalMs ? baseline : this.intervalMs)) return false
    this.shed++
    return true
  }

  private change (shedding: boolean, delayMs: number): void {
    this.shedding = shedding
    if (this.onChange === null && !sheddingChannel.hasSubscribers) return
    const event: SheddingEvent = { shedding, delayMs: Math.round(delayMs), targetMs: this.targetMs }
    if (sheddingChannel.hasSubscribers) sheddingChannel.publish(event)
    if (this.onChange !== null) this.onChange(event)
  }

  state (): QueueState {
    const r = this.acceptQueue
    return {
      delayMs: round(this.delayMs),
      loopDelayMs: round(this.loopDelayMs),
      acceptDelayMs: round(this.acceptDelayMs),
      acceptQueueDepth: this.depth,
      targetMs: this.targetMs,
      intervalMs: this.intervalMs,
      shedding: this.shedding,
      shed: this.shed,
      shedShare: this.judged === 0 ? 0 : round(this.shed / this.judged),
      acceptReads: r === null ? 0 : r.reads,
      acceptReadMs: r === null ? 0 : round(r.costMs),
      inProcessDelayMs: round(this.inProcess.waitMs),
      inProcessTargetMs: round(this.inProcess.targetMs),
      minLatencyMs: this.inProcess.minLatencyMs === Infinity ? null : round(this.inProcess.minLatencyMs)
    }
  }
}

/**
 * When the backlog of a one-off stall has had as long to drain as the stall took to build it; `now`
 * when there is no such stall. A stall is one-off when the loop ran ONE_OFF_MS without one before
 * it: under a sustained overload every long iteration is a "stall", and none of them is a burst.
 */
function burstEnd (loop: LoopClock, now: number): number {
  const stalls = loop.stalls
  const n = stalls.length
  const overdue = now - loop.lastTickAt - TICK_MS
  if (overdue > STALL_THRESHOLD_MS) { // a stall not recorded yet (a block inside a poll callback)
    return n === 0 || loop.lastTickAt - TICK_MS - (stalls[n - 1] as { endedAt: number }).endedAt > ONE_OFF_MS ? now + overdue : now
  }
  if (n === 0) return now
  const last = stalls[n - 1] as { startedAt: number, endedAt: number }
  const length = last.endedAt - last.startedAt
  if (now - last.endedAt >= length) return now
  if (n > 1 && last.startedAt - (stalls[n - 2] as { endedAt: number }).endedAt <= ONE_OFF_MS) return now
  return last.endedAt + length
}

/** Back-to-back iterations: requests read now arrived during the previous one, and waited about half of it. */
function backToBackMs (loop: LoopClock): number {
  const late = loop.lastTickGapMs - TICK_MS
  return late > BUSY_LATE_MS ? late / 2 : 0
}

function round (v: number): number {
  return Math.round(v * 1000) / 1000
}

/** Reads `queueTarget` / `queueInterval`; null when the controller is off. */
export function createQueueController (options: QueueOptions | undefined, retryAfterS?: number): QueueController | null {
  const o = options ?? {}
  if (o.queueTarget === false) return null
  const target = o.queueTarget === undefined ? DEFAULT_QUEUE_TARGET_MS : toMs('pressure.queueTarget', o.queueTarget)
  const interval = o.queueInterval === undefined ? DEFAULT_QUEUE_INTERVAL_MS : toMs('pressure.queueInterval', o.queueInterval)
  if (target === 0) return null
  if (interval === 0 && o.queueInterval !== undefined) throw new HG_ERR_OPT_TYPE('pressure.queueInterval', o.queueInterval, 'a duration > 0')
  return new QueueController(target, interval, retryAfterS)
}
