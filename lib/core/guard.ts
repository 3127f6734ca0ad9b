/**
 * The request guard, framework-independent: admission (stall backlog, pressure, drain), one
 * deadline per request, the socket-inactivity answer, and the accounting. It knows node:http
 * objects and nothing of Fastify; adapters (http.ts, fastify.ts) decide how an answer is sent.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import {
  type HangupGuardError, HG_ERR_DEADLINE, HG_ERR_SOCKET_TIMEOUT, HG_ERR_REQUEST_BODY_TIMEOUT, HG_ERR_REQUEST_HEADERS_TIMEOUT,
  HG_ERR_OVERLOADED, HG_ERR_STALLED, HG_ERR_DRAINING, HG_ERR_CLIENT_GONE, HG_ERR_HANDLER_FAILED, HG_ERR_OPT_RANGE, HG_ERR_CLOSED, show
} from './errors'
import { type AnswerOptions, isAnswered, sendAnswer, onWire, discardStagedHead, neutralize, rawAnswer } from './answer'
import { Pending, type PendingOwner, pendingOf } from './pending'
import { schedule, unschedule, type DeadlineEntry } from './deadline'
import { Stats, type IncidentCause, type StatsSnapshot } from './stats'
import type { ResolvedGuardOptions } from './options'
import type { TimeoutPlan } from './plan'
import { kPending, kQueued, kLastResponse, kCloseMarked } from './symbols'
import type { QueueController } from './overload'
import { type HealthAnswer, type HealthKind, type HealthSources, buildHealth, serializeHealth, publicHealth } from './health'
import { DrainPhase, PHASE_NAMES, drainingReason, type DrainPhaseValue, type DrainRunView, type DrainState } from './drain-state'

/** Reads of the event-loop sampler the guard needs on its hot path. */
export interface StallSource {
  /** Length of the stall a request admitted at `now` (performance.now()) waited behind, else 0. */
  backlogStallMs (now: number): number
  /** Until when backlogStallMs() is 0 for requests seen from now on (-Infinity: ask it each time). */
  stallCalmUntil (): number
}

/** Reads of the pressure evaluator the guard needs on its hot path. */
export interface PressureSource {
  /** Why the server is under pressure, or null. */
  readonly reason: string | null
}

/** How an adapter sends the guard's answers (the Fastify reply pipeline, or raw for node:http). */
export type Answerer = (p: Pending, err: HangupGuardError, opts: AnswerOptions) => boolean

/** A verdict at admission: the answer to send instead of running the handler. */
export interface Refusal {
  readonly error: HangupGuardError
  readonly cause: IncidentCause
  readonly close: boolean
  /** For incidents only (never sent): why, when the code alone does not say. */
  readonly detail: string | null
}

export { DrainPhase } from './drain-state'

const answerRaw: Answerer = (p, err, opts) => sendAnswer(p.req, p.res, err, opts)

function onResponseClose (this: ServerResponse): void {
  const p = (this.req as unknown as Record<symbol, Pending | undefined>)[kPending]
  if (p !== undefined) p.owner.settle(p)
}

/** A socket with queued (pipelined) responses: the head of their list; the key's presence means its 'close' is watched. */
type QueueSocket = Socket & { [kQueued]?: Pending | null }

/**
 * A pipelined request's response waits in Node's queue until the ones before it are done; it gets
 * its socket, and with it its 'close' event, only then. When the connection closes first, Node 20
 * and 22 never emit 'close' for the queued ones: they are settled here, from the socket's 'close'
 * (one listener per connection that pipelines, none on the common path). The list is intrusive
 * (links in the Pending) and a request leaves it when it settles: nothing is allocated or kept
 * alive for a settled request.
 */
function watchQueued (p: Pending): void {
  const socket = p.req.socket as QueueSocket
  const head = socket[kQueued]
  if (head === undefined) socket.once('close', onQueueSocketClose)
  p.qSocket = socket
  p.qNext = head ?? null
  if (head !== undefined && head !== null) head.qPrev = p
  socket[kQueued] = p
}

function unlinkQueued (p: Pending): void {
  const socket = p.qSocket as QueueSocket
  if (p.qPrev !== null) p.qPrev.qNext = p.qNext
  else socket[kQueued] = p.qNext
  if (p.qNext !== null) p.qNext.qPrev = p.qPrev
  p.qPrev = p.qNext = null
  p.qSocket = null
}

function onQueueSocketClose (this: QueueSocket): void {
  for (let p = this[kQueued] ?? null; p !== null;) {
    const next = p.qNext
    p.owner.settle(p) // unlinks it
    p = next
  }
  delete this[kQueued]
}

type DrainSocket = Socket & { [kLastResponse]?: ServerResponse }
type MarkedResponse = ServerResponse & { [kCloseMarked]?: boolean }

