/**
 * The off-main-thread stall watchdog: a worker thread that watches the heartbeat the sampler tick
 * writes into shared memory, so a stall is seen WHILE it lasts (the main thread cannot see its
 * own stall until it is over). One worker per process, shared through acquireWatchdog()/release().
 */
import { Worker } from 'node:worker_threads'
import { toMs, type Duration } from './duration'
import { HG_ERR_OPT_TYPE } from './errors'
import { acquireSampler, STALL_THRESHOLD_MS, TICK_MS, type Sampler } from './sampler'

/** Heartbeat age at which the worker calls it a stall (ms): the sampler's own rule, 120 ms. */
export const WATCHDOG_THRESHOLD_MS = TICK_MS + STALL_THRESHOLD_MS
/** How often the worker looks at the heartbeat (ms); the error it adds to a stall's length. */
export const WATCHDOG_CHECK_MS = 10
const MAX_STALLS = 20

// Int32 slots: a spare one to Atomics.wait on (never notified: a sleep that needs no event loop),
// the "stalled now" flag, and the stderr threshold. BigInt64 slots hold process.hrtime.bigint()
// values (monotonic, the same clock in every thread): the heartbeat, the start of the stall the
// worker sees, and the last gap between two beats the main thread wrote (from, to). The worker
// ends a stall with that gap: on a loaded machine it may wake several beats late.
const I_WAIT = 0
const I_STALLED = 1
const I_LOG_AFTER_MS = 2
const B_HEARTBEAT = 0
const B_STALL_START = 1
const B_GAP_FROM = 2
const B_GAP_TO = 3
const THRESHOLD_NS = BigInt(WATCHDOG_THRESHOLD_MS) * 1_000_000n

// Plain JS evaluated in the worker, so it runs the same from the TypeScript sources and from dist.
// It writes to fd 2 directly: a worker's process.stderr is forwarded through the stalled main thread.
const WORKER_SOURCE = `'use strict'
const { workerData, parentPort } = require('node:worker_threads')
const { writeSync } = require('node:fs')
const { ints, beats } = workerData
const thresholdNs = BigInt(workerData.thresholdMs) * 1000000n
let start = 0n
let logged = false
for (;;) {
  Atomics.wait(ints, ${I_WAIT}, 0, workerData.checkMs)
  const beat = Atomics.load(beats, ${B_HEARTBEAT})
  const now = process.hrtime.bigint()
  if (start === 0n) {
    if (now - beat <= thresholdNs) continue
    start = beat
    logged = false
    Atomics.store(beats, ${B_STALL_START}, start)
    Atomics.store(ints, ${I_STALLED}, 1)
  } else if (beat !== start) {
    const end = Atomics.load(beats, ${B_GAP_FROM}) === start ? Atomics.load(beats, ${B_GAP_TO}) : beat
    Atomics.store(ints, ${I_STALLED}, 0)
    Atomics.store(beats, ${B_STALL_START}, 0n)
    parentPort.postMessage({ startedAt: Date.now() - Number(now - start) / 1e6, durationMs: Number(end - start) / 1e6 })
    start = 0n
  } else if (!logged) {
    const logAfterMs = Atomics.load(ints, ${I_LOG_AFTER_MS})
    if (logAfterMs > 0 && now - start >= BigInt(logAfterMs) * 1000000n) {
      logged = true
      const line = 'hangup-guard: the event loop of process ' + process.pid + ' has been stalled for ' +
        Math.round(Number(now - start) / 1e6) + ' ms (still blocked)\\n'
      try { writeSync(2, line) } catch {} // EAGAIN on a full pipe: losing the line beats losing the watchdog
    }
  }
}
`

/** A stall as measured by the watchdog, from the last heartbeat before it to the first after. */
export interface WatchdogStall {
  /** Wall-clock epoch milliseconds of the last heartbeat before the stall. */
  readonly startedAt: number
  readonly durationMs: number
}

export interface WatchdogOptions {
  /**
   * Write one line to stderr, from the worker and while the stall still lasts, once the main
   * thread has been stalled this long (ms, or '2s'). With several users, the shortest wins.
   * @default false (never)
   */
  logAfter?: Duration | false
  /** Called on the main thread after each stall (within ~20 ms of its end). @default null */
  onStall?: ((stall: WatchdogStall) => void) | null
}

export interface Watchdog {
  /** The worker is up (false after release, or if the worker failed: see `error`). */
  readonly running: boolean
  readonly error: Error | null
  /** The last 20 stalls the worker reported, oldest first (shared by all users). */
  readonly stalls: readonly WatchdogStall[]
  /** The worker sees a stall right now (shared flag; useful to liveness). */
  readonly stalled: boolean
  /** How long the ongoing stall has lasted (ms) as seen by the worker; 0 when there is none. */
  stalledForMs (): number
  /** Resolves once the worker runs (it checks from then on). */
  ready (): Promise<void>
  /** Call once per acquireWatchdog(); the last release terminates the worker. */
  release (): void
}

interface Core {
  readonly worker: Worker
  readonly online: Promise<void>
  readonly ints: Int32Array
  readonly beats: BigInt64Array
  readonly sampler: Sampler
  readonly leases: Set<Lease>
  readonly stalls: WatchdogStall[]
  running: boolean
  error: Error | null
}

