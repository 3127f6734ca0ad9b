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
  at: number
  budget: number
  prev: DeadlineEntry | null = null
  next: DeadlineEntry | null = null
  list: DeadlineList | null = null
  /** In-flight list of the owning guard. */
  inPrev: Pending | null = null
  inNext: Pending | null = null
  /** List of the responses queued (pipelined) on one socket, while it is watched (guard.ts watchQueued). */
  qPrev: Pending | null = null
  qNext: Pending | null = null
  qSocket: Socket | null = null
  /** Settled: answered, finished or gone. */
  done = false
  /** The guard destroyed this response after it had started (already counted). */
  cut = false
  controller: AbortController | null = null
  /** Adapter context (the Fastify reply); null for plain http. */
  ctx: unknown
  /** Route label for incidents, when the adapter knows one. */
  route: string | null = null

  constructor (
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly owner: PendingOwner,
    readonly start: number,
    budget: number,
    ctx: unknown
  ) {
    this.budget = budget
    this.at = budget > 0 ? start + budget : Infinity
    this.ctx = ctx
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
    this.at += ms
    this.budget += ms
    schedule(this)
    this.owner.deadlineMoved(this)
  }

  clear (): void {
    if (this.at === Infinity) return
    unschedule(this)
    this.at = Infinity
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
