/**
 * The drain's shared vocabulary: phases, the state health and counters report, the result a drain
 * resolves to. A leaf module (it imports nothing), so the guard, the drain and the counters can all
 * use it without importing each other.
 */

/** Drain phases, in order. */
export const DrainPhase = Object.freeze({ None: 0, Grace: 1, Closing: 2, Closed: 3 } as const)
export type DrainPhaseValue = typeof DrainPhase[keyof typeof DrainPhase]

export type DrainPhaseName = 'serving' | 'grace' | 'closing' | 'closed'
export const PHASE_NAMES: readonly DrainPhaseName[] = ['serving', 'grace', 'closing', 'closed']

/** What health and counters report of the drain. */
export interface DrainState {
  readonly phase: DrainPhaseName
  /** Epoch milliseconds at which the drain started; null while serving. */
  readonly startedAt: number | null
  /** How long new requests are served after the start (the configured value while serving). */
  readonly delayMs: number
  /** Hard deadline, from the start, delay included (the configured value while serving). */
  readonly timeoutMs: number
}

/** What a drain promise resolves to. */
export interface DrainResult {
  /** Milliseconds from the start of the drain to the server's 'close'. */
  readonly durationMs: number
  /** The hard deadline passed (or force() was called) with requests still in flight. */
  readonly timedOut: boolean
  /** force() was called (a second signal) before the server closed. */
  readonly forced: boolean
  /** Requests that arrived during the drain (admitted or refused; health probes excluded). */
  readonly requests: number
  /** Requests answered 503 HG_ERR_DRAINING because they arrived on an open connection after the listener closed. */
  readonly refused: number
  /** Handlers answered 503 HG_ERR_SHUTDOWN at the hard deadline. */
  readonly answeredAtDeadline: number
  /** Responses destroyed after they had started (cut, cause 'shutdown'). */
  readonly cut: number
  /** Connections still open when the drain stopped waiting (sockets handed over on 'upgrade', such as WebSockets, are not the http server's to close); 0 when the server closed. */
  readonly openConnections: number
}

/** What the guard sees of the drain under way (lib/core/drain.ts DrainRun). */
export interface DrainRunView {
  readonly promise: Promise<DrainResult>
  state (): DrainState
  force (): void
}

/** Why readiness fails while the server drains (the health document's `server:draining` output), else null. */
export function drainingReason (s: DrainState): string | null {
  if (s.phase === 'serving') return null
  const since = s.startedAt === null ? '' : ` since ${new Date(s.startedAt).toISOString()}`
  return `draining (${s.phase})${since}: delay ${s.delayMs} ms, hard deadline ${s.timeoutMs} ms`
}