let core: Core | null = null

class Lease implements Watchdog {
  released = false
  constructor (readonly core: Core, readonly logAfterMs: number, readonly onStall: ((stall: WatchdogStall) => void) | null) {}
  get running (): boolean { return !this.released && this.core.running }
  get error (): Error | null { return this.core.error }
  get stalls (): readonly WatchdogStall[] { return this.core.stalls }
  get stalled (): boolean { return this.running && Atomics.load(this.core.ints, I_STALLED) === 1 }

  stalledForMs (): number {
    const start = Atomics.load(this.core.beats, B_STALL_START)
    if (start === 0n || !this.stalled) return 0
    return Number(process.hrtime.bigint() - start) / 1e6
  }

  ready (): Promise<void> { return this.core.online }

  release (): void {
    if (this.released) return
    this.released = true
    const c = this.core
    c.leases.delete(this)
    if (c.leases.size > 0) return updateLogAfter(c)
    c.running = false
    c.sampler.setHeartbeat(null)
    c.sampler.release()
    c.worker.terminate().catch((err: Error) => { c.error = err })
    if (core === c) core = null
  }
}

function updateLogAfter (c: Core): void {
  let ms = 0
  for (const lease of c.leases) if (lease.logAfterMs > 0 && (ms === 0 || lease.logAfterMs < ms)) ms = lease.logAfterMs
  Atomics.store(c.ints, I_LOG_AFTER_MS, ms)
}

/** Called by the sampler tick. The gap slots are written before the beat the worker waits for. */
function beat (): void {
  if (core === null) return
  const beats = core.beats
  const now = process.hrtime.bigint()
  const previous = Atomics.load(beats, B_HEARTBEAT)
  if (now - previous > THRESHOLD_NS) {
    Atomics.store(beats, B_GAP_FROM, previous)
    Atomics.store(beats, B_GAP_TO, now)
  }
  Atomics.store(beats, B_HEARTBEAT, now)
}

function onWorkerMessage (stall: WatchdogStall): void {
  const c = core
  if (c === null) return
  c.stalls.push(stall)
  if (c.stalls.length > MAX_STALLS) c.stalls.shift()
  for (const lease of c.leases) {
    if (lease.onStall === null) continue
    try {
      lease.onStall(stall)
    } catch (err) {
      // An observer that throws must not crash the process it watches.
      process.emitWarning(`hangup-guard: onStall threw: ${(err as Error)?.message ?? String(err)}`, 'HangupGuardWarning')
    }
  }
}

function start (): Core {
  const ints = new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT))
  const beats = new BigInt64Array(new SharedArrayBuffer(4 * BigInt64Array.BYTES_PER_ELEMENT))
  beats[B_HEARTBEAT] = process.hrtime.bigint()
  const sampler = acquireSampler()
  sampler.setHeartbeat(beat)
  // execArgv: [] keeps the parent's loaders (--import, --require) out of a thread that needs none.
  const worker = new Worker(WORKER_SOURCE, {
    eval: true, execArgv: [], workerData: { ints, beats, thresholdMs: WATCHDOG_THRESHOLD_MS, checkMs: WATCHDOG_CHECK_MS }
  })
  const c: Core = { worker, online: new Promise(resolve => worker.once('online', resolve)), ints, beats, sampler, leases: new Set(), stalls: [], running: true, error: null }
  worker.on('message', onWorkerMessage)
  worker.on('error', (err: Error) => { c.error = err; c.running = false })
  worker.on('exit', () => { c.running = false })
  worker.unref()
  return c
}

/** Checks watchdog options without starting the worker (the resolver runs it first). */
export function checkWatchdogOptions (options: WatchdogOptions): WatchdogOptions {
  const logAfter = options.logAfter ?? false
  if (logAfter !== false) toMs('logAfter', logAfter)
  const onStall = options.onStall ?? null
  if (onStall !== null && typeof onStall !== 'function') throw new HG_ERR_OPT_TYPE('onStall', onStall, 'a function')
  return options
}

/**
 * Whether these options give the worker something to do: a stderr line (`logAfter`) or a callback
 * (`onStall`). Without either it would only repeat what the sampler sees once the stall is over,
 * and a worker thread in the process made every request of a guarded hello world cost about 600
 * more instructions (callgrind, Node 20: `npm run bench -- --only=cost`): no thread then.
 */
export function watchdogHasWork (options: WatchdogOptions): boolean {
  return (options.logAfter !== undefined && options.logAfter !== false) || (options.onStall !== undefined && options.onStall !== null)
}

/** Joins the process-wide watchdog (and the sampler it needs), starting it if needed. */
export function acquireWatchdog (options: WatchdogOptions = {}): Watchdog {
  const logAfter = options.logAfter ?? false
  const logAfterMs = logAfter === false ? 0 : toMs('logAfter', logAfter)
  const onStall = options.onStall ?? null
  if (onStall !== null && typeof onStall !== 'function') throw new HG_ERR_OPT_TYPE('onStall', onStall, 'a function')
  core ??= start()
  const lease = new Lease(core, logAfterMs, onStall)
  core.leases.add(lease)
  updateLogAfter(core)
  return lease
}
