/**
 * Graceful drain, framework-independent (the http handle and the Fastify plugin both call
 * `startDrain`). Phases, from the start:
 *
 * - grace (`delay` ms): readiness fails at once; requests still routed here are served, every
 *   response with `Connection: close`, so each client learns it must reconnect elsewhere;
 * - closing: the listener closes, idle connections are closed (SWEEP_MS later), in-flight
 *   handlers finish within their own budgets, requests still arriving on open connections get
 *   503 + `Connection: close`;
 * - hard deadline (`timeout` ms from the start, delay included, or force()): handlers still
 *   running are answered 503 (HG_ERR_SHUTDOWN) where their response has not started, started
 *   responses are cut (counted); the answers get a moment to flush, then every connection is
 *   destroyed;
 * - closed: the server emitted 'close'. The promise resolves; it never calls process.exit.
 */
import type { Server, ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Guard } from './guard'
import { DrainPhase, PHASE_NAMES, type DrainResult, type DrainState, type DrainRunView } from './drain-state'
import { type DrainOptions, resolveDrainTimes } from './options'
import { toMs } from './duration'
import { HG_ERR_OPT_TYPE, HG_ERR_OPT_UNKNOWN, HG_ERR_SHUTDOWN } from './errors'
import type { Pending } from './pending'

/**
 * Idle keep-alive connections are closed SWEEP_MS after the listener closed or after the last
 * in-flight response is done, whichever is later (and again every SWEEP_MS until the server
 * closes). Not at once: their client may be reusing one at that very moment (its request in
 * transit), and closing it would reset that request. Meanwhile such a request gets an explicit
 * 503 + Connection: close instead.
 */
export const SWEEP_MS = 250
/** At the hard deadline, how long the 503 answers (a few hundred bytes) get to reach the client before the connections are destroyed. */
export const FLUSH_MS = 500
/** After the connections are destroyed, how long to wait for the server's 'close' before resolving with the connections it does not track (upgraded sockets). */
export const LINGER_MS = 1_000

const DRAIN_CALL_KEYS = ['delay', 'timeout']

/** One drain of one server; its promise is what every drain() call on that server returns. */
export class DrainRun implements DrainRunView {
  readonly promise: Promise<DrainResult>
  /** Epoch milliseconds. */
  readonly startedAt: number
  private readonly start: number
  private readonly base: readonly [number, number, number, number]
  private resolve!: (result: DrainResult) => void
  private delayTimer: NodeJS.Timeout | null = null
  private deadlineTimer: NodeJS.Timeout | null = null
  private sweepTimer: NodeJS.Timeout | null = null
  private flushTimer: NodeJS.Timeout | null = null
  private lingerTimer: NodeJS.Timeout | null = null
  private timedOut = false
  private forced = false
  /** The listener is closed (phase closing or later). */
  private closing = false
  /** The hard deadline passed: answers are flushing, then everything is destroyed. */
  private final = false
  private destroyed = false
  private done = false
  private readonly onClose = (): void => this.finish(0)
  private readonly onIdle = (): void => this.idle()

  constructor (readonly server: Server, readonly guard: Guard, readonly delayMs: number, readonly timeoutMs: number) {
    this.promise = new Promise((resolve) => { this.resolve = resolve })
    this.start = performance.now()
    this.startedAt = Date.now()
    const s = guard.stats
    this.base = [s.requests, s.answeredDraining, s.answeredShutdown, s.cutShutdown]
    guard.beginDrain(this)
    server.on('close', this.onClose)
    // The deadline first: what follows may block the event loop.
    this.deadlineTimer = setTimeout(onDeadlineTimer, timeoutMs, this).unref()
    if (delayMs === 0) this.beginClosing()
    else this.delayTimer = setTimeout(onDelayTimer, delayMs, this).unref()
  }

  state (): DrainState {
    return { phase: PHASE_NAMES[this.guard.drainPhase]!, startedAt: this.startedAt, delayMs: this.delayMs, timeoutMs: this.timeoutMs }
  }

