/**
 * hangup-guard/prometheus: names, types and values after scripted incidents on real sockets
 * (a 504, a cut response, a client gone, a drain with its 503), through both doors.
 */
import t from 'tap'
import http, { type ServerResponse } from 'node:http'
import path from 'node:path'
import diagnosticsChannel from 'node:diagnostics_channel'
import { execFileSync, fork } from 'node:child_process'
import { once } from 'node:events'
import { enter, makeLimitedCgroup, removeCgroup } from './fixtures/limited-cgroup'
import { Registry } from 'prom-client'
import Fastify from 'fastify'
import { prometheusMetrics } from '../lib/prometheus'
import hangupGuard from '../lib/fastify'
import { deadlineOf, INCIDENT_CHANNEL, type Incident } from '../lib/index'
import { serve, get, deferred } from './helpers/drain'
import { QUIET } from './helpers/net'

interface Sample { name: string, labels: Record<string, string>, value: number }

async function scrape (registry: Registry): Promise<{ text: string, samples: Sample[], types: Map<string, string> }> {
  const text = await registry.metrics()
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type !== null) types.set(type[1]!, type[2]!)
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) continue
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) labels[l[1]!] = l[2]!
    samples.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return { text, samples, types }
}

function value (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const keys = Object.keys(labels)
  return samples.find((s) => s.name === name && Object.keys(s.labels).length === keys.length && keys.every((k) => s.labels[k] === labels[k]))?.value
}

/** Resolves with the next incident of `kind` (waits on the channel, not on time). */
function nextIncident (kind: Incident['kind']): Promise<Incident> {
  return new Promise((resolve) => {
    const fn = (m: unknown): void => {
      if ((m as Incident).kind !== kind) return
      diagnosticsChannel.unsubscribe(INCIDENT_CHANNEL, fn)
      resolve(m as Incident)
    }
    diagnosticsChannel.subscribe(INCIDENT_CHANNEL, fn)
  })
}

