/**
 * Hang-up accounting: stable counters and the incident feed. Every request that the guard answers
 * for the handler, every response cut after it started and every client that left before its
 * answer is counted here, published on the `hangup-guard:incident` diagnostics channel and passed
 * to the optional `onIncident` callback. Counter names are part of the API (docs/api.md).
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import type { IncomingMessage } from 'node:http'
import type { DrainState } from './drain-state'
import type { QueueState } from './overload'

/** Channel on which every incident is published (subscribe with `diagnostics_channel.subscribe`). */
export const INCIDENT_CHANNEL = 'hangup-guard:incident'
const incidentChannel = diagnosticsChannel.channel(INCIDENT_CHANNEL)

/** Why the guard acted. */
export type IncidentCause =
  | 'deadline' // the handler budget was spent
  | 'socket-timeout' // the connection was inactive for `timeout` ms with a request in flight
  | 'body-timeout' // the request body stopped arriving (requestTimeout, or the socket timeout while it arrived)
  | 'headers-timeout' // the request headers did not arrive within headersTimeout
  | 'overload' // a hard limit crossed (heap, RSS, healthCheck, or a threshold you set)
  | 'capacity' // a standing queue: the request's estimated queueing delay was above the target
  | 'stall' // the request waited behind an event-loop stall longer than its budget
  | 'draining' // the server is shutting down
  | 'shutdown' // the drain's hard deadline passed
  | 'client-gone' // the client closed the connection before its answer
  | 'handler-error' // the request listener's promise rejected (node:http door)

/**
 * - 'answered': the guard sent an explicit error answer (504/503/408) instead of a dropped socket;
 * - 'cut': a response that had already started had to be destroyed (the client sees a truncated response);
 * - 'client-gone': the client left before its answer; the work done for it was wasted.
 */
export type IncidentKind = 'answered' | 'cut' | 'client-gone'

export interface Incident {
  readonly kind: IncidentKind
  readonly cause: IncidentCause
  /** Status sent, for 'answered'. */
  readonly statusCode: number | null
  readonly method: string
  /**
   * The request's path, at most URL_MAX_CHARS (256) characters (longer ones end in '…'). The query
   * string is left out (reset tokens, OAuth codes) unless the `incidentQuery` option is on; then
   * path and query, at most 2048 characters.
   */
  readonly url: string
  /** Route label when the framework knows it (Fastify's routeOptions.url), else the path (capped as `url`). */
  readonly route: string
  /** Milliseconds since the request was admitted. */
  readonly elapsedMs: number
  /** Error code of the answer, e.g. HG_ERR_DEADLINE. */
  readonly code: string | null
  /**
   * For operators, never sent to the client: why the guard acted when the code alone does not say
   * (the failing pressure check, e.g. `healthCheck failed: …`); else null.
   */
  readonly detail: string | null
  /** cause 'handler-error': the value the request listener's promise rejected with. */
  readonly error?: unknown
}

/** What the guard records of an incident (Stats.record); the Incident listeners get is built from it. */
export interface IncidentRecord {
  readonly kind: IncidentKind
  readonly cause: IncidentCause
  readonly statusCode: number | null
  readonly code: string | null
  /** The request, when there is one (a late header has none yet). */
  readonly req: IncomingMessage | null
  /** The framework's route label, else null (the capped path is used). */
  readonly route: string | null
  readonly elapsedMs: number
  readonly detail?: string | null
  readonly error?: unknown
}

/** Longest `url` / `route` an incident carries without `incidentQuery` (characters). */
export const URL_MAX_CHARS = 256
/** Longest `url` with `incidentQuery` (characters). */
export const URL_WITH_QUERY_MAX_CHARS = 2048

/** The request target as an incident shows it: the path (or, opted in, path and query), capped. */
export function incidentUrl (url: string | undefined, withQuery: boolean): string {
  if (url === undefined) return ''
  let out = url
  let max = URL_WITH_QUERY_MAX_CHARS
  if (!withQuery) {
    const q = url.indexOf('?')
    if (q !== -1) out = url.slice(0, q)
    max = URL_MAX_CHARS
  }
  return out.length > max ? out.slice(0, max - 1) + '…' : out
}

export interface StatsSnapshot {
  /** Requests seen by the guard (health probes excluded). */
  readonly requests: number
  /** Requests admitted and not yet answered. */
  readonly inFlight: number
  /** Explicit answers the guard sent instead of a dropped socket, by cause. */
  readonly answered: {
    readonly deadline: number
    readonly socketTimeout: number
    readonly bodyTimeout: number
    /** 408 answers to requests whose headers did not arrive within headersTimeout (HG_ERR_REQUEST_HEADERS_TIMEOUT). */
    readonly headersTimeout: number
    readonly overload: number
    readonly capacity: number
    readonly stall: number
    readonly draining: number
    readonly shutdown: number
    /** 500 for a request listener whose promise rejected before the response started (node:http door). */
    readonly handlerError: number
  }
  /** Responses destroyed after they had started, by cause. */
  readonly cut: { readonly deadline: number, readonly socketTimeout: number, readonly shutdown: number, readonly handlerError: number }
  /**
   * Rejected request-listener promises that needed no answer (node:http door): `expected`, the
   * rejection carried the guard's own abort reason (its deadline answer, the client gone, the
   * drain deadline); `afterResponse`, the response had already been sent.
   */
  readonly handlerRejections: { readonly expected: number, readonly afterResponse: number }
  /** Clients that left before their answer, and the handler time spent for them. */
  readonly clientGone: { readonly count: number, readonly wastedMs: number }
  /** Idle keep-alive connections the guard closed. */
  readonly idleClosed: number
  /** Health probe requests answered. */
  readonly healthChecks: number
  /** Drain phase ('serving' until a drain starts) and its times. */
  readonly drain: DrainState
  /** The queueing-delay controller (docs/overload.md); null with `pressure: false` or `queueTarget: false`. */
  readonly queue: QueueState | null
}

