/**
 * Per-request deadlines on one shared, unref'd native timer armed for the earliest deadline.
 *
 * Why not a setTimeout per request: a timer, a closure and a clearTimeout cost ~470 ns a request
 * (2-3% of a hello world); this costs a list link and unlink. Why not undici's 500 ms fast-timer
 * tick: a 504 promised at 2000 ms must not arrive at 2499 ms. Here a deadline fires late only by
 * event-loop lag plus libuv's ~1 ms granularity.
 *
 * Structure: one doubly-linked list per budget (ms), kept while the timer finds it non-empty. Requests with one budget arrive in deadline
 * order, so inserting at the tail keeps a list sorted in O(1); an extended deadline is inserted by
 * walking back from the tail (rare). Settling unlinks in O(1), so a list holds only requests in
 * flight: nothing accumulates behind a slow request. The timer is armed for the smallest head; it
 * is re-armed only when a new deadline is earlier than the armed one, or when it fires. With one
 * budget and steady traffic that is about one wake-up per budget period.
 *
 * Fire time is compared with performance.now(), not counted in ticks: after a stall, every spent
 * deadline is answered as soon as the loop is back, oldest first across the lists.
 */
import { performance } from 'node:perf_hooks'

/** What a deadline calls when it passes (the guard). */
export interface DeadlineOwner {
  expire (entry: DeadlineEntry): void
}

/** Link fields a scheduled request carries (the guard's Pending). */
export interface DeadlineEntry {
  /** performance.now() at which the budget is spent. */
  readonly at: number
  /** Key of the list it sits in (its budget in ms at the time it was scheduled). */
  budget: number
  prev: DeadlineEntry | null
  next: DeadlineEntry | null
  list: DeadlineList | null
  owner: DeadlineOwner
}

export class DeadlineList {
  head: DeadlineEntry | null = null
  tail: DeadlineEntry | null = null
  constructor (readonly budget: number) {}
}

/** Deadlines closer than this to the firing time are expired together. */
const COALESCE_MS = 1

const lists = new Map<number, DeadlineList>()
/** The list used last (most requests share one budget: no Map lookup for them); always in `lists`. */
let lastList: DeadlineList | null = null
let timer: NodeJS.Timeout | null = null
let armedAt = Infinity

/** Adds an entry whose `at` and `budget` are set. */
export function schedule (e: DeadlineEntry): void {
  let list = lastList
  if (list === null || list.budget !== e.budget) {
    let found = lists.get(e.budget)
    if (found === undefined) {
      found = new DeadlineList(e.budget)
      lists.set(e.budget, found)
    }
    list = lastList = found
  }
  e.list = list
  let after = list.tail
  while (after !== null && after.at > e.at) after = after.prev
  if (after === null) {
    e.prev = null
    e.next = list.head
    if (list.head !== null) list.head.prev = e
    else list.tail = e
    list.head = e
  } else {
    e.prev = after
    e.next = after.next
    if (after.next !== null) after.next.prev = e
    else list.tail = e
    after.next = e
  }
  if (e.at < armedAt) arm(e.at)
}

/** Removes an entry; a no-op when it is not scheduled. The timer is left armed (lazy). */
export function unschedule (e: DeadlineEntry): void {
  const list = e.list
  if (list === null) return
  if (e.prev !== null) e.prev.next = e.next
  else list.head = e.next
  if (e.next !== null) e.next.prev = e.prev
  else list.tail = e.prev
  e.prev = e.next = e.list = null
  // An empty list stays in the map (a Map delete + set per request costs more than the rest of
  // the guard); onTimer drops the lists it finds empty.
}

function arm (at: number): void {
  if (timer !== null) clearTimeout(timer)
  armedAt = at
  timer = setTimeout(onTimer, Math.max(1, Math.ceil(at - performance.now())))
  timer.unref()
}

function onTimer (): void {
  timer = null
  armedAt = Infinity
  const cutoff = performance.now() + COALESCE_MS
  // Each list is in deadline order; after a stall several hold spent deadlines, answered oldest
  // first across them (one list, the common case: already in order, nothing to sort).
  const spent: DeadlineEntry[] = []
  let fromLists = 0
  for (const list of lists.values()) {
    if (list.head === null) {
      lists.delete(list.budget)
      if (lastList === list) lastList = null
      continue
    }
    if (list.head.at > cutoff) continue
    fromLists++
    for (let e: DeadlineEntry | null = list.head; e !== null && e.at <= cutoff; e = e.next) spent.push(e)
  }
  if (fromLists > 1) spent.sort(byDeadline)
  for (const e of spent) {
    // An earlier answer may have settled this one (unscheduled) or moved its deadline.
    if (e.list === null || e.at > cutoff) continue
    unschedule(e)
    try {
      e.owner.expire(e)
    } catch (err) {
      process.emitWarning(`hangup-guard: a deadline could not be answered: ${(err as Error)?.message ?? String(err)}`, 'HangupGuardWarning')
    }
  }
  let next = Infinity
  for (const list of lists.values()) {
    const head = list.head
    if (head !== null && head.at < next) next = head.at
  }
  if (next !== Infinity && next < armedAt) arm(next)
}

function byDeadline (a: DeadlineEntry, b: DeadlineEntry): number {
  return a.at - b.at
}

/** For tests and the bench: how many deadlines are scheduled, and whether the timer is armed. */
export function deadlineSchedulerState (): { scheduled: number, lists: number, armed: boolean } {
  let scheduled = 0
  for (const list of lists.values()) for (let e = list.head; e !== null; e = e.next) scheduled++
  return { scheduled, lists: lists.size, armed: timer !== null }
}