/**
 * While draining, a connection gets `Connection: close` on its last known response only: Node
 * ends the connection after the first response that carries it, and every response queued behind
 * that one (pipelined requests whose handlers ran) would be lost. Returns false when the head of
 * an earlier response on this connection already says close: this request can get no answer the
 * client would read, so no handler may run for it (its client retries it, RFC 9112 section 9.3.2).
 */
function takeLastOnConnection (req: IncomingMessage, res: ServerResponse): boolean {
  const socket = req.socket as DrainSocket | null
  if (socket === null) return true
  const previous = socket[kLastResponse] as MarkedResponse | undefined
  socket[kLastResponse] = res
  if (previous === undefined || previous[kCloseMarked] !== true) return true
  if (previous.headersSent) return false
  previous.shouldKeepAlive = true
  previous[kCloseMarked] = false
  return true
}

/** `Connection: close` on a response whose head is not built yet (and that would keep the connection). */
function markClose (res: ServerResponse): void {
  if (res.headersSent || !res.shouldKeepAlive) return
  res.shouldKeepAlive = false;
  (res as MarkedResponse)[kCloseMarked] = true
}

/** Drain start: `Connection: close` on the last in-flight response of each connection. */
function markLastResponses (head: Pending | null): void {
  for (let p = head; p !== null; p = p.inNext) if (p.req.socket !== null) (p.req.socket as DrainSocket)[kLastResponse] = p.res
  for (let p = head; p !== null; p = p.inNext) if (p.req.socket !== null && (p.req.socket as DrainSocket)[kLastResponse] === p.res) markClose(p.res)
}

/**
 * One header's value from `req.rawHeaders`, or undefined (absent, or sent twice: Node would join
 * the two with ', ', which is no number). Not `req.headers`: Node builds that object on its first
 * read (lib/_http_incoming.js), a cost the guard must not add to every request of an app that
 * never reads it. `name` is lower case.
 */
function rawHeader (req: IncomingMessage, name: string): string | undefined {
  const raw = req.rawHeaders
  let value: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i] as string
    if (key.length !== name.length || key.toLowerCase() !== name) continue
    if (value !== undefined) return undefined
    value = raw[i + 1]
  }
  return value
}

/** What a guard is built from, besides the plan and its options (bind.ts makes them). */
export interface GuardParts {
  /** The sampler's stall reads; null: no stall shedding. */
  readonly stall: StallSource | null
  /** The pressure verdict; null: no pressure shedding. */
  readonly pressure: PressureSource | null
  /** How the door sends the guard's answers; null: on the raw response (node:http). */
  readonly answerer: Answerer | null
  /** Where health documents come from (the guard adds its counters and drain state); null: none. */
  readonly health: Omit<HealthSources, 'stats' | 'draining'> | null
  /** The queueing-delay controller (lib/core/overload.ts); null: off. */
  readonly queue: QueueController | null
  /** The sampler's tick, on which deadlines are scheduled (see Guard.track); null: at admission. */
  readonly ticks?: TickSource | null
}

/** A periodic callback (the sampler's TICK_MS tick). */
export interface TickSource {
  onTick (fn: () => void): void
  offTick (fn: () => void): void
}

/**
 * Budgets from which a deadline is put on the timer at the next tick rather than at admission
 * (ms): most requests end long before, and then never touch the timer's lists (measured: the
 * schedule and unschedule were ~500 of a guarded hello world's ~2,000 extra instructions). The
 * deadline itself is fixed at admission; a tick comes every TICK_MS, so it is on the timer in
 * time unless the loop is blocked, when no timer could fire anyway. Shorter budgets (a deadline
 * header, a short route) are scheduled at once.
 */
export const DEFER_SCHEDULE_MIN_MS = 100

export class Guard implements PendingOwner {
  readonly stats: Stats
  readonly answerer: Answerer
  private stall: StallSource | null
  private pressure: PressureSource | null
  private controller: QueueController | null
  /** The one refusal the controller's verdict returns (no allocation per refusal). */
  readonly queueRefusal: Refusal | null
  private readonly healthSources: HealthSources | null
  private phase: DrainPhaseValue = DrainPhase.None
  private run: DrainRunView | null = null
  private idle: (() => void) | null = null
  /** performance.now() when the server started listening (start-up work is no stall backlog). */
  private listeningAt = performance.now()
  /**
   * The in-flight list (arrival order). `inHead` is null while the list holds at most one
   * request (then the head is `inTail`: see head()): the common case, one request at a time per
   * guard, stores one pointer, not two (each store of a new request into the guard is a write
   * barrier, ~50 instructions).
   */
  private inHead: Pending | null = null
  private inTail: Pending | null = null
  readonly budget: number
  /** How long after a deadline the socket inactivity backstop (`server.timeout`) fires; null: off. */
  private readonly socketSlack: number | null
  /**
   * The first request admitted since the last tick; it and those after it are young: no 'close'
   * listener yet, and a deferred deadline not on the timer yet (see ageYoung).
   */
  private young: Pending | null = null
  /**
   * Every request in flight is young (the first young one is the list's head; `young` stays null). Set
   * when a young request is admitted into an empty list, the common case between two ticks: a
   * boolean, where storing the request in `young` cost a write barrier (~50 instructions) each time.
   */
  private youngAll = false
  private ticks: TickSource | null
  /** track()'s common case holds (updateLean). */
  private lean = false
  /**
   * Until when the stall source reports no stall in progress and no backlog (its
   * stallCalmUntil(), which changes only at its ticks: read there). Before it, the stall rule
   * admits every request without asking the source.
   */
  private stallCalmAt = -Infinity
  private readonly onTick = (): void => {
    this.ageYoung()
    this.stallCalmAt = this.stall === null ? Infinity : this.stall.stallCalmUntil()
    if (this.controller !== null) this.controller.tick(this.stats.inFlight)
  }

