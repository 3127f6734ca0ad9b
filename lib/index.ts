/**
 * hangup-guard: coherent Node.js server timeouts, explicit answers instead of dropped sockets.
 * Nothing under this entry imports Fastify.
 */
export { configureServerTimeouts, type ServerGuard } from './http'
export type { HangupGuardOptions } from './bind'
export {
  planTimeouts, NODE_DEFAULTS, DEFAULT_HANDLER_TIMEOUT_MS, KEEP_ALIVE_CEILING_MS, PLAN_KEYS,
  type PlanOptions, type TimeoutPlan, type PlanEntry, type PlanSource, type PlanKey, type UpstreamSpec, type ResolvedUpstream
} from './plan'
export { PRESETS, PRESET_NAMES, type Preset, type PresetName, type UpstreamKind } from './presets'
export { deadlineOf, type Deadline } from './pending'
export { INCIDENT_CHANNEL, type Incident, type IncidentCause, type IncidentKind, type StatsSnapshot } from './stats'
export type { GuardOptions, ExcludeOption, HealthOptions, DrainOptions } from './options'
export type { Duration } from './duration'
export type { ProblemBody } from './answer'
export * as errors from './errors'
export type { WatchOptions } from './bind'
export type { PressureOptions } from './pressure'
export { SHEDDING_CHANNEL, type QueueOptions, type QueueState, type SheddingEvent } from './overload'
export type { WatchdogOptions, WatchdogStall } from './watchdog'
export type { HealthAnswer, HealthDocument, HealthKind, HealthStatus } from './health'
export type { ContainerLimits } from './cgroup'
export { readContainerLimits } from './cgroup'
export type { DrainResult, DrainState, DrainPhaseName } from './drain'