  /** Hard deadline now (a second signal). */
  force (): void {
    if (this.done) return
    this.forced = true
    this.hardDeadline()
  }

  beginClosing (): void {
    if (this.closing || this.done) return
    this.closing = true
    this.clearTimer('delayTimer')
    this.guard.enterPhase(DrainPhase.Closing)
    this.guard.whenIdle(this.onIdle)
    closeListener(this.server)
    if (this.guard.inFlightHead === null) this.armSweep()
  }

  /** The last in-flight request settled. */
  private idle (): void {
    if (this.final) this.destroyAll()
    else this.armSweep()
  }

  private armSweep (): void {
    if (this.done || this.final) return
    if (this.sweepTimer === null) this.sweepTimer = setTimeout(onSweepTimer, SWEEP_MS, this).unref()
    else this.sweepTimer.refresh()
  }

  sweep (): void {
    this.sweepTimer = null
    if (this.done || this.final || this.guard.inFlightHead !== null) return
    this.server.closeIdleConnections()
    this.armSweep()
  }

  hardDeadline (): void {
    if (this.done || this.final) return
    this.beginClosing()
    this.final = true
    this.clearTimer('deadlineTimer')
    this.clearTimer('sweepTimer')
    const err = new HG_ERR_SHUTDOWN(this.timeoutMs)
    for (let p = this.guard.inFlightHead; p !== null;) {
      const next = p.inNext
      this.timedOut = true
      // A response ended but still flushing gets the same FLUSH_MS as the answers.
      if (!p.res.writableEnded) this.guard.interrupt(p, err, 'shutdown', 503, true)
      p = next
    }
    withFlushingHidden(this.guard, () => this.server.closeIdleConnections())
    if (this.guard.inFlightHead === null) this.destroyAll()
    else this.flushTimer = setTimeout(onFlushTimer, FLUSH_MS, this).unref()
  }

  /** Destroys every connection the http server tracks; what is still in flight is counted as cut. */
  destroyAll (): void {
    if (this.destroyed || this.done) return
    this.destroyed = true
    this.clearTimer('flushTimer')
    const now = performance.now()
    for (let p = this.guard.inFlightHead; p !== null; p = p.inNext) {
      if (p.done || p.cut) continue
      p.cut = true
      this.guard.stats.record({ kind: 'cut', cause: 'shutdown', statusCode: null, code: HG_ERR_SHUTDOWN.code, req: p.req, route: p.route, elapsedMs: now - p.start })
    }
    this.server.closeAllConnections()
    this.lingerTimer = setTimeout(onLingerTimer, LINGER_MS, this).unref()
  }

  /** The server did not close: what is left is not the http server's (upgraded sockets). */
  linger (): void {
    this.lingerTimer = null
    this.server.getConnections((err, count) => {
      const open = err === null ? count : 0
      if (open > 0) {
        process.emitWarning(`hangup-guard: drain ended with ${open} connection(s) still open that the http server does not track (upgraded sockets such as WebSockets); close them when the drain starts`, 'HangupGuardWarning')
      }
      this.finish(open)
    })
  }

  private finish (openConnections: number): void {
    if (this.done) return
    this.done = true
    for (const name of TIMERS) this.clearTimer(name)
    this.server.removeListener('close', this.onClose)
    this.guard.whenIdle(null)
    this.guard.enterPhase(DrainPhase.Closed)
    const s = this.guard.stats
    const [requests, draining, shutdown, cut] = this.base
    this.resolve(Object.freeze({
      durationMs: Math.round(performance.now() - this.start),
      timedOut: this.timedOut,
      forced: this.forced,
      requests: s.requests - requests,
      refused: s.answeredDraining - draining,
      answeredAtDeadline: s.answeredShutdown - shutdown,
      cut: s.cutShutdown - cut,
      openConnections
    }))
  }

  private clearTimer (name: TimerName): void {
    const timer = this[name]
    if (timer !== null) {
      clearTimeout(timer)
      this[name] = null
    }
  }
}

