/**
 * The request guard, framework-independent: admission (stall backlog, pressure, drain), one
 * deadline per request, the socket-inactivity answer, and the accounting. It knows node:http
 * objects and nothing of Fastify; adapters (http.ts, fastify.ts) decide how an answer is sent.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import {
  type HangupGuardError, HG_ERR_DEADLINE, HG_ERR_SOCKET_TIMEOUT, HG_ERR_REQUEST_BODY_TIMEOUT,
  HG_ERR_OVERLOADED, HG_ERR_STALLED, HG_ERR_DRAINING, HG_ERR_CLIENT_GONE
} from './errors'
import { type AnswerOptions, isAnswered, sendAnswer } from './answer'
import { Pending, type PendingOwner, pendingOf } from './pending'
import { schedule, unschedule, type DeadlineEntry } from './deadline'
import { Stats, type IncidentCause, type StatsSnapshot } from './stats'
import type { ResolvedGuardOptions } from './options'
import type { TimeoutPlan } from './plan'
import { kPending } from './symbols'
import { type HealthAnswer, type HealthKind, serializeHealth } from './health'
import type { DrainRun, DrainState } from './drain'
import { QueueController } from './overload'

/** Reads of the event-loop sampler the guard needs on its hot path. */
export interface StallSource {
  /** Length of the stall a request admitted at `now` (performance.now()) waited behind, else 0. */
  backlogStallMs (now: number): number
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
}

/** Drain phases, in order. */
export const DrainPhase = Object.freeze({ None: 0, Grace: 1, Closing: 2, Closed: 3 } as const)
export type DrainPhaseValue = typeof DrainPhase[keyof typeof DrainPhase]

const rawAnswer: Answerer = (p, err, opts) => sendAnswer(p.req, p.res, err, opts)

function onResponseClose (this: ServerResponse): void {
  const p = (this.req as unknown as Record<symbol, Pending | undefined>)[kPending]
  if (p !== undefined) p.owner.settle(p)
}

export class Guard implements PendingOwner {
  readonly stats: Stats
  stall: StallSource | null = null
  pressure: PressureSource | null = null
  /** The queueing-delay controller (lib/overload.ts), set by bind.ts; null: off. */
  queue: QueueController | null = null
  /** The one refusal the controller's verdict returns (no allocation per refusal). */
  queueRefusal: Refusal | null = null
  answerer: Answerer = rawAnswer
  drainPhase: DrainPhaseValue = DrainPhase.None
  /** performance.now() when the server started listening (bind.ts keeps it current). */
  listeningAt = performance.now()
  /** Head of the in-flight list (arrival order). */
  private inHead: Pending | null = null
  private inTail: Pending | null = null
  readonly budget: number
  /** How long after a deadline the socket inactivity backstop (`server.timeout`) fires; null: off. */
  private readonly socketSlack: number | null

  constructor (readonly plan: TimeoutPlan, readonly options: ResolvedGuardOptions) {
    this.stats = new Stats(options.onIncident)
    this.budget = plan.handlerTimeout.value
    this.socketSlack = plan.timeout.value > 0 && plan.handlerTimeout.value > 0 ? plan.timeout.value - plan.handlerTimeout.value : null
  }

  /** Budget for a request: the handler budget, shortened by an upstream deadline header. 0: none. */
  budgetFor (req: IncomingMessage, routeBudget: number = this.budget): number {
    const o = this.options
    if (routeBudget === 0 || (o.exclude !== null && o.exclude(req))) return 0
    if (o.deadlineHeader !== null) {
      const raw = req.headers[o.deadlineHeader]
      if (typeof raw === 'string' && raw.length > 0 && raw.length <= 10 && /^\d+$/.test(raw)) {
        const left = Number(raw) - o.deadlineMargin
        if (left < routeBudget) return left < 1 ? 1 : left
      }
    }
    return routeBudget
  }

