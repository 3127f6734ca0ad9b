import http from 'node:http'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import { expect } from 'tstyche'
import { configureServerTimeouts, planTimeouts, type PlanDescription, type PlanKey } from '../../lib/index'
import { prometheusMetrics, type PrometheusMetrics } from '../../lib/prometheus/index'
import hangupGuard from '../../lib/fastify/index'

const guard = configureServerTimeouts(http.createServer())
expect(prometheusMetrics(guard)).type.toBe<PrometheusMetrics>()
expect(prometheusMetrics([guard, guard], { registry: new Registry(), prefix: 'api_', routeLabel: true, maxRoutes: 20 })).type.toBe<PrometheusMetrics>()
expect(prometheusMetrics(guard).names).type.toBe<readonly string[]>()
expect(prometheusMetrics(guard, { routeLabels: true })).type.toRaiseError()
expect(prometheusMetrics({})).type.toRaiseError()

const app = Fastify()
app.register(hangupGuard)
expect(prometheusMetrics(app.hangupGuard)).type.toBe<PrometheusMetrics>()

const plan = planTimeouts({ upstream: 'aws-alb' })
expect(plan.explain({ width: 80 })).type.toBe<string>()
expect(plan.explain({ columns: 80 })).type.toRaiseError()
expect(plan.describe()).type.toBe<PlanDescription>()
expect(plan.describe().settings).type.toBe<Readonly<Record<PlanKey, string>>>()