  /** The second character of each health path (the first is '/'): most URLs have neither. */
  private readonly probeChar1: number
  private readonly probeChar2: number
  /** A health path shorter than two characters: every URL is compared in full. */
  private readonly probeShort: boolean

  constructor (readonly plan: TimeoutPlan, readonly options: ResolvedGuardOptions, parts: GuardParts) {
    const live = options.livenessPath ?? ''
    const ready = options.readinessPath ?? ''
    this.probeChar1 = live.charCodeAt(1)
    this.probeChar2 = ready.charCodeAt(1)
    this.probeShort = live.length < 2 || ready.length < 2
    this.stats = new Stats(options.onIncident, options.incidentQuery)
    this.budget = plan.handlerTimeout.value
    this.socketSlack = plan.timeout.value > 0 && plan.handlerTimeout.value > 0 ? plan.timeout.value - plan.handlerTimeout.value : null
    this.stall = parts.stall
    this.pressure = parts.pressure
    this.controller = parts.queue
    this.ticks = parts.ticks ?? null
    this.ticks?.onTick(this.onTick)
    this.updateLean()
    this.queueRefusal = parts.queue === null ? null : { error: parts.queue.error, cause: 'capacity', close: false, detail: null }
    this.answerer = parts.answerer ?? answerRaw
    this.healthSources = parts.health === null
      ? null
      : { ...parts.health, stats: () => this.snapshot(), draining: () => drainingReason(this.drainState()) }
  }

  /** The server started listening (bind.ts): requests cannot have waited since before it. */
  listening (now: number): void {
    this.listeningAt = now
  }

  /** Stops reading the sampler and the pressure verdict (the server is unbound; they are released). */
  detach (): void {
    this.stall = null
    this.pressure = null
    this.controller = null
    this.ageYoung()
    this.ticks?.offTick(this.onTick)
    this.ticks = null
    this.updateLean()
  }

  /**
   * The tick: each request admitted since the last one is settled when its response has closed,
   * else watched from now on (its 'close' listener, its deferred deadline on the timer). Most
   * requests end before the next tick, and a 'close' listener on each cost the Fastify door up
   * to 200 instructions per request (bench/cost.js: 50,491 before, 50,289-50,475 after; nothing
   * measurable behind the node:http door). The oldest young requests whose responses closed are
   * settled at the next admission (settleFront): the in-flight count the verdict reads is exact
   * when requests end in order, and counts a closed request behind one still running until the
   * tick (at most TICK_MS); stats() and the drain settle every closed one first.
   */
  ageYoung (): void {
    for (let p = this.youngHead(); p !== null;) {
      const next = p.inNext
      if (p.res.closed) this.settle(p)
      else this.watch(p)
      p = next
    }
    this.young = null
    this.youngAll = false
  }

  /** A request still in flight a tick after its admission: its deadline on the timer, its close watched. */
  private watch (p: Pending): void {
    if (p.list === null && p.at !== Infinity) schedule(p)
    const socket = p.req.socket
    if (p.res.socket === null && socket !== null) {
      // Queued behind a pipelined response: on Node 20 and 22 it never closes when its connection does.
      if (socket.destroyed) {
        this.settle(p)
        return
      }
      watchQueued(p)
    }
    p.res.on('close', onResponseClose)
  }

  /** At admission: the oldest young requests, while their responses have closed (two at most: admission stays O(1)). */
  private settleFront (): void {
    let p = this.youngHead()
    // `=== true` on the hot path: a field V8 knows nothing about is tested with one pointer
    // comparison, where a bare truthiness test is a generic ToBoolean (~10 instructions).
    if (p === null || p.res.closed !== true) return
    if (p.inNext === null && p.inPrev === null && p.res.writableFinished === true) {
      this.settleOnly(p)
      return
    }
    this.settle(p) // moves the young head on
    p = this.youngHead()
    if (p !== null && p.res.closed === true) this.settle(p)
  }

