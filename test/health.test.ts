import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  buildHealth, HEALTH_CONTENT_TYPE, LIVENESS_STALL_MS, LIVENESS_WINDOW_MS, serializeHealth, type HealthSources
} from '../lib/core/health'
import { createPressure, type PressureOptions } from '../lib/core/pressure'
import { acquireSampler, type Stall } from '../lib/core/sampler'
import type { Watchdog } from '../lib/core/watchdog'
import { fakeSampler, LIMITED, type FakeSampler } from './fixtures/fake-sampler'

function sources (sampler: FakeSampler, options: PressureOptions = {}, extra: Partial<HealthSources> = {}): HealthSources {
  const pressure = createPressure(sampler, options)
  t.teardown(() => pressure.close())
  return { pressure, sampler, ...extra }
}

function stallEndingAgo (agoMs: number, durationMs: number): Stall {
  const endedAt = performance.now() - agoMs
  return { startedAt: endedAt - durationMs, endedAt, durationMs, startedAtEpochMs: Date.now() - agoMs - durationMs }
}

function fakeWatchdog (stalledForMs: number, running = true, error: Error | null = null): Watchdog {
  return { running, error, stalls: [], stalled: stalledForMs > 0, stalledForMs: () => stalledForMs, ready: async () => {}, release: () => {} }
}

t.test('by default readiness judges only hard limits: no event-loop delay or throttling check (shedding at capacity never fails it)', async t => {
  const sampler = fakeSampler(LIMITED)
  const src = sources(sampler)
  sampler.emit({ eventLoopDelayP99Ms: 5000, throttledRatio: 0.9 })
  const { statusCode, body } = buildHealth('readiness', src)
  t.equal(statusCode, 200)
  t.same(Object.keys(body.checks), ['memory:heapUsed', 'memory:rss', 'server:draining'])
})