t.test('node:http: counters from a 504, a cut, a client gone and a drain 503; gauges from stats() at scrape time', async (t) => {
  let stream: ServerResponse | null = null
  const streaming = deferred()
  const { handle, port } = await serve(t, (req, res) => {
    const signal = deadlineOf(req)!.signal
    if (req.url === '/slow' || req.url === '/wait') return // answered by the guard, or the client leaves
    if (req.url === '/cut') {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('partial')
      return
    }
    if (req.url === '/stream') {
      deadlineOf(req)!.clear()
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('a')
      stream = res
      streaming.resolve()
      return
    }
    signal.throwIfAborted()
    res.end('ok')
  }, { ...QUIET, handlerTimeout: 200, drain: { delay: 0, timeout: 5_000 } })
  const registry = new Registry()
  const metrics = prometheusMetrics(handle, { registry })
  t.teardown(() => metrics.close())

  const before = await scrape(registry)
  t.same(metrics.names, [
    'hangup_guard_answers_total', 'hangup_guard_cut_responses_total', 'hangup_guard_clients_gone_total',
    'hangup_guard_wasted_handler_seconds_total', 'hangup_guard_requests_total', 'hangup_guard_in_flight_requests',
    'hangup_guard_event_loop_delay_p99_seconds', 'hangup_guard_event_loop_utilization_ratio', 'hangup_guard_queueing_delay_seconds', 'hangup_guard_drain_phase'
  ], 'no cpu_throttled_ratio without a CPU limit (this test process has none)')
  for (const name of metrics.names) {
    t.equal(before.types.get(name), name.endsWith('_total') ? 'counter' : 'gauge', `${name} is a ${name.endsWith('_total') ? 'counter' : 'gauge'}`)
    t.ok(name.startsWith('hangup_guard_'))
  }
  t.equal(value(before.samples, 'hangup_guard_clients_gone_total'), 0, 'label-less counters start at 0')
  t.equal(value(before.samples, 'hangup_guard_drain_phase', { phase: 'serving' }), 1)
  t.equal(value(before.samples, 'hangup_guard_drain_phase', { phase: 'closed' }), 0)
  t.equal(value(before.samples, 'hangup_guard_in_flight_requests'), 0)

  // A 504.
  const slow = await get(port, '/slow')
  t.equal(slow.status, 504)
  // A response cut after it started.
  const cutSeen = nextIncident('cut')
  await get(port, '/cut').catch(() => null)
  await cutSeen
  // A client that leaves after 50 ms.
  const goneSeen = nextIncident('client-gone')
  const req = http.get({ host: '127.0.0.1', port, path: '/wait', agent: false })
  req.on('error', () => {})
  setTimeout(() => req.destroy(), 50)
  const gone = await goneSeen

  // One request in flight, read at scrape time.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const first = get(port, '/stream', agent)
  await streaming.promise
  const during = await scrape(registry)
  t.equal(value(during.samples, 'hangup_guard_in_flight_requests'), 1, 'in-flight while /stream runs')

  // A drain: the next request on the open connection gets 503 HG_ERR_DRAINING.
  const drained = handle.drain()
  const closing = await scrape(registry)
  t.equal(value(closing.samples, 'hangup_guard_drain_phase', { phase: 'closing' }), 1, 'phase closing during the drain')
  t.equal(value(closing.samples, 'hangup_guard_drain_phase', { phase: 'serving' }), 0)
  const second = get(port, '/after', agent)
  ;(stream as unknown as ServerResponse).end('b')
  t.equal((await first).status, 200)
  const refused = await second
  t.equal(refused.status, 503)
  t.equal(refused.code, 'HG_ERR_DRAINING')
  await drained

  const after = await scrape(registry)
  const s = after.samples
  t.equal(value(s, 'hangup_guard_answers_total', { cause: 'deadline', status: '504' }), 1, 'the 504')
  t.equal(value(s, 'hangup_guard_answers_total', { cause: 'draining', status: '503' }), 1, 'the drain 503')
  t.equal(value(s, 'hangup_guard_cut_responses_total', { cause: 'deadline' }), 1, 'the cut response')
  t.equal(value(s, 'hangup_guard_clients_gone_total'), 1, 'the client gone')
  const wasted = value(s, 'hangup_guard_wasted_handler_seconds_total')!
  t.ok(Math.abs(wasted - gone.elapsedMs / 1000) < 1e-6, `wasted seconds ${wasted} = the incident's ${gone.elapsedMs} ms`)
  // From admission to the close the server saw: under the 50 ms the client waited when its request
  // reached the server late (a loaded machine), never the 200 ms budget (that would be a 504).
  t.ok(wasted > 0 && wasted < 0.2, `${wasted} s: the time the client waited, below the 200 ms budget`)
  t.equal(value(s, 'hangup_guard_requests_total'), handle.stats().requests, 'requests_total is stats().requests')
  t.ok(handle.stats().requests >= 5)
  t.equal(value(s, 'hangup_guard_in_flight_requests'), 0)
  t.equal(value(s, 'hangup_guard_drain_phase', { phase: 'closed' }), 1)
  const eld = value(s, 'hangup_guard_event_loop_delay_p99_seconds')!
  t.ok(Number.isNaN(eld) || (eld >= 0 && eld < 5), `event-loop delay p99 in seconds: ${eld}`)
  t.match(after.text, /# HELP hangup_guard_answers_total Explicit answers the guard sent/)
  t.ok(Number.isNaN(value(s, 'hangup_guard_queueing_delay_seconds')), 'no queueing delay with pressure: false (no controller)')

  metrics.close()
  t.equal((await registry.metrics()).trim(), '', 'close() removes every metric')
  // A new set can register again on the same registry after close().
  prometheusMetrics(handle, { registry }).close()
})

t.test('Fastify: the same counters; route labels are opt-in and capped', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, { ...QUIET, handlerTimeout: 5_000 })
  const never = async (): Promise<void> => { await new Promise(() => {}) }
  app.get('/slow/:id', { config: { hangupGuard: { timeout: 150 } } }, never)
  app.get('/other/:id', { config: { hangupGuard: { timeout: 150 } } }, never)
  app.get('/third', { config: { hangupGuard: { timeout: 150 } } }, never)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const registry = new Registry()
  const metrics = prometheusMetrics(app.hangupGuard, { registry, routeLabel: true, maxRoutes: 2, prefix: 'api_hg_' })
  t.teardown(() => metrics.close())
  const answers = await Promise.all(['/slow/1', '/slow/2', '/other/1', '/third'].map((p) => get(port, p)))
  t.same(answers.map((a) => a.status), [504, 504, 504, 504])
  const { samples, types } = await scrape(registry)
  t.equal(types.get('api_hg_answers_total'), 'counter')
  const byRoute = samples.filter((x) => x.name === 'api_hg_answers_total').map((x) => `${x.labels.route} ${x.labels.cause} ${x.labels.status} ${x.value}`).sort()
  t.equal(byRoute.length, 3, 'two routes kept, the rest as "other"')
  t.ok(byRoute.includes('/slow/:id deadline 504 2'), 'the route pattern, not the path')
  t.ok(byRoute.some((x) => x.startsWith('other deadline 504 1')))
  t.equal(value(samples, 'api_hg_requests_total'), 4)
})