  /**
   * settle() for the common case, one request at a time: `p`, the only request in flight, young
   * (never watched), finished. Small enough for the JIT to inline into admission.
   */
  private settleOnly (p: Pending): void {
    p.done = true
    this.inHead = this.inTail = this.young = null
    this.stats.inFlight--
    if (this.controller !== null) this.controller.completed++
    if (p.list !== null) unschedule(p)
    if (this.idle !== null) this.idle()
  }

  /** The oldest young request, or null. */
  private youngHead (): Pending | null {
    return this.youngAll === true ? this.head() : this.young
  }

  /** The oldest request in flight (see inHead). */
  private head (): Pending | null {
    return this.inHead ?? this.inTail
  }

  /** `p`, just linked in flight, is the first young request since the tick. */
  private firstYoung (p: Pending): void {
    if (this.head() === p) this.youngAll = true
    else this.young = p
  }

  /** Every young request whose response has closed (for exact counters). */
  private settleClosed (): void {
    for (let p = this.youngHead(); p !== null;) {
      const next = p.inNext
      if (p.res.closed) this.settle(p)
      p = next
    }
  }

  /** The queueing-delay controller, while the server is bound and it is on. */
  get queue (): QueueController | null { return this.controller }

  /** The drain phase now (DrainPhase). */
  get drainPhase (): DrainPhaseValue { return this.phase }

  /** The drain started on this guard, if any: every drain() returns its promise. */
  get drainRun (): DrainRunView | null { return this.run }

  /**
   * A drain starts (lib/core/drain.ts): the grace phase, and `Connection: close` on the last
   * in-flight response of each connection (those admitted from now on are marked at admission).
   */
  beginDrain (run: DrainRunView): void {
    this.run = run
    this.phase = DrainPhase.Grace
    this.updateLean()
    markLastResponses(this.head())
  }

  /** The drain moves on (closing, closed). */
  enterPhase (phase: DrainPhaseValue): void {
    this.phase = phase
    this.updateLean()
  }

  /** Called once nothing is in flight any more (the drain waits on it); null: nobody waits. */
  whenIdle (fn: (() => void) | null): void {
    this.idle = fn
  }

  /** The liveness or readiness document now (the whole document; the endpoints show a public view). */
  health (kind: HealthKind): HealthAnswer {
    if (kind !== 'liveness' && kind !== 'readiness') throw new HG_ERR_OPT_RANGE('health(kind)', kind, "'liveness' or 'readiness'")
    if (this.healthSources === null) throw new HG_ERR_CLOSED()
    return buildHealth(kind, this.healthSources)
  }

  /** Budget for a request: the handler budget, shortened by an upstream deadline header. 0: none. */
  budgetFor (req: IncomingMessage, routeBudget: number = this.budget): number {
    const o = this.options
    if (routeBudget === 0 || (o.exclude !== null && o.exclude(req))) return 0
    return o.deadlineHeader === null ? routeBudget : this.headerBudget(req, o.deadlineHeader, routeBudget)
  }

  /** The route's budget, shortened by the upstream deadline header when it leaves less. */
  private headerBudget (req: IncomingMessage, header: string, routeBudget: number): number {
    const raw = rawHeader(req, header)
    if (raw !== undefined && raw.length > 0 && raw.length <= 10 && /^\d+$/.test(raw)) {
      const left = Number(raw) - this.options.deadlineMargin
      if (left < routeBudget) return left < 1 ? 1 : left
    }
    return routeBudget
  }

  /**
   * Admission, the one path both doors take: the request's budget (the route's, shortened by an
   * upstream deadline header), the verdict, then either the admitted Pending (in flight, deadline
   * armed) or the Refusal the door sends its way and hands to recordRefusal().
   */
  admit (req: IncomingMessage, res: ServerResponse, routeBudget: number, ctx: unknown, route: string | null): Pending | Refusal | null {
    if (this.young !== null || this.youngAll === true) this.settleFront() // the in-flight count the verdict reads
    if (this.clientLeft(req)) return null
    const now = performance.now()
    const budget = this.budgetFor(req, routeBudget)
    const refusal = this.verdict(budget, now, req, res)
    if (refusal !== null) return refusal
    return this.track(req, res, budget, now, ctx, route)
  }

  /**
   * Whether to refuse a request before any handler work, and how. null: admit. The common path
   * is a few field reads; everything rarer (draining, a stall, a hard limit) is in functions of
   * its own, so that this one stays small enough for the JIT to inline into the doors.
   */
  verdict (budget: number, now: number, req: IncomingMessage, res: ServerResponse): Refusal | null {
    if (this.phase !== DrainPhase.None) return this.drainingVerdict(budget, now, req, res)
    return this.judge(budget, now)
  }

