/**
 * Composition with @fastify/under-pressure: it samples and decides, hangup-guard answers. Its
 * `pressureHandler` (global when hangup-guard registers it, per route through
 * `config.pressureHandler` when you did) answers 503 HG_ERR_OVERLOADED with the same body and
 * Retry-After as every other 503 of the guard, counted in the guard's stats.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import underPressure, { type FastifyUnderPressureOptions } from '@fastify/under-pressure'
import { type Binding, bindingOf } from '../core/bind'
import { SAMPLE_INTERVAL_MS } from '../core/sampler'
import { HG_ERR_OVERLOADED } from '../core/errors'
import type { Refusal } from '../core/guard'
import type { ResolvedUnderPressure, RouteConfigSlots } from './options'
import { answerPayload } from './answer'

/** fastify-plugin name of @fastify/under-pressure (what `app.hasPlugin()` looks for). */
export const UNDER_PRESSURE_NAME = '@fastify/under-pressure'

function describe (type: string, value: number | undefined): string {
  if (value === undefined) return type
  // under-pressure turns a window without readings (NaN) into Infinity: pressure, fail closed.
  if (!Number.isFinite(value)) return `${type} unreadable`
  switch (type) {
    case underPressure.TYPE_EVENT_LOOP_DELAY: return `${type} ${Math.round(value)} ms`
    case underPressure.TYPE_HEAP_USED_BYTES:
    case underPressure.TYPE_RSS_BYTES: return `${type} ${Math.round(value / 1048576)} MiB`
    default: return `${type} ${Math.round(value * 1000) / 1000}`
  }
}

/**
 * under-pressure's pressureHandler. It returns the payload, so under-pressure sends it and stops
 * the hook chain (a handler that sent and returned nothing would let the request go on).
 */
export function onPressure (request: FastifyRequest, reply: FastifyReply, type: string, value: number | undefined): string | Error {
  const binding = bindingOf(request.server.server)
  // The health check hangup-guard feeds is the core's verdict: name the core's reason.
  // The reason goes to incidents only: a health check's error text is not for clients.
  const coreReason = type === underPressure.TYPE_HEALTH_CHECK ? binding?.pressure.reason ?? null : null
  const err = new HG_ERR_OVERLOADED()
  if (binding === undefined) return answerPayload(reply, err, {})
  const guard = binding.guard
  // Not yet counted when under-pressure's onRequest hook ran before hangup-guard's.
  const refusal: Refusal = { error: err, cause: 'overload', close: false, detail: coreReason ?? describe(type, value) }
  guard.recordRefusal(request.raw, reply.raw, refusal, err.statusCode, (request.routeOptions.config as RouteConfigSlots).url ?? null)
  return answerPayload(reply, err, { retryAfter: guard.options.retryAfter })
}

/**
 * Registers @fastify/under-pressure on `app` with the given thresholds and hangup-guard's answers.
 * Its healthCheck is fed with the core's hard limits only (heap, RSS, healthCheck, thresholds the
 * user set: `pressure.reason`), never the queueing-delay controller, whose shedding is per request
 * in the core (an on/off switch is what it replaces). And your healthCheck, if any, so
 * `app.isUnderPressure()` reports what the guard judges: one set of thresholds, the core's
 * `pressure` option, plus whatever under-pressure thresholds you add.
 */
export async function registerUnderPressure (app: FastifyInstance, options: ResolvedUnderPressure, binding: Binding): Promise<void> {
  const own = options.healthCheck
  const healthCheck = async (instance: FastifyInstance): Promise<boolean | Record<string, unknown>> => {
    if (binding.pressure.reason !== null) return false
    return own === undefined ? true : await own(instance)
  }
  // Declared as returning void; under-pressure sends what a pressureHandler returns.
  const pressureHandler = onPressure as unknown as FastifyUnderPressureOptions['pressureHandler']
  await app.register(underPressure, { ...options, healthCheck, healthCheckInterval: options.healthCheckInterval ?? SAMPLE_INTERVAL_MS, pressureHandler })
}
