/**
 * The controller's calm window (issue 12): requests admitted in it skip the estimate, so the
 * window must never admit one that the full verdict would shed, nor skip a change of state. Twin
 * controllers see the same arrivals, one judging every request in full, the other as the guard
 * does (admitCalm inside the window, refreshCalm after each full verdict, tick() every TICK_MS):
 * their verdicts and their states must be the same, in calm traffic, an async overload, loop
 * stalls and a standing accept queue. Then, through both doors, calm traffic skips the estimate.
 */
import t from 'tap'
import http from 'node:http'
import Fastify from 'fastify'
import { QueueController, type LoopClock } from '../../lib/core/overload'
import type { AcceptQueueReader } from '../../lib/core/accept-queue'
import { AsyncWait, ASYNC_WINDOW_MS } from '../../lib/core/async-wait'
import { TICK_MS, STALL_THRESHOLD_MS } from '../../lib/core/sampler'
import { bindingOf } from '../../lib/core/bind'
import { configureServerTimeouts } from '../../lib/http'
import hangupGuard from '../../lib/fastify'
import { listen, closeServer } from '../helpers/net'

interface Clock { lastTickAt: number, lastTickGapMs: number, stalls: Array<{ startedAt: number, endedAt: number }> }

/** An accept queue whose depth follows `depthAt(now)`. */
function acceptQueue (depthAt: () => number | null): AcceptQueueReader {
  return { reads: 0, costMs: 0, depth: depthAt }
}

interface Scenario {
  /** Arrivals per ms at time t (ms from 0). */
  rate: (t: number) => number
  /** Dependency: slots x service ms (FIFO); the in-process queue. */
  slots: number
  serviceMs: number
  /** Loop blocked over [from, to): no tick, no admission; admissions resume before the late tick. */
  blocks?: Array<[number, number]>
  /** New connections per ms (accept-queue estimate), and the queue depth a read finds at t. */
  acceptsPerMs?: number
  depthAt?: (t: number) => number | null
  ms: number
  /** Share of the requests the window must have admitted without the estimate (it is exercised). */
  calmShare: number
}

/** Runs one scenario on a controller; `gate`: judge as the guard does (calm window), else always in full. */
function run (s: Scenario, gate: boolean): { verdicts: boolean[], q: QueueController, calm: number } {
  const q = new QueueController(250, 100, 5, new AsyncWait())
  const clock: Clock = { lastTickAt: 0, lastTickGapMs: TICK_MS, stalls: [] }
  q.loop = clock as LoopClock
  let now = 0
  if (s.depthAt !== undefined) {
    const depthAt = s.depthAt
    q.acceptQueue = acceptQueue(() => depthAt(now))
  }
  let seed = 4242
  const random = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed + 1) / 4294967297 }
  const free = new Array<number>(s.slots).fill(0)
  const ends: number[] = []
  let done = 0
  const verdicts: boolean[] = []
  let calm = 0
  let nextTick = TICK_MS
  let owedAccepts = 0
  for (now = 0; now < s.ms; now += 0.5) {
    if (s.blocks?.some(([from, to]) => now >= from && now < to) === true) continue
    while (done < ends.length && (ends[done] as number) <= now) { done++; q.completed++ }
    owedAccepts += (s.acceptsPerMs ?? 0) * 0.5
    for (; owedAccepts >= 1; owedAccepts--) q.onConnection()
    // Arrivals first: after a block, requests are read before the overdue tick runs.
    for (let k = 0; k < 4; k++) {
      if (random() >= s.rate(now) / 8) continue
      const inFlight = ends.length - done
      let shed: boolean
      if (gate && now < q.calmUntil && inFlight < q.calmInFlight) {
        q.admitCalm(inFlight)
        calm++
        shed = false
      } else {
        shed = q.shouldShed(now, inFlight)
        if (gate) q.refreshCalm()
      }
      verdicts.push(shed)
      if (shed) continue
      let slot = 0
      for (let i = 1; i < s.slots; i++) if ((free[i] as number) < (free[slot] as number)) slot = i
      const start = Math.max(now, free[slot] as number)
      free[slot] = start + s.serviceMs
      ends.push(start + s.serviceMs)
    }
    if (now >= nextTick) {
      const gap = now - clock.lastTickAt
      if (gap > TICK_MS + STALL_THRESHOLD_MS) {
        clock.stalls.push({ startedAt: clock.lastTickAt, endedAt: now })
      }
      clock.lastTickAt = now
      clock.lastTickGapMs = gap
      nextTick = now + TICK_MS
      // Both twins tick: the in-process window rolls there (AsyncWait.tick), as in the guard.
      q.tick(ends.length - done)
    }
  }
  return { verdicts, q, calm }
}