  /**
   * The verdict's checks: a stall's backlog, a hard limit, the queueing-delay controller. In the
   * controller's calm window (every estimate under its target: see QueueController.calmUntil) a
   * request is admitted without the estimates: the full checks would admit it and change nothing.
   * The stall rule is checked on its own there, while a stall is in progress or its backlog
   * window open: the backlog of a stall shorter than the budgets is served in the calm window
   * (bench/cost.js: under callgrind, whose pauses the sampler sees as stalls, ~4% of requests
   * were judged in full, at ~10,000 instructions each in code the JIT never optimised).
   */
  private judge (budget: number, now: number): Refusal | null {
    const q = this.controller
    if (q !== null && now < q.calmUntil) {
      if (now >= this.stallCalmAt) {
        const refusal = this.stallVerdict(budget, now)
        if (refusal !== null) return refusal
      }
      const pressure = this.pressure
      if (pressure !== null && pressure.reason !== null) return this.overloaded(pressure.reason)
      const inFlight = this.stats.inFlight
      if (inFlight < q.calmInFlight) {
        q.admitCalm(inFlight)
        return null
      }
    }
    const refusal = this.judgeFully(budget, now)
    if (q !== null) q.refreshCalm()
    return refusal
  }

  /** The stall rule: a request that waited behind a stall at least its budget is refused. */
  private stallVerdict (budget: number, now: number): Refusal | null {
    const stall = this.stall
    if (stall === null || budget <= 0) return null
    const stalled = stall.backlogStallMs(now)
    return stalled >= budget ? this.stallRefusal(stalled, budget, now) : null
  }

  private judgeFully (budget: number, now: number): Refusal | null {
    const stalled = this.stallVerdict(budget, now)
    if (stalled !== null) return stalled
    const pressure = this.pressure
    if (pressure !== null && pressure.reason !== null) return this.overloaded(pressure.reason)
    const q = this.controller
    if (q !== null && q.shouldShed(now, this.stats.inFlight)) return this.queueRefusal
    return null
  }

  /** While draining, every refusal closes its connection too (the client must go elsewhere). */
  private drainingVerdict (budget: number, now: number, req: IncomingMessage, res: ServerResponse): Refusal | null {
    // A pipelined request behind a response that closes the connection: its answer would be lost.
    if (!takeLastOnConnection(req, res)) return { error: new HG_ERR_DRAINING(), cause: 'draining', close: true, detail: 'pipelined behind a response that closes the connection' }
    if (this.phase >= DrainPhase.Closing) return { error: new HG_ERR_DRAINING(), cause: 'draining', close: true, detail: null }
    const refusal = this.judge(budget, now)
    return refusal === null ? null : { ...refusal, close: true }
  }

  /** A request that waited behind a stall longer than its budget (never since before the server listened: startup work is no backlog). */
  private stallRefusal (stalledMs: number, budget: number, now: number): Refusal | null {
    const stalled = stalledMs > now - this.listeningAt ? now - this.listeningAt : stalledMs
    return stalled >= budget ? { error: new HG_ERR_STALLED(Math.round(stalled)), cause: 'stall', close: false, detail: null } : null
  }

  private overloaded (reason: string): Refusal {
    return { error: new HG_ERR_OVERLOADED(), cause: 'overload', close: false, detail: reason }
  }

  /**
   * A client that already closed its side before its handler would run: no handler, no answer
   * (counted under clientGone). True when the door must drop the request.
   */
  private clientLeft (req: IncomingMessage): boolean {
    const socket = req.socket
    // `readable` is one getter, false whenever the socket ended or was destroyed (then the two
    // exact reads decide): two getters less on every request.
    if (socket === null || socket.readable === true || !(socket.readableEnded || socket.destroyed)) return false
    this.dropGone(req, socket)
    return true
  }

  /** The client left before its handler would run: counted as seen and gone, its socket destroyed. */
  private dropGone (req: IncomingMessage, socket: Socket): void {
    this.stats.requests++
    this.stats.record({ kind: 'client-gone', cause: 'client-gone', statusCode: null, code: null, req, route: null, elapsedMs: 0 })
    socket.destroy()
  }

  /** Counts and reports a refusal answered by an adapter (the request counts as seen, once). */
  recordRefusal (req: IncomingMessage, res: ServerResponse, refusal: Refusal, statusCode: number, route: string | null): void {
    if (refusal.close) (res as MarkedResponse)[kCloseMarked] = true
    if (pendingOf(req) === undefined) this.stats.requests++
    // Under overload this runs once per refusal: nothing is allocated unless someone listens.
    if (this.stats.listened()) this.stats.record({ kind: 'answered', cause: refusal.cause, statusCode, code: refusal.error.code, req, route, elapsedMs: 0, detail: refusal.detail })
    else this.stats.count('answered', refusal.cause, 0)
  }

