import http from 'node:http'
import { expect } from 'tstyche'
import {
  configureServerTimeouts, planTimeouts, deadlineOf, errors,
  type ServerGuard, type TimeoutPlan, type PlanEntry, type Deadline, type StatsSnapshot, type Incident, type PresetName, type QueueState
} from '../../lib/index'

const server = http.createServer()

expect(configureServerTimeouts(server)).type.toBe<ServerGuard>()
expect(configureServerTimeouts(server, { upstream: 'aws-alb', handlerTimeout: '30s' }).plan).type.toBe<TimeoutPlan>()
expect(configureServerTimeouts(server, { upstream: { kind: 'l4', idleTimeout: 350_000 } }).stats()).type.toBe<StatsSnapshot>()
expect(configureServerTimeouts(server, { onIncident: (i) => { expect(i).type.toBe<Incident>() } })).type.toBe<ServerGuard>()
expect(configureServerTimeouts(server, { exclude: ['/sse/*', /^\/ws/] })).type.toBe<ServerGuard>()
expect(configureServerTimeouts(server, { pressure: { queueTarget: '100ms', queueInterval: 200 } })).type.toBe<ServerGuard>()
expect(configureServerTimeouts(server, { pressure: { queueTarget: false } })).type.toBe<ServerGuard>()
expect(configureServerTimeouts(server, { pressure: { queueTarget: true } })).type.toRaiseError()
expect(configureServerTimeouts(server).stats().queue).type.toBe<QueueState | null>()
expect(configureServerTimeouts(server).stats().answered.capacity).type.toBe<number>()
expect(configureServerTimeouts(server, { exclude: (req) => req.url === '/x' })).type.toBe<ServerGuard>()

expect(configureServerTimeouts(server, { upstream: 'aws-albb' })).type.toRaiseError()
expect(configureServerTimeouts(server, { upstream: { kind: 'l7', idleTimeout: 1 } })).type.toRaiseError()
expect(configureServerTimeouts(server, { handlerTimeout: true })).type.toRaiseError()
expect(configureServerTimeouts(server, { timeoutStatus: 500 })).type.toRaiseError()
expect(configureServerTimeouts(server, { handlerTimout: 5 })).type.toRaiseError()

const plan = planTimeouts({ upstream: 'nginx' })
expect(plan.keepAliveTimeout).type.toBe<PlanEntry>()
expect(plan.keepAliveTimeout.value).type.toBe<number>()
expect(plan.keepAliveTimeout.source).type.toBe<'derived' | 'explicit' | 'default'>()
expect(plan.advice).type.toBe<readonly string[]>()
expect(plan.explain()).type.toBe<string>()
expect(plan).type.not.toHaveProperty('keepalive')

http.createServer((req, res) => {
  const d = deadlineOf(req)
  expect(d).type.toBe<Deadline | null>()
  if (d !== null) {
    expect(d.signal).type.toBe<AbortSignal>()
    expect(d.remaining()).type.toBe<number>()
    expect(d.extend(100)).type.toBe<void>()
    expect(d.extend('1s')).type.toBe<void>()
    expect(d.extend(true)).type.toRaiseError()
  }
  res.end()
})

expect<PresetName>().type.toBeAssignableFrom<'aws-alb'>()
expect(new errors.HG_ERR_DEADLINE(5).code).type.toBe<string>()

// Issue 10: what the guard exposes, and rejected listeners
expect(configureServerTimeouts(server, { incidentQuery: true, catchRejections: false, health: { details: true } })).type.toBe<ServerGuard>()
expect(configureServerTimeouts(server, { health: { details: 'yes' } })).type.toRaiseError()
expect(configureServerTimeouts(server, { catchRejections: 1 })).type.toRaiseError()
configureServerTimeouts(server, {
  onIncident: (i) => {
    expect(i.detail).type.toBe<string | null>()
    expect(i.error).type.toBe<unknown>()
    expect(i.cause).type.toBeAssignableFrom<'handler-error'>()
  }
})
const snapshot = configureServerTimeouts(server).stats()
expect(snapshot.answered.handlerError).type.toBe<number>()
expect(snapshot.cut.handlerError).type.toBe<number>()
expect(snapshot.handlerRejections).type.toBe<{ readonly expected: number, readonly afterResponse: number }>()
expect(new errors.HG_ERR_OVERLOADED().statusCode).type.toBe<number>()
expect(new errors.HG_ERR_HANDLER_FAILED().code).type.toBe<string>()