  /** Whether to refuse a request before any handler work, and how. null: admit. */
  verdict (budget: number, now: number, socket: Socket | null = null): Refusal | null {
    if (this.drainPhase >= DrainPhase.Closing) return { error: new HG_ERR_DRAINING(), cause: 'draining', close: true }
    if (this.stall !== null && budget > 0) {
      let stalled = this.stall.backlogStallMs(now)
      // A request cannot have waited since before the server listened (startup work is no backlog).
      if (stalled > now - this.listeningAt) stalled = now - this.listeningAt
      if (stalled >= budget) return { error: new HG_ERR_STALLED(Math.round(stalled)), cause: 'stall', close: false }
    }
    if (this.pressure !== null && this.pressure.reason !== null) {
      return { error: new HG_ERR_OVERLOADED(this.pressure.reason), cause: 'overload', close: false }
    }
    if (this.queue !== null && this.queue.shouldShed(now, this.stats.inFlight, QueueController.firstOn(socket))) return this.queueRefusal
    return null
  }

  /**
   * A client that already closed its side before its handler would run: no handler, no answer
   * (counted under clientGone). True when the adapter must drop the request.
   */
  clientLeft (req: IncomingMessage): boolean {
    const socket = req.socket
    if (socket === null || !(socket.readableEnded || socket.destroyed)) return false
    this.stats.requests++
    this.stats.record('client-gone', 'client-gone', null, null, req.method ?? '', req.url ?? '', pathOf(req.url), 0)
    socket.destroy()
    return true
  }

  /** Counts and reports a refusal answered by an adapter (the request counts as seen, once). */
  recordRefusal (req: IncomingMessage, refusal: Refusal, statusCode: number, route: string | null): void {
    if (pendingOf(req) === undefined) this.stats.requests++
    if (refusal.cause === 'capacity' && !this.stats.observed) { this.stats.answeredCapacity++; return } // no incident to build
    this.stats.record('answered', refusal.cause, statusCode, refusal.error.code, req.method ?? '', req.url ?? '', route ?? pathOf(req.url), 0)
  }

  /** Admits a request: links it in flight and arms its deadline (budget 0: none). */
  track (req: IncomingMessage, res: ServerResponse, budget: number, now: number, ctx: unknown): Pending {
    const p = new Pending(req, res, this, now, budget, ctx);
    (req as unknown as Record<symbol, Pending>)[kPending] = p
    this.stats.requests++
    this.stats.inFlight++
    if (this.inTail === null) this.inHead = p
    else {
      this.inTail.inNext = p
      p.inPrev = this.inTail
    }
    this.inTail = p
    if (budget > 0) schedule(p)
    // A budget beyond the planned one (a route's), or none (excluded), moves this socket's
    // inactivity timeout with it, when one is set.
    if (this.socketSlack !== null && (budget > this.budget || (budget === 0 && this.budget > 0))) this.deadlineMoved(p)
    res.on('close', onResponseClose)
    if (this.drainPhase === DrainPhase.Grace) res.shouldKeepAlive = false
    return p
  }