  /** Admits a request: links it in flight and arms its deadline (budget 0: none). */
  track (req: IncomingMessage, res: ServerResponse, budget: number, now: number, ctx: unknown, route: string | null): Pending {
    const p = new Pending(req, res, this, now, budget, ctx, route);
    (req as unknown as Record<symbol, Pending>)[kPending] = p
    this.stats.requests++
    this.stats.inFlight++
    const tail = this.inTail
    if (tail !== null) {
      if (this.inHead === null) this.inHead = tail // a second request: the head gets its own pointer
      tail.inNext = p
      p.inPrev = tail
    }
    this.inTail = p
    if (budget === this.budget && this.lean === true) {
      if (this.young === null && this.youngAll !== true) this.firstYoung(p)
    } else this.trackMore(p, budget)
    return p
  }

  /**
   * What track() does besides the common case (the planned budget, deferred to the tick, no
   * drain): out of line, so that admission stays small enough for the JIT to inline the Pending's
   * construction into it (measured: ~240 instructions per request when it did not).
   */
  private trackMore (p: Pending, budget: number): void {
    if (budget > 0 && (budget < DEFER_SCHEDULE_MIN_MS || this.ticks === null)) schedule(p)
    // A budget beyond the planned one (a route's), or none (excluded), moves this socket's
    // inactivity timeout with it, when one is set.
    if (this.socketSlack !== null && (budget > this.budget || (budget === 0 && this.budget > 0))) this.deadlineMoved(p)
    if (this.ticks === null) this.watch(p)
    else if (this.young === null && !this.youngAll) this.firstYoung(p)
    if (this.phase === DrainPhase.Grace) markClose(p.res)
  }

  /** Whether track()'s common case holds: planned deadlines deferred to the tick (none shorter than DEFER_SCHEDULE_MIN_MS), no drain. */
  private updateLean (): void {
    this.lean = this.ticks !== null && this.phase === DrainPhase.None && (this.budget === 0 || this.budget >= DEFER_SCHEDULE_MIN_MS)
  }

  /** The response closed: finished, answered, cut, or the client left. */
  settle (p: Pending): void {
    if (p.done === true) return
    p.done = true
    if (p.list !== null) unschedule(p) // most never were: they end before the tick (track)
    if (this.young === p) this.young = p.inNext
    if (p.qSocket !== null) unlinkQueued(p)
    if (p.inPrev !== null) p.inPrev.inNext = p.inNext
    else this.inHead = p.inNext
    if (p.inNext !== null) p.inNext.inPrev = p.inPrev
    else this.inTail = p.inPrev
    p.inPrev = p.inNext = null
    this.stats.inFlight--
    if (this.controller !== null) this.controller.completed++
    if (p.res.writableFinished !== true && p.cut !== true && !isAnswered(p.res)) {
      const elapsed = performance.now() - p.start
      this.stats.record({ kind: 'client-gone', cause: 'client-gone', statusCode: null, code: null, req: p.req, route: p.route, elapsedMs: elapsed })
      if (p.controller !== null) p.abort(new HG_ERR_CLIENT_GONE(Math.round(elapsed)))
    }
    if (this.inTail === null && this.idle !== null) this.idle()
  }

  /**
   * The socket inactivity timeout is planned as a backstop a margin after the handler budget. A
   * request whose deadline was extended, cleared or excluded moves the backstop with it (only
   * that socket, only until Node resets it for the next request).
   */
  deadlineMoved (p: Pending): void {
    const socket = p.req.socket
    if (this.socketSlack === null || socket === null || socket.destroyed) return
    const needed = p.at === Infinity ? 0 : Math.ceil(p.at - performance.now()) + this.socketSlack
    const current = socket.timeout ?? 0
    if (needed === 0 ? current !== 0 : current !== 0 && current < needed) socket.setTimeout(needed)
  }

  /** Drain phase and times, for health and counters. */
  drainState (): DrainState {
    if (this.run !== null) return this.run.state()
    return { phase: PHASE_NAMES[this.phase]!, startedAt: null, delayMs: this.options.drainDelay, timeoutMs: this.options.drainTimeout }
  }

  /** The requests in flight, oldest first (those whose responses closed since the last tick settled first). */
  get inFlightHead (): Pending | null {
    this.settleClosed()
    return this.head()
  }

  /**
   * The deadline passed. Once: a response the guard already cut (its close not yet seen) is not
   * interrupted again when the same deadline fires a second time (a tick late after a loop block
   * can put an entry the timer just fired back on it).
   */
  expire (entry: DeadlineEntry): void {
    const p = entry as Pending
    if (p.done || p.cut) return
    if (p.res.closed) { // the client left a young request: its settle was due, not an answer
      this.settle(p)
      return
    }
    if (isAnswered(p.res) || p.res.writableEnded) return
    this.interrupt(p, new HG_ERR_DEADLINE(p.budget), 'deadline', this.options.timeoutStatus, !p.req.complete)
  }