t.test('readiness passes with every reading well under its limit, in the health+json shape', async t => {
  const sampler = fakeSampler(LIMITED)
  // The delay and throttling checks are hard limits you set (off by default since issue 9).
  const src = sources(sampler, { maxEventLoopDelay: 1000, maxThrottledRatio: 0.5 }, { plan: { keepAliveTimeout: 65000 }, stats: () => ({ answered504: 0 }) })
  sampler.emit()
  const { statusCode, contentType, body } = buildHealth('readiness', src)
  t.equal(statusCode, 200)
  t.equal(contentType, HEALTH_CONTENT_TYPE)
  t.equal(body.status, 'pass')
  t.same(Object.keys(body.checks), ['eventLoop:delay', 'memory:heapUsed', 'memory:rss', 'cpu:throttling', 'server:draining'])
  t.match(body.checks['eventLoop:delay']![0], { observedValue: 5, observedUnit: 'ms', status: 'pass', limit: 1000, limitSource: 'option' })
  t.match(body.checks['eventLoop:delay']![0]!.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  t.same(body.container, {
    cgroup: 'v2', cpuLimitCores: 0.5, cpuLimitSource: '/sys/fs/cgroup/cpu.max', memoryLimitBytes: 512 * 1048576, memoryLimitSource: '/sys/fs/cgroup/memory.max'
  })
  t.same(body.plan, { keepAliveTimeout: 65000 })
  t.same(body.stats, { answered504: 0 })
  t.equal(body.output, undefined)
})

t.test('readiness warns (still 200) above 80% of a limit, and before the first reading', async t => {
  const sampler = fakeSampler()
  const src = sources(sampler, { maxEventLoopDelay: 1000 })
  const early = buildHealth('readiness', src)
  t.equal(early.statusCode, 200)
  t.equal(early.body.status, 'warn')
  t.equal(early.body.checks['eventLoop:delay']![0]!.output, 'no reading yet')
  sampler.emit({ eventLoopDelayP99Ms: 850 })
  const near = buildHealth('readiness', src)
  t.equal(near.statusCode, 200)
  t.equal(near.body.status, 'warn')
  t.match(near.body.checks['eventLoop:delay']![0], { status: 'warn', output: 'above 80% of the limit' })
})

t.test('readiness fails (503) while under pressure, with the reason as output', async t => {
  const sampler = fakeSampler()
  const src = sources(sampler, { maxEventLoopDelay: 1000, healthCheck: () => false })
  await sleep(0)
  sampler.emit({ eventLoopDelayP99Ms: 1500 })
  const { statusCode, body } = buildHealth('readiness', src)
  t.equal(statusCode, 503)
  t.equal(body.status, 'fail')
  t.equal(body.output, 'eventLoopDelay 1500 ms > 1000 ms; healthCheck returned false')
  t.same(body.checks['application:healthCheck'], [{ observedValue: false, observedUnit: 'boolean', status: 'fail', time: body.checks['application:healthCheck']![0]!.time, output: 'healthCheck returned false' }])
})

t.test('readiness fails while draining; liveness does not', async t => {
  const sampler = fakeSampler()
  const src = sources(sampler, {}, { draining: () => 'draining since SIGTERM' })
  sampler.emit()
  const ready = buildHealth('readiness', src)
  t.equal(ready.statusCode, 503)
  t.match(ready.body.checks['server:draining'], [{ observedValue: true, status: 'fail', output: 'draining since SIGTERM' }])
  t.equal(buildHealth('liveness', src).statusCode, 200)
})

t.test('liveness passes for a busy but progressing loop, under pressure or not', async t => {
  const sampler = fakeSampler()
  const src = sources(sampler)
  sampler.emit({ eventLoopDelayP99Ms: 900, eventLoopUtilization: 1 })
  const { statusCode, body } = buildHealth('liveness', src)
  t.equal(statusCode, 200)
  t.equal(body.status, 'pass')
  t.same(Object.keys(body.checks), ['eventLoop:stall', 'eventLoop:stalledRatio'])
  t.equal(body.container, undefined, 'readiness-only details')
  sampler.emit({ eventLoopDelayP99Ms: 5000 })
  t.equal(buildHealth('liveness', src).statusCode, 200, 'pressure is for readiness')
})

t.test('liveness fails after a stall of 5 s or more, warns after a shorter one', async t => {
  const sampler = fakeSampler()
  const src = sources(sampler)
  sampler.backlogMs = 300
  const short = buildHealth('liveness', src)
  t.equal(short.statusCode, 200)
  t.match(short.body.checks['eventLoop:stall'], [{ observedValue: 300, status: 'warn', output: 'answered after a 300 ms stall' }])
  sampler.backlogMs = LIVENESS_STALL_MS + 1
  const long = buildHealth('liveness', src)
  t.equal(long.statusCode, 503)
  t.equal(long.body.output, `the event loop was stalled ${LIVENESS_STALL_MS + 1} ms (>= ${LIVENESS_STALL_MS} ms)`)
  t.equal(buildHealth('liveness', { ...src, livenessStallMs: 10_000 }).statusCode, 200, 'threshold configurable')
})

t.test('liveness fails on the watchdog\'s ongoing stall, and warns when the watchdog is down', async t => {
  const sampler = fakeSampler()
  const stuck = buildHealth('liveness', sources(sampler, {}, { watchdog: fakeWatchdog(7000) }))
  t.equal(stuck.statusCode, 503)
  t.match(stuck.body.checks['eventLoop:stall'], [{ observedValue: 7000, status: 'fail' }])
  const down = buildHealth('liveness', sources(sampler, {}, { watchdog: fakeWatchdog(0, false, new Error('worker crashed')) }))
  t.equal(down.statusCode, 200)
  t.match(down.body.checks['eventLoop:watchdog'], [{ status: 'warn', output: 'watchdog not running: worker crashed' }])
})

t.test('liveness fails when stalls took half of the last minute (recurring, each under 5 s)', async t => {
  const sampler = fakeSampler()
  const src = sources(sampler)
  sampler.stalls.push(stallEndingAgo(LIVENESS_WINDOW_MS + 10_000, 4000)) // out of the window
  for (let i = 0; i < 7; i++) sampler.stalls.push(stallEndingAgo(50_000 - i * 7000, 3000)) // 21 s
  const some = buildHealth('liveness', src)
  t.equal(some.statusCode, 200)
  t.match(some.body.checks['eventLoop:stalledRatio'], [{ observedValue: 0.35, status: 'pass' }])
  sampler.stalls.push(stallEndingAgo(1000, 4000), stallEndingAgo(100, 800)) // 25.8 s: warn from 40%
  t.match(buildHealth('liveness', src).body.checks['eventLoop:stalledRatio'], [{ observedValue: 0.43, status: 'warn' }])
  sampler.stalls.push(stallEndingAgo(10, 5000)) // 30.8 s: fail from 50%
  const most = buildHealth('liveness', src)
  t.equal(most.statusCode, 503)
  t.match(most.body.output, /^stalled 5\d% of the last 60 s$/)
})

t.test('a stall straddling the window start counts only inside the window', async t => {
  const sampler = fakeSampler()
  sampler.stalls.push(stallEndingAgo(LIVENESS_WINDOW_MS - 31_000, 40_000)) // 31 s of its 40 s inside
  const [ratio] = buildHealth('liveness', sources(sampler)).body.checks['eventLoop:stalledRatio']!
  t.equal(ratio!.status, 'fail')
  t.ok((ratio!.observedValue as number) > 0.5 && (ratio!.observedValue as number) <= 0.517, `${ratio!.observedValue}, not 40/60`)
})

t.test('serializeHealth: readable JSON (2-space indent, trailing newline)', async t => {
  const sampler = fakeSampler()
  const { body } = buildHealth('liveness', sources(sampler))
  const text = serializeHealth(body)
  t.match(text, /^\{\n {2}"status": "pass",\n/)
  t.ok(text.endsWith('}\n'))
  t.same(JSON.parse(text), JSON.parse(JSON.stringify(body)))
})

t.test('with the real sampler: a probe answered right after a 300 ms block says so', async t => {
  const sampler = acquireSampler()
  const pressure = createPressure(sampler)
  t.teardown(() => {
    pressure.close()
    sampler.release()
  })
  await sleep(50)
  const end = performance.now() + 300
  while (performance.now() < end) { /* block */ }
  const { statusCode, body } = buildHealth('liveness', { pressure, sampler })
  t.equal(statusCode, 200)
  const [stall] = body.checks['eventLoop:stall']!
  // Tolerance: from the last on-time tick (<= 20 ms before the block) to now, plus machine load.
  t.ok(stall!.status === 'warn' && (stall!.observedValue as number) >= 300 && (stall!.observedValue as number) < 450, `observed ${stall!.observedValue} ms`)
})