/** Mutable counters behind a guard; `snapshot()` gives the frozen, documented shape. */
export class Stats {
  requests = 0
  inFlight = 0
  answeredDeadline = 0
  answeredSocketTimeout = 0
  answeredBodyTimeout = 0
  answeredHeadersTimeout = 0
  answeredOverload = 0
  answeredCapacity = 0
  answeredStall = 0
  answeredDraining = 0
  answeredShutdown = 0
  answeredHandlerError = 0
  cutDeadline = 0
  cutSocketTimeout = 0
  cutShutdown = 0
  cutHandlerError = 0
  rejectionsExpected = 0
  rejectionsAfterResponse = 0
  clientGone = 0
  wastedMs = 0
  idleClosed = 0
  healthChecks = 0
  readonly onIncident: ((incident: Incident) => void) | null

  constructor (onIncident: ((incident: Incident) => void) | null, readonly incidentQuery = false) {
    this.onIncident = onIncident
  }

  /** Someone reads incidents (an onIncident callback, or a subscriber of the channel). */
  listened (): boolean {
    return this.onIncident !== null || incidentChannel.hasSubscribers
  }

  /**
   * Counts an incident and reports it to whoever listens (the Incident they get is built only
   * then). Reporting never throws into the request path.
   */
  record (r: IncidentRecord): void {
    this.count(r.kind, r.cause, r.elapsedMs)
    if (this.onIncident === null && !incidentChannel.hasSubscribers) return
    const url = incidentUrl(r.req?.url, this.incidentQuery)
    const incident: Incident = {
      kind: r.kind,
      cause: r.cause,
      statusCode: r.statusCode,
      method: r.req?.method ?? '',
      url,
      route: r.route ?? (this.incidentQuery ? incidentUrl(r.req?.url, false) : url),
      elapsedMs: Math.round(r.elapsedMs * 1000) / 1000,
      code: r.code,
      detail: r.detail ?? null
    }
    if (r.error !== undefined) (incident as { error?: unknown }).error = r.error
    if (incidentChannel.hasSubscribers) incidentChannel.publish(incident)
    if (this.onIncident !== null) {
      try {
        this.onIncident(incident)
      } catch (err) {
        // A throwing observer must not turn an answer into a crash; surface it where it cannot be missed.
        process.emitWarning(`hangup-guard: onIncident threw: ${(err as Error)?.message ?? String(err)}`, 'HangupGuardWarning')
      }
    }
  }

  /** The counters of an incident, without reporting it (for callers that checked listened()). */
  count (kind: IncidentKind, cause: IncidentCause, elapsedMs: number): void {
    if (kind === 'answered') {
      switch (cause) {
        case 'deadline': this.answeredDeadline++; break
        case 'socket-timeout': this.answeredSocketTimeout++; break
        case 'body-timeout': this.answeredBodyTimeout++; break
        case 'headers-timeout': this.answeredHeadersTimeout++; break
        case 'overload': this.answeredOverload++; break
        case 'capacity': this.answeredCapacity++; break
        case 'stall': this.answeredStall++; break
        case 'draining': this.answeredDraining++; break
        case 'handler-error': this.answeredHandlerError++; break
        default: this.answeredShutdown++
      }
    } else if (kind === 'cut') {
      if (cause === 'deadline') this.cutDeadline++
      else if (cause === 'socket-timeout' || cause === 'body-timeout' || cause === 'headers-timeout') this.cutSocketTimeout++
      else if (cause === 'handler-error') this.cutHandlerError++
      else this.cutShutdown++
    } else {
      this.clientGone++
      this.wastedMs += elapsedMs
    }
  }

  snapshot (drain: DrainState, queue: QueueState | null = null): StatsSnapshot {
    return Object.freeze({
      requests: this.requests,
      inFlight: this.inFlight,
      answered: Object.freeze({
        deadline: this.answeredDeadline,
        socketTimeout: this.answeredSocketTimeout,
        bodyTimeout: this.answeredBodyTimeout,
        headersTimeout: this.answeredHeadersTimeout,
        overload: this.answeredOverload,
        capacity: this.answeredCapacity,
        stall: this.answeredStall,
        draining: this.answeredDraining,
        shutdown: this.answeredShutdown,
        handlerError: this.answeredHandlerError
      }),
      cut: Object.freeze({ deadline: this.cutDeadline, socketTimeout: this.cutSocketTimeout, shutdown: this.cutShutdown, handlerError: this.cutHandlerError }),
      handlerRejections: Object.freeze({ expected: this.rejectionsExpected, afterResponse: this.rejectionsAfterResponse }),
      clientGone: Object.freeze({ count: this.clientGone, wastedMs: Math.round(this.wastedMs) }),
      idleClosed: this.idleClosed,
      healthChecks: this.healthChecks,
      drain,
      queue
    })
  }
}