  /**
   * Answers for a handler that has not started its response, or destroys a response that has
   * started (counted as a cut). The answer goes out before the handler's signal aborts, so
   * nothing the handler does on abort can race it.
   */
  interrupt (p: Pending, err: HangupGuardError, cause: IncidentCause, statusCode: number, close: boolean): void {
    const elapsed = performance.now() - p.start
    const res = p.res
    let answered = false
    if (!onWire(res)) {
      // writeHead() alone puts nothing on the wire: that head is dropped, the answer replaces it.
      if (res.headersSent) discardStagedHead(res)
      try {
        answered = this.answerer(p, err, { statusCode, close, retryAfter: statusCode === 503 ? this.options.retryAfter : undefined })
      } catch {
        // The answer could not be written (a broken response or reply pipeline): cut, counted below.
      }
    }
    if (answered) {
      this.stats.record({ kind: 'answered', cause, statusCode, code: err.code, req: p.req, route: p.route, elapsedMs: elapsed })
    } else if (!res.writableEnded) {
      p.cut = true
      this.stats.record({ kind: 'cut', cause, statusCode: null, code: err.code, req: p.req, route: p.route, elapsedMs: elapsed })
      res.destroy()
    }
    p.abort(err)
  }

  /**
   * A request listener's promise rejected (node:http door, `catchRejections`). Expected
   * rejections (the guard's own abort reason) are counted; otherwise the client gets a coded 500
   * while nothing is on the wire, a started response is destroyed (cut), a done one counted.
   */
  handlerRejected (req: IncomingMessage, res: ServerResponse, error: unknown): void {
    const p = pendingOf(req)
    const reason = p?.controller?.signal.aborted === true ? p.controller.signal.reason as unknown : undefined
    if (reason !== undefined && (error === reason || (error as { cause?: unknown } | null)?.cause === reason)) {
      this.stats.rejectionsExpected++
      return
    }
    const elapsed = p === undefined ? 0 : performance.now() - p.start
    const route = p?.route ?? null
    // Answered, finished, or gone (the client left: counted as clientGone): nothing to answer.
    if (isAnswered(res) || res.writableFinished || res.destroyed || (res.writableEnded && onWire(res))) {
      this.stats.rejectionsAfterResponse++
      this.reportUnread(error)
      return
    }
    if (!onWire(res)) {
      if (res.headersSent) discardStagedHead(res)
      const failed = new HG_ERR_HANDLER_FAILED()
      let answered = false
      try {
        answered = sendAnswer(req, res, failed, { close: !req.complete })
      } catch {}
      if (answered) {
        this.stats.record({ kind: 'answered', cause: 'handler-error', statusCode: 500, code: failed.code, req, route, elapsedMs: elapsed, error })
        this.reportUnread(error)
        p?.abort(failed)
        return
      }
    }
    if (p !== undefined) p.cut = true
    this.stats.record({ kind: 'cut', cause: 'handler-error', statusCode: null, code: HG_ERR_HANDLER_FAILED.code, req, route, elapsedMs: elapsed, error })
    this.reportUnread(error)
    res.destroy()
  }

  /** An application error nobody reads through incidents still reaches the process's warnings. */
  private reportUnread (error: unknown): void {
    if (this.stats.listened()) return
    const text = error instanceof Error ? `${error.name}: ${error.message}` : show(error)
    process.emitWarning(`hangup-guard: a request listener rejected (${text}); subscribe to incidents for the error itself (docs/api.md#rejected-request-listeners)`, 'HangupGuardWarning')
  }

  /**
   * The server's 'timeout' event: a socket was inactive for `server.timeout` ms (or an idle
   * keep-alive socket reached keepAliveTimeout). Node destroys such a socket silently unless a
   * listener exists; this listener answers a request in flight (504, or 408 while its body is
   * still arriving) and closes idle sockets only after the poll phase has had a chance to read a
   * request that already arrived (nodejs/node#43456).
   */
  socketTimeout (socket: Socket): void {
    const res = (socket as unknown as { _httpMessage?: ServerResponse | null })._httpMessage
    if (res !== undefined && res !== null && !res.writableEnded) {
      if (res.listenerCount('timeout') > 0) return // the application handles its own response timeouts
      const p = (res.req as unknown as Record<symbol, Pending | undefined>)[kPending]
      const bodyArriving = !res.req.complete
      const err = bodyArriving ? new HG_ERR_REQUEST_BODY_TIMEOUT(socket.timeout ?? 0) : new HG_ERR_SOCKET_TIMEOUT(socket.timeout ?? 0)
      const cause: IncidentCause = bodyArriving ? 'body-timeout' : 'socket-timeout'
      if (p !== undefined && !p.done) {
        this.interrupt(p, err, cause, bodyArriving ? 408 : this.options.timeoutStatus, true)
      } else if (!isAnswered(res) && sendAnswer(res.req, res, err, { close: true })) {
        this.stats.record({ kind: 'answered', cause, statusCode: err.statusCode, code: err.code, req: res.req, route: null, elapsedMs: 0 })
      } else {
        this.stats.record({ kind: 'cut', cause: 'socket-timeout', statusCode: null, code: err.code, req: res.req, route: null, elapsedMs: 0 })
        socket.destroy()
      }
      return
    }
    setImmediate(closeIfStillIdle, socket, this, socket.bytesRead)
  }

