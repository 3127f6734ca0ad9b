/**
 * hangup-guard: coherent Node.js server timeouts, explicit answers instead of dropped sockets.
 * Nothing under this entry imports Fastify.
 */
export { configureServerTimeouts, type ServerGuard } from './http'
export type { HangupGuardOptions } from './core/bind'
export {
  planTimeouts, EXPLAIN_WIDTH, NODE_DEFAULTS, DEFAULT_HANDLER_TIMEOUT_MS, KEEP_ALIVE_CEILING_MS, PLAN_KEYS,
  type PlanOptions, type TimeoutPlan, type PlanEntry, type PlanSource, type PlanKey, type ExplainOptions, type PlanDescription, type UpstreamSpec, type ResolvedUpstream
} from './core/plan'
export { PRESETS, PRESET_NAMES, type Preset, type PresetName, type UpstreamKind } from './core/presets'
export { deadlineOf, type Deadline } from './core/pending'
export { INCIDENT_CHANNEL, type Incident, type IncidentCause, type IncidentKind, type StatsSnapshot } from './core/stats'
export type { GuardOptions, ExcludeOption, HealthOptions, DrainOptions } from './core/options'
export type { Duration } from './core/duration'
export type { ProblemBody } from './core/answer'
export * as errors from './core/errors'
export type { WatchOptions } from './core/bind'
export type { PressureOptions } from './core/pressure'
export { SHEDDING_CHANNEL, type QueueOptions, type QueueState, type SheddingEvent } from './core/overload'
export type { WatchdogOptions, WatchdogStall } from './core/watchdog'
export type { HealthAnswer, HealthDocument, HealthKind, HealthStatus } from './core/health'
export type { ContainerLimits } from './core/cgroup'
export { readContainerLimits } from './core/cgroup'
export type { DrainResult, DrainState, DrainPhaseName } from './core/drain-state'