t.test('options are checked with coded errors', async (t) => {
  const fake = { stats: () => { throw new Error('not read') } }
  t.throws(() => prometheusMetrics({} as never), { code: 'HG_ERR_OPT_TYPE' })
  t.throws(() => prometheusMetrics(fake as never, { prefix: 'bad-prefix' }), { code: 'HG_ERR_OPT_TYPE' })
  t.throws(() => prometheusMetrics(fake as never, { maxRoutes: 0 }), { code: 'HG_ERR_OPT_RANGE' })
})

t.test('nothing loads when unused: the main entry and the Fastify entry do not load prom-client', async (t) => {
  const dist = path.join(__dirname, '..', 'dist')
  const loaded = execFileSync(process.execPath, ['-e', `
    require(${JSON.stringify(path.join(dist, 'index.js'))})
    require(${JSON.stringify(path.join(dist, 'fastify', 'index.js'))})
    console.log(JSON.stringify(Object.keys(require.cache)))`], { encoding: 'utf8' })
  const files = JSON.parse(loaded) as string[]
  t.notOk(files.some((f) => f.includes(`${path.sep}prom-client${path.sep}`)), 'no prom-client')
  t.notOk(files.some((f) => f.includes(`${path.sep}dist${path.sep}prometheus${path.sep}`) || f.includes(`${path.sep}dist${path.sep}cli${path.sep}`)), 'no metrics, CLI or probe module')
})

t.test('on the real kernel: under a 0.2-core CPU limit, hangup_guard_cpu_throttled_ratio is registered and reads the throttling', async (t) => {
  const cgroup = makeLimitedCgroup(0.2)
  if (typeof cgroup === 'string') return t.plan(0, cgroup)
  const child = fork(path.join(__dirname, 'fixtures', 'prometheus-cgroup-child.ts'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = once(child, 'exit')
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL')
    await exited
    removeCgroup(cgroup)
  })
  await once(child, 'message')
  enter(cgroup, child.pid!)
  child.send('go')
  const [text] = await once(child, 'message') as [string]
  t.match(text, /# TYPE hangup_guard_cpu_throttled_ratio gauge\n/)
  const ratio = Number(/^hangup_guard_cpu_throttled_ratio (\S+)$/m.exec(text)?.[1])
  t.ok(ratio > 0.5 && ratio <= 1, `throttled in ${ratio} of the CFS periods while burning CPU at 0.2 cores`)
})
