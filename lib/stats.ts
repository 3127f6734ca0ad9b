/**
 * Hang-up accounting: stable counters and the incident feed. Every request that the guard answers
 * for the handler, every response cut after it started and every client that left before its
 * answer is counted here, published on the `hangup-guard:incident` diagnostics channel and passed
 * to the optional `onIncident` callback. Counter names are part of the API (docs/api.md).
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import type { DrainState } from './drain'
import type { QueueState } from './overload'

/** Channel on which every incident is published (subscribe with `diagnostics_channel.subscribe`). */
export const INCIDENT_CHANNEL = 'hangup-guard:incident'
const incidentChannel = diagnosticsChannel.channel(INCIDENT_CHANNEL)

/** Why the guard acted. */
export type IncidentCause =
  | 'deadline' // the handler budget was spent
  | 'socket-timeout' // the connection was inactive for `timeout` ms with a request in flight
  | 'body-timeout' // the request body stopped arriving
  | 'overload' // a hard limit crossed (heap, RSS, healthCheck, or a threshold you set)
  | 'capacity' // a standing queue: the request's estimated queueing delay was above the target
  | 'stall' // the request waited behind an event-loop stall longer than its budget
  | 'draining' // the server is shutting down
  | 'shutdown' // the drain's hard deadline passed
  | 'client-gone' // the client closed the connection before its answer

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
  /** Request target as received (path and query). */
  readonly url: string
  /** Route label when the framework knows it (Fastify's routeOptions.url), else the path. */
  readonly route: string
  /** Milliseconds since the request was admitted. */
  readonly elapsedMs: number
  /** Error code of the answer, e.g. HG_ERR_DEADLINE. */
  readonly code: string | null
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
    readonly overload: number
    readonly capacity: number
    readonly stall: number
    readonly draining: number
    readonly shutdown: number
  }
  /** Responses destroyed after they had started, by cause. */
  readonly cut: { readonly deadline: number, readonly socketTimeout: number, readonly shutdown: number }
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
  answeredOverload = 0
  answeredCapacity = 0
  answeredStall = 0
  answeredDraining = 0
  answeredShutdown = 0
  cutDeadline = 0
  cutSocketTimeout = 0
  cutShutdown = 0
  clientGone = 0
  wastedMs = 0
  idleClosed = 0
  healthChecks = 0
  readonly onIncident: ((incident: Incident) => void) | null

  constructor (onIncident: ((incident: Incident) => void) | null) {
    this.onIncident = onIncident
  }

  /** Counts an incident and reports it. Reporting never throws into the request path. */
  record (kind: IncidentKind, cause: IncidentCause, statusCode: number | null, code: string | null,
    method: string, url: string, route: string, elapsedMs: number): void {
    if (kind === 'answered') {
      switch (cause) {
        case 'deadline': this.answeredDeadline++; break
        case 'socket-timeout': this.answeredSocketTimeout++; break
        case 'body-timeout': this.answeredBodyTimeout++; break
        case 'overload': this.answeredOverload++; break
        case 'capacity': this.answeredCapacity++; break
        case 'stall': this.answeredStall++; break
        case 'draining': this.answeredDraining++; break
        default: this.answeredShutdown++
      }
    } else if (kind === 'cut') {
      if (cause === 'deadline') this.cutDeadline++
      else if (cause === 'socket-timeout' || cause === 'body-timeout') this.cutSocketTimeout++
      else this.cutShutdown++
    } else {
      this.clientGone++
      this.wastedMs += elapsedMs
    }
    if (this.onIncident === null && !incidentChannel.hasSubscribers) return
    const incident: Incident = { kind, cause, statusCode, method, url, route, elapsedMs: Math.round(elapsedMs * 1000) / 1000, code }
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

  /** True when an incident object would be read by someone (build it only then). */
  get observed (): boolean {
    return this.onIncident !== null || incidentChannel.hasSubscribers
  }

  snapshot (drain: DrainState, queue: QueueState | null = null): StatsSnapshot {
    return Object.freeze({
      requests: this.requests,
      inFlight: this.inFlight,
      answered: Object.freeze({
        deadline: this.answeredDeadline,
        socketTimeout: this.answeredSocketTimeout,
        bodyTimeout: this.answeredBodyTimeout,
        overload: this.answeredOverload,
        capacity: this.answeredCapacity,
        stall: this.answeredStall,
        draining: this.answeredDraining,
        shutdown: this.answeredShutdown
      }),
      cut: Object.freeze({ deadline: this.cutDeadline, socketTimeout: this.cutSocketTimeout, shutdown: this.cutShutdown }),
      clientGone: Object.freeze({ count: this.clientGone, wastedMs: Math.round(this.wastedMs) }),
      idleClosed: this.idleClosed,
      healthChecks: this.healthChecks,
      drain,
      queue
    })
  }
}