  /**
   * Node's headersTimeout / requestTimeout fired (its 'clientError' with ERR_HTTP_REQUEST_TIMEOUT,
   * from `checkConnections` in lib/_http_server.js). Node would write a bare 408 and destroy the
   * socket; the guard writes the same, as a coded problem+json body, counts it, and destroys the
   * socket itself, so a later listener (Fastify's clientErrorHandler) finds it destroyed. A
   * response already on the wire cannot be answered: it is cut. Returns false for other errors.
   */
  requestTimedOut (err: NodeJS.ErrnoException, socket: Socket): boolean {
    if (err.code !== 'ERR_HTTP_REQUEST_TIMEOUT') return false
    const res = (socket as unknown as { _httpMessage?: ServerResponse | null })._httpMessage ?? null
    // The request in flight is still receiving its body (requestTimeout), else the next request's
    // headers are late (headersTimeout fires first: it is never longer than requestTimeout).
    const body = res !== null && !res.req.complete
    const answer = body ? new HG_ERR_REQUEST_BODY_TIMEOUT(this.plan.requestTimeout.value) : new HG_ERR_REQUEST_HEADERS_TIMEOUT(this.plan.headersTimeout.value)
    const cause: IncidentCause = body ? 'body-timeout' : 'headers-timeout'
    const p = res === null ? undefined : pendingOf(res.req)
    const elapsed = p === undefined ? 0 : performance.now() - p.start
    if (res !== null && (onWire(res) || isAnswered(res))) {
      if (p !== undefined && !p.done && !isAnswered(res)) {
        p.cut = true
        this.stats.record({ kind: 'cut', cause, statusCode: null, code: answer.code, req: res.req, route: p.route, elapsedMs: elapsed })
      }
    } else {
      if (socket.writable) socket.write(rawAnswer(answer))
      if (res !== null) neutralize(res)
      this.stats.record({ kind: 'answered', cause, statusCode: 408, code: answer.code, req: body ? res.req : null, route: p?.route ?? null, elapsedMs: elapsed })
    }
    p?.abort(answer)
    socket.destroy()
    return true
  }

  /** Which health probe a request is (GET or HEAD on a health path), or null. Probes are never shed and never guarded. */
  healthKind (req: IncomingMessage): HealthKind | null {
    const o = this.options
    if (o.livenessPath === null || this.healthSources === null) return null
    // The path first: its second character settles most requests, then lengths (a method
    // comparison costs a string compare).
    const url = req.url ?? ''
    // In bounds only: charCodeAt past the end ('/') made V8 drop its inline form for a builtin call.
    const c = url.length > 1 ? url.charCodeAt(1) : -1
    if (c !== this.probeChar1 && c !== this.probeChar2 && this.probeShort !== true) return null
    const kind: HealthKind | null = isPath(url, o.livenessPath) ? 'liveness' : isPath(url, o.readinessPath as string) ? 'readiness' : null
    if (kind === null) return null
    const method = req.method
    return method === 'GET' || method === 'HEAD' ? kind : null
  }

  /**
   * What a health endpoint answers now, counted: the whole document with `health.details`, else
   * the public view (status and check names with their status; no figures, no failure texts).
   */
  probe (kind: HealthKind): { statusCode: 200 | 503, contentType: string, body: string } {
    const answer = this.health(kind)
    this.stats.healthChecks++
    return { statusCode: answer.statusCode, contentType: answer.contentType, body: serializeHealth(this.options.healthDetails ? answer.body : publicHealth(answer.body)) }
  }

  /** Counters with the drain phase (docs/api.md#counters). */
  snapshot (): StatsSnapshot {
    this.settleClosed()
    return this.stats.snapshot(this.drainState(), this.controller === null ? null : this.controller.state())
  }
}

/** `url` is `path`, or `path` with a query: lengths first (most request URLs differ in length). */
function isPath (url: string, path: string): boolean {
  const n = path.length
  if (url.length === n) return url === path
  return url.length > n && url.charCodeAt(n) === 63 /* ? */ && url.startsWith(path)
}

function closeIfStillIdle (socket: Socket, guard: Guard, bytesReadAtTimeout: number): void {
  if (socket.destroyed) return
  const res = (socket as unknown as { _httpMessage?: ServerResponse | null })._httpMessage
  // A request arrived during the stall and was read in the poll phase since: keep the socket.
  if ((res !== undefined && res !== null) || socket.bytesRead !== bytesReadAtTimeout) return
  guard.stats.idleClosed++
  socket.destroy()
}
