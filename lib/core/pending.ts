/**
 * One admitted request: its deadline entry, its place in the guard's in-flight list, and the
 * handler-facing `Deadline` API (`deadlineOf(req)`), all in one monomorphic object, so a request
 * costs one allocation. The AbortController is created only when a handler asks for `signal`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { type DeadlineEntry, type DeadlineList, type DeadlineOwner, schedule, unschedule } from './deadline'
import { type Duration, toMs } from './duration'
import { kPending } from './symbols'

/** What a handler sees of its deadline. */
export interface Deadline {
  /** Aborts when the budget is spent or the client goes away (reason: a coded error). */
  readonly signal: AbortSignal
  /** Epoch milliseconds at which the budget is spent; Infinity once cleared. */
  readonly deadline: number
  /** Milliseconds left (0 when spent, Infinity once cleared). */
  remaining (): number
  /** Gives the handler more time: milliseconds, or a duration string ('5s'). */
  extend (ms: Duration): void
  /** Takes this request out of the deadline (streaming responses: SSE, long-poll). */
  clear (): void
}

/** The guard side of a Pending (answers, accounting). */
export interface PendingOwner extends DeadlineOwner {
  settle (p: Pending): void
  /** The handler moved its deadline (extend/clear): the socket's inactivity backstop must follow. */
  deadlineMoved (p: Pending): void
}

export class Pending implements DeadlineEntry, Deadline {
  // Fields are declared, and set in the constructor in this order: no separate field-initializer
  // function for the JIT to call (or to spend its inlining budget on) on every admission.
  declare readonly req: IncomingMessage
  declare readonly res: ServerResponse
  declare readonly owner: PendingOwner
  declare readonly start: number
  /** Milliseconds from `start` to the deadline; 0: none (no budget, or cleared). */
  declare budget: number
  declare prev: DeadlineEntry | null
  declare next: DeadlineEntry | null
  declare list: DeadlineList | null
  /** In-flight list of the owning guard. */
  declare inPrev: Pending | null
  declare inNext: Pending | null
  /** List of the responses queued (pipelined) on one socket, while it is watched (guard.ts watchQueued). */
  declare qPrev: Pending | null
  declare qNext: Pending | null
  declare qSocket: Socket | null
  /** Settled: answered, finished or gone. */
  declare done: boolean
  /** The guard destroyed this response after it had started (already counted). */
  declare cut: boolean
  declare controller: AbortController | null
  /** Adapter context (the Fastify reply); null for plain http. */
  declare ctx: unknown
  /** Route label for incidents, when the adapter knows one. */
  declare route: string | null

  constructor (req: IncomingMessage, res: ServerResponse, owner: PendingOwner, start: number, budget: number, ctx: unknown, route: string | null) {
    this.req = req
    this.res = res
    this.owner = owner
    this.start = start
    this.budget = budget > 0 ? budget : 0
    this.prev = null
    this.next = null
    this.list = null
    this.inPrev = null
    this.inNext = null
    this.qPrev = null
    this.qNext = null
    this.qSocket = null
    this.done = false
    this.cut = false
    this.controller = null
    this.ctx = ctx
    this.route = route
  }

  /**
   * performance.now() at which the budget is spent; Infinity: none. A getter, not a field: a
   * number field that is no small integer holds a box of its own, allocated with each Pending
   * (~35 instructions per request for this one).
   */
  get at (): number {
    return this.budget > 0 ? this.start + this.budget : Infinity
  }

  get signal (): AbortSignal {
    if (this.controller === null) this.controller = new AbortController()
    return this.controller.signal
  }

  get deadline (): number {
    return this.at === Infinity ? Infinity : performance.timeOrigin + this.at
  }

  remaining (): number {
    if (this.at === Infinity) return Infinity
    return Math.max(0, this.at - performance.now())
  }

  extend (duration: Duration): void {
    const ms = toMs('extend()', duration)
    if (this.done || this.at === Infinity) return
    unschedule(this)
    this.budget += ms
    schedule(this)
    this.owner.deadlineMoved(this)
  }

  clear (): void {
    if (this.at === Infinity) return
    unschedule(this)
    this.budget = 0
    if (!this.done) this.owner.deadlineMoved(this)
  }

  abort (reason: Error): void {
    if (this.controller !== null && !this.controller.signal.aborted) this.controller.abort(reason)
  }
}

/** The deadline of a request admitted by a guard, or null (not guarded, or a health probe). */
export function deadlineOf (req: IncomingMessage): Deadline | null {
  return (req as unknown as Record<symbol, Pending | undefined>)[kPending] ?? null
}

export function pendingOf (req: IncomingMessage): Pending | undefined {
  return (req as unknown as Record<symbol, Pending | undefined>)[kPending]
}