/** The state a full verdict reads and writes (the reported estimates aside). */
function state (q: QueueController): Record<string, unknown> {
  const w = q.inProcess
  return {
    shedding: q.shedding,
    shed: q.shed,
    judged: q.judged,
    firstAboveAt: q.firstAboveAt,
    depth: q.depth,
    rate: w.rate,
    minLatencyMs: w.minLatencyMs,
    targetMs: w.targetMs
  }
}

const SCENARIOS: Record<string, Scenario> = {
  // A handler of 2 ms: no in-process estimate (baseline under ASYNC_MIN_BASELINE_MS), as a hello world.
  'calm traffic (0.5 req/ms, 2 ms handlers)': { rate: () => 0.5, slots: 40, serviceMs: 2, ms: 6000, calmShare: 0.9 },
  // The in-process target is half the baseline: with a 20 ms dependency, in-flight swings often
  // reach it, and then every request is judged in full for an interval.
  'an async overload: 3x a 10-slot, 20 ms dependency from 2 s to 4 s': { rate: (t) => (t >= 2000 && t < 4000 ? 1.5 : 0.2), slots: 10, serviceMs: 20, ms: 6000, calmShare: 0.01 },
  'a 20 ms dependency with room (0.2 req/ms, 40 slots)': { rate: () => 0.2, slots: 40, serviceMs: 20, ms: 6000, calmShare: 0.05 },
  'loop stalls of 300 ms and 1.2 s under steady traffic': { rate: () => 0.3, slots: 40, serviceMs: 5, blocks: [[1500, 1800], [3000, 4200]], ms: 6000, calmShare: 0.5 },
  'new connections with a standing accept queue from 2 s to 3 s': {
    rate: () => 0.4,
    slots: 40,
    serviceMs: 2,
    acceptsPerMs: 0.2,
    depthAt: (t) => (t >= 2000 && t < 3000 ? 300 : 0),
    ms: 5000,
    calmShare: 0.5
  }
}

for (const [name, scenario] of Object.entries(SCENARIOS)) {
  t.test(`calm window, ${name}: the same verdicts and state as judging every request in full`, async (t) => {
    const full = run(scenario, false)
    const gated = run(scenario, true)
    t.equal(gated.verdicts.length, full.verdicts.length)
    const first = gated.verdicts.findIndex((v, i) => v !== full.verdicts[i])
    t.equal(first, -1, first === -1 ? 'every verdict the same' : `request ${first} differs: ${String(full.verdicts[first])} in full, ${String(gated.verdicts[first])} gated`)
    t.same(state(gated.q), state(full.q), 'the same controller state')
    t.ok(gated.calm > gated.verdicts.length * scenario.calmShare, `the window admitted ${gated.calm} of ${gated.verdicts.length} without the estimate`)
  })
}

t.test('the overload scenarios do shed (the comparison above is not between two idle controllers)', async (t) => {
  t.ok(run(SCENARIOS['an async overload: 3x a 10-slot, 20 ms dependency from 2 s to 4 s'] as Scenario, true).q.shed > 100)
  t.ok(run(SCENARIOS['new connections with a standing accept queue from 2 s to 3 s'] as Scenario, true).q.shed > 100)
})

/** Counts the controller's full estimates while `requests` keep-alive requests go through a door. */
async function fullEstimates (port: number, q: QueueController, requests: number): Promise<number> {
  let n = 0
  const estimate = q.estimate
  q.estimate = function (this: QueueController, now: number, inFlight?: number): number {
    n++
    return estimate.call(this, now, inFlight)
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
  const one = (): Promise<void> => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, agent }, (res) => { res.resume(); res.on('end', resolve) }).on('error', reject)
  })
  try {
    for (let i = 0; i < requests; i += 4) await Promise.all([one(), one(), one(), one()])
  } finally {
    agent.destroy()
    q.estimate = estimate
  }
  return n
}

t.test('node:http door: calm keep-alive traffic is admitted without the estimate', async (t) => {
  const server = http.createServer((req, res) => res.end('ok'))
  const guard = configureServerTimeouts(server, { watchdog: false })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  const n = await fullEstimates(port, bindingOf(server)!.guard.queue!, 2000)
  t.ok(n < 2000 / 4, `${n} full estimates for 2,000 requests`)
  t.equal(guard.stats().requests, 2000)
})

t.test('Fastify door: calm keep-alive traffic is admitted without the estimate', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, { watchdog: false, underPressure: false })
  app.get('/', async () => 'ok')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const n = await fullEstimates((app.server.address() as { port: number }).port, bindingOf(app.server)!.guard.queue!, 2000)
  t.ok(n < 2000 / 4, `${n} full estimates for 2,000 requests`)
  t.equal(app.hangupGuard.stats().requests, 2000)
})

/**
 * Counts the full estimates while one keep-alive client sends requests back to back for `ms`
 * (after `warm` requests: the start-up windows and probe are judged in full), and the requests.
 */
