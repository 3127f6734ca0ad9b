/**
 * The core's liveness and readiness documents as Fastify routes (GET, and HEAD through Fastify's
 * exposeHeadRoutes). A probe is not admitted, not given a deadline, not counted in `requests`
 * (it counts in `healthChecks`), and not shed by under-pressure: a liveness probe refused under
 * load would get the pod restarted.
 */
import type { FastifyContextConfig, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { type Binding, bindingOf } from '../core/bind'
import type { HealthKind } from '../core/health'
import type { RouteRecord } from './options'
import { kRoute } from '../core/symbols'

export const HEALTH_RECORD: RouteRecord = Object.freeze({ budget: 0, source: 'health', ownErrorHandler: false })

/** A route-level under-pressure pressureHandler that lets the probe through (returning nothing means next()). */
function letProbeThrough (): void {}

function answer (kind: HealthKind, request: FastifyRequest, reply: FastifyReply): string {
  const binding = bindingOf(request.server.server) as Binding
  const health = binding.guard.probe(kind)
  reply.code(health.statusCode).header('cache-control', 'no-store').type(health.contentType)
  return health.body
}

async function liveness (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): Promise<string> {
  return answer('liveness', request, reply)
}

async function readiness (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): Promise<string> {
  return answer('readiness', request, reply)
}

/**
 * Declares the health routes on `app` (the paths get the prefix of the context the plugin is
 * registered in). Returns the URLs, for explain(); none with `health: false`.
 */
export function registerHealthRoutes (app: FastifyInstance, binding: Binding): string[] {
  const { livenessPath, readinessPath } = binding.guard.options
  if (livenessPath === null || readinessPath === null) return []
  const config = { [kRoute]: HEALTH_RECORD, pressureHandler: letProbeThrough } as unknown as FastifyContextConfig
  app.get(livenessPath, { config }, liveness)
  app.get(readinessPath, { config }, readiness)
  return [app.prefix + livenessPath, app.prefix + readinessPath]
}