const TIMERS = ['delayTimer', 'deadlineTimer', 'sweepTimer', 'flushTimer', 'lingerTimer'] as const
type TimerName = typeof TIMERS[number]

function onDelayTimer (run: DrainRun): void { run.beginClosing() }
function onDeadlineTimer (run: DrainRun): void { run.hardDeadline() }
// The sweep runs after the next poll phase, not in the timers phase: a request that already
// reached the kernel on an idle connection is read first (its connection is then busy, and it
// gets its 503), instead of being reset by closing a connection with unread data.
function onSweepTimer (run: DrainRun): void { setImmediate(onSweepImmediate, run) }
function onSweepImmediate (run: DrainRun): void { run.sweep() }
function onFlushTimer (run: DrainRun): void { run.destroyAll() }
function onLingerTimer (run: DrainRun): void { run.linger() }

/**
 * server.close() without the closeIdleConnections() that Node (>= 19) runs in it: the listener
 * closes and Node's connection check stops, and the drain closes idle connections itself, once it
 * is safe (SWEEP_MS).
 */
function closeListener (server: Server): void {
  const target = server as unknown as Record<string, unknown>
  const own = Object.hasOwn(server, 'closeIdleConnections')
  const previous = target.closeIdleConnections
  target.closeIdleConnections = noop
  try {
    server.close()
  } finally {
    if (own) target.closeIdleConnections = previous
    else delete target.closeIdleConnections
  }
}

function noop (): void {}

/**
 * Runs Node's idle-connection close without its one hazard: Node counts a connection as idle once
 * its request is read, and skips it only while the response is not `finished`, so a response
 * ended but still flushing (a large body to a slow reader) would be destroyed mid-body, silently.
 * Such responses are still in the guard's in-flight list (they settle on 'close'); they are shown
 * as unfinished for the duration of the synchronous call.
 */
function withFlushingHidden (guard: Guard, fn: () => void): void {
  const hidden: ServerResponse[] = []
  for (let p: Pending | null = guard.inFlightHead; p !== null; p = p.inNext) {
    if (p.res.finished && !p.res.writableFinished) {
      p.res.finished = false
      hidden.push(p.res)
    }
  }
  try {
    fn()
  } finally {
    for (const res of hidden) res.finished = true
  }
}

/**
 * Starts draining `server` (its guard's drain settings, overridden by `options`), or returns the
 * drain already under way. Option mistakes reject the promise (nothing is started).
 */
export function startDrain (server: Server, guard: Guard, options: DrainOptions = {}): Promise<DrainResult> {
  if (guard.drainRun !== null) return guard.drainRun.promise
  let times: { drainDelay: number, drainTimeout: number }
  try {
    times = drainTimesFor(guard, options)
  } catch (err) {
    return Promise.reject(err)
  }
  return new DrainRun(server, guard, times.drainDelay, times.drainTimeout).promise
}

/** Per-call durations over the guard's; a per-call timeout alone also caps the configured delay. */
function drainTimesFor (guard: Guard, options: DrainOptions): { drainDelay: number, drainTimeout: number } {
  if (options === null || typeof options !== 'object') throw new HG_ERR_OPT_TYPE('drain(options)', options, '{ delay, timeout }')
  for (const key of Object.keys(options)) {
    if (!DRAIN_CALL_KEYS.includes(key)) throw new HG_ERR_OPT_UNKNOWN(`drain().${key}`, `; known options: ${DRAIN_CALL_KEYS.join(', ')}`)
  }
  let delayDefault = guard.options.drainDelay
  if (options.timeout !== undefined && options.delay === undefined) delayDefault = Math.min(delayDefault, toMs('drain().timeout', options.timeout))
  return resolveDrainTimes(options, delayDefault, guard.options.drainTimeout, 'drain().')
}

/** Hard deadline now for the drain under way on this guard; false when none is. */
export function forceDrain (guard: Guard): boolean {
  if (guard.drainRun === null) return false
  guard.drainRun.force()
  return true
}