async function fullEstimatesFor (port: number, q: QueueController, warm: number, ms: number): Promise<{ n: number, requests: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const one = (): Promise<void> => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, agent }, (res) => { res.resume(); res.on('end', resolve) }).on('error', reject)
  })
  let n = 0
  const estimate = q.estimate
  try {
    for (let i = 0; i < warm; i++) await one()
    q.estimate = function (this: QueueController, now: number, inFlight?: number): number {
      n++
      return estimate.call(this, now, inFlight)
    }
    let requests = 0
    const end = Date.now() + ms
    while (Date.now() < end && requests < 200_000) {
      await one()
      requests++
    }
    return { n, requests }
  } finally {
    agent.destroy()
    q.estimate = estimate
  }
}

// The in-process window rolls on the sampler's tick: no request of calm traffic leaves the calm
// window because a window ended (before, one request per 100 ms window was judged in full).
for (const door of ['node:http', 'Fastify'] as const) {
  t.test(`${door} door: calm traffic over ten windows is never judged in full because a window ended`, async (t) => {
    let port: number
    let q: QueueController
    if (door === 'node:http') {
      const server = http.createServer((req, res) => res.end('ok'))
      const guard = configureServerTimeouts(server, { watchdog: false })
      port = await listen(server)
      t.teardown(async () => { guard.close(); await closeServer(server) })
      q = bindingOf(server)!.guard.queue!
    } else {
      const app = Fastify()
      await app.register(hangupGuard, { watchdog: false, underPressure: false })
      app.get('/', async () => 'ok')
      await app.listen({ port: 0, host: '127.0.0.1' })
      t.teardown(() => app.close())
      port = (app.server.address() as { port: number }).port
      q = bindingOf(app.server)!.guard.queue!
    }
    const { n, requests } = await fullEstimatesFor(port, q, 300, 10 * ASYNC_WINDOW_MS)
    t.ok(requests > 20, `${requests} requests in ${10 * ASYNC_WINDOW_MS} ms`)
    // A stall of the loaded test machine may end the calm window once or twice; a window
    // rolled by a request would end it ten times.
    t.ok(n <= 3, `${n} full estimates in ten windows`)
    t.ok(q.inProcess.rate > 0, 'the windows rolled (a rate is known)')
  })
}

// After a stall shorter than the budgets, its backlog is served in the calm window: the guard
// checks the stall rule alone (before, every request in the backlog window was judged in full),
// and still refuses a request whose budget the stall spent.
for (const door of ['node:http', 'Fastify'] as const) {
  t.test(`${door} door: a stall's backlog is judged by the stall rule alone, and still refused where the stall spent the budget`, async (t) => {
    const options = { watchdog: false, deadlineHeader: 'x-deadline' } as const
    let port: number
    let q: QueueController
    if (door === 'node:http') {
      const server = http.createServer((req, res) => res.end('ok'))
      const guard = configureServerTimeouts(server, options)
      port = await listen(server)
      t.teardown(async () => { guard.close(); await closeServer(server) })
      q = bindingOf(server)!.guard.queue!
    } else {
      const app = Fastify()
      await app.register(hangupGuard, { ...options, underPressure: false })
      app.get('/', async () => 'ok')
      await app.listen({ port: 0, host: '127.0.0.1' })
      t.teardown(() => app.close())
      port = (app.server.address() as { port: number }).port
      q = bindingOf(app.server)!.guard.queue!
    }
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    t.teardown(() => agent.destroy())
    const one = (headers: Record<string, string> = {}): Promise<number> => new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, agent, headers }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)) }).on('error', reject)
    })
    for (let i = 0; i < 300; i++) await one()
    let n = 0
    const estimate = q.estimate
    q.estimate = function (this: QueueController, now: number, inFlight?: number): number {
      n++
      return estimate.call(this, now, inFlight)
    }
    t.teardown(() => { q.estimate = estimate })
    // A 300 ms stall: the sampler's late tick opens a backlog window of at least 100 ms.
    const blockedUntil = performance.now() + 300
    while (performance.now() < blockedUntil);
    await new Promise((resolve) => setImmediate(resolve)) // the late tick runs
    const windowEnd = performance.now() + 80
    const statuses: number[] = []
    while (performance.now() < windowEnd && statuses.length < 10_000) statuses.push(await one())
    // A budget of 150 ms (250 ms less the 100 ms margin), spent by the 300 ms stall.
    const short = await one({ 'x-deadline': '250' })
    t.ok(statuses.length > 5, `${statuses.length} requests in the backlog window`)
    t.ok(statuses.every((s) => s === 200), 'the backlog of a stall shorter than the budgets is served')
    t.ok(n <= 3, `${n} full estimates for them`)
    t.equal(short, 503, 'a request whose budget the stall spent is refused')
  })
}