  /** The response closed: finished, answered, cut, or the client left. */
  settle (p: Pending): void {
    if (p.done) return
    p.done = true
    unschedule(p)
    if (p.inPrev !== null) p.inPrev.inNext = p.inNext
    else this.inHead = p.inNext
    if (p.inNext !== null) p.inNext.inPrev = p.inPrev
    else this.inTail = p.inPrev
    p.inPrev = p.inNext = null
    this.stats.inFlight--
    if (this.queue !== null) this.queue.completed++
    if (!p.res.writableFinished && !p.cut && !isAnswered(p.res)) {
      const elapsed = performance.now() - p.start
      this.stats.record('client-gone', 'client-gone', null, null, p.req.method ?? '', p.req.url ?? '', p.route ?? pathOf(p.req.url), elapsed)
      if (p.controller !== null) p.abort(new HG_ERR_CLIENT_GONE(Math.round(elapsed)))
    }
    if (this.inHead === null && this.onIdle !== null) this.onIdle()
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

  /** Called when the last in-flight request settles (the drain waits on it). */
  onIdle: (() => void) | null = null

  /** The drain started on this guard (lib/drain.ts): every drain() returns its promise. */
  drainRun: DrainRun | null = null

  /** Drain phase and times, for health and counters. */
  drainState (): DrainState {
    if (this.drainRun !== null) return this.drainRun.state()
    const phase = (['serving', 'grace', 'closing', 'closed'] as const)[this.drainPhase]
    return { phase, startedAt: null, delayMs: this.options.drainDelay, timeoutMs: this.options.drainTimeout }
  }

  get inFlightHead (): Pending | null { return this.inHead }

  /** The deadline passed. */
  expire (entry: DeadlineEntry): void {
    const p = entry as Pending
    if (p.done || isAnswered(p.res) || p.res.writableEnded) return
    this.interrupt(p, new HG_ERR_DEADLINE(p.budget), 'deadline', this.options.timeoutStatus, !p.req.complete)
  }

  /**
   * Answers for a handler that has not started its response, or destroys a response that has
   * started (counted as a cut). The answer goes out before the handler's signal aborts, so
   * nothing the handler does on abort can race it.
   */
  interrupt (p: Pending, err: HangupGuardError, cause: IncidentCause, statusCode: number, close: boolean): void {
    const elapsed = performance.now() - p.start
    const route = p.route ?? pathOf(p.req.url)
    if (!p.res.headersSent && this.answerer(p, err, { statusCode, close, retryAfter: statusCode === 503 ? this.options.retryAfter : undefined })) {
      this.stats.record('answered', cause, statusCode, err.code, p.req.method ?? '', p.req.url ?? '', route, elapsed)
    } else if (!p.res.writableEnded) {
      p.cut = true
      this.stats.record('cut', cause, null, err.code, p.req.method ?? '', p.req.url ?? '', route, elapsed)
      p.res.destroy()
    }
    p.abort(err)
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
      } else if (!res.headersSent && !isAnswered(res) && sendAnswer(res.req, res, err, { close: true })) {
        this.stats.record('answered', cause, err.statusCode, err.code, res.req.method ?? '', res.req.url ?? '', pathOf(res.req.url), 0)
      } else {
        this.stats.record('cut', 'socket-timeout', null, err.code, res.req.method ?? '', res.req.url ?? '', pathOf(res.req.url), 0)
        socket.destroy()
      }
      return
    }
    setImmediate(closeIfStillIdle, socket, this, socket.bytesRead)
  }

  /** Builds a health answer (set by bind.ts from the sampler, pressure and watchdog). */
  healthOf: ((kind: HealthKind) => HealthAnswer) | null = null

  /** Which health probe a request is, or null. Probes are never shed and never guarded. */
  healthKind (req: IncomingMessage): HealthKind | null {
    const o = this.options
    if (o.livenessPath === null || this.healthOf === null) return null
    const url = req.url ?? ''
    if (url === o.livenessPath || (url.startsWith(o.livenessPath) && url[o.livenessPath.length] === '?')) return 'liveness'
    if (url === o.readinessPath || (url.startsWith(o.readinessPath as string) && url[(o.readinessPath as string).length] === '?')) return 'readiness'
    return null
  }

  /** Answers a health probe on a raw response (plain http). */
  serveHealthRaw (req: IncomingMessage, res: ServerResponse, kind: HealthKind): void {
    const answer = (this.healthOf as (kind: HealthKind) => HealthAnswer)(kind)
    const body = serializeHealth(answer.body)
    this.stats.healthChecks++
    res.writeHead(answer.statusCode, { 'content-type': answer.contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' })
    res.end(req.method === 'HEAD' ? undefined : body)
  }

  /** Counters with the drain phase (docs/api.md#counters). */
  snapshot (): StatsSnapshot {
    return this.stats.snapshot(this.drainState(), this.queue === null ? null : this.queue.state())
  }

  /** Refuses a request with an explicit answer on a raw response (plain http). */
  refuseRaw (req: IncomingMessage, res: ServerResponse, refusal: Refusal): void {
    if (refusal === this.queueRefusal && this.drainPhase === DrainPhase.None && this.queue !== null && this.queue.sendRaw(req, res)) {
      this.recordRefusal(req, refusal, 503, null)
      return
    }
    const status = refusal.error.statusCode
    sendAnswer(req, res, refusal.error, { retryAfter: this.options.retryAfter, close: refusal.close || this.drainPhase !== DrainPhase.None })
    this.recordRefusal(req, refusal, status, null)
  }
}

function closeIfStillIdle (socket: Socket, guard: Guard, bytesReadAtTimeout: number): void {
  if (socket.destroyed) return
  const res = (socket as unknown as { _httpMessage?: ServerResponse | null })._httpMessage
  // A request arrived during the stall and was read in the poll phase since: keep the socket.
  if ((res !== undefined && res !== null) || socket.bytesRead !== bytesReadAtTimeout) return
  guard.stats.idleClosed++
  socket.destroy()
}

export function pathOf (url: string | undefined): string {
  if (url === undefined) return ''
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}
