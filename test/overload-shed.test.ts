/**
 * Shedding under a real overload, through both doors: a forked server whose handler burns 10 ms
 * of CPU, and 64 closed-loop clients (bounded in time), i.e. ~640 ms of work offered per round,
 * well past the 250 ms queueing target. The guard must shed some with 503 HG_ERR_AT_CAPACITY +
 * Retry-After, serve others, and drop none.
 */
import t from 'tap'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import http from 'node:http'
import { Writable } from 'node:stream'
import diagnosticsChannel from 'node:diagnostics_channel'
import { INCIDENT_CHANNEL } from '../lib/core/stats'
import Fastify from 'fastify'
import hangupGuard from '../lib/fastify'
import { bindingOf } from '../lib/core/bind'
import type { StatsSnapshot } from '../lib/core/stats'

interface Counts { served: number, shed: number, retryAfter: number, codes: Record<string, number>, hangUps: number, timeouts: number, other: number }

async function closedLoop (port: number, agent: http.Agent | false, clients: number, durationMs: number): Promise<Counts> {
  const c: Counts = { served: 0, shed: 0, retryAfter: 0, codes: {}, hangUps: 0, timeouts: 0, other: 0 }
  const end = performance.now() + durationMs
  const one = (): Promise<void> => new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => {
        if (res.statusCode === 200) c.served++
        else if (res.statusCode === 503) {
          c.shed++
          if (res.headers['retry-after'] === '5') c.retryAfter++
          const code = (JSON.parse(body) as { code: string }).code
          c.codes[code] = (c.codes[code] ?? 0) + 1
        } else c.other++
        resolve()
      })
    })
    req.on('timeout', () => { c.timeouts++; req.destroy(new Error('client timeout')) })
    req.on('error', (err) => { if (err.message !== 'client timeout') c.hangUps++; resolve() })
  })
  const loop = async (): Promise<void> => { while (performance.now() < end) await one() }
  await Promise.all(Array.from({ length: clients }, loop))
  return c
}

for (const [door, client] of [['http', 'a new connection per request'], ['fastify', 'keep-alive connections']] as const) {
  t.test(`${door} door, ${client}: sheds the excess with 503 HG_ERR_AT_CAPACITY, serves the rest, hangs up on nobody`, async (t) => {
    const child = fork(join(__dirname, 'fixtures', 'overload-server.ts'), [door, '10'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    t.teardown(async () => { if (child.exitCode === null) { child.disconnect(); await once(child, 'exit') } })
    const [{ port }] = await once(child, 'message') as [{ port: number }]
    const agent = door === 'fastify' ? new http.Agent({ keepAlive: true, maxSockets: 64 }) : false
    const counts = await closedLoop(port, agent, 64, 1500)
    if (agent !== false) agent.destroy()
    child.send('stats')
    const [{ stats, handled }] = await once(child, 'message') as [{ stats: StatsSnapshot, handled: number }]
    t.ok(counts.shed > 0, `shed ${counts.shed}`)
    t.same(Object.keys(counts.codes), ['HG_ERR_AT_CAPACITY'], 'every 503 is the capacity answer')
    t.equal(counts.retryAfter, counts.shed, 'each with Retry-After')
    t.ok(counts.served > 0, `served ${counts.served}`)
    t.equal(counts.hangUps, 0, 'no hang up')
    t.equal(counts.timeouts, 0, 'no client waited 5 s')
    t.equal(counts.other, 0)
    t.equal(stats.answered.capacity, counts.shed, 'counted once per refusal')
    t.equal(handled, counts.served, 'no handler ran for a shed request')
    t.equal(stats.queue!.shed, counts.shed)
    t.ok(stats.queue!.shedShare > 0 && stats.queue!.shedShare < 1)
    t.equal(stats.queue!.targetMs, 250)
  })
}

t.test('Fastify door: one log line when shedding starts and one when it stops, none per refusal; an incident per refusal only for a listener', async (t) => {
  const lines: Array<{ msg: string, hangupGuard?: string }> = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb() } })
  const app = Fastify({ logger: { level: 'info', stream } })
  await app.register(hangupGuard, { watchdog: false })
  app.get('/', async () => 'ok')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const queue = bindingOf(app.server)!.guard.queue!
  const realLoop = queue.loop!
  // A loop 400 ms behind its tick, under sustained overload (its recent iterations were all long).
  const behind = { lastTickAt: 0, lastTickGapMs: 20, stalls: [{ startedAt: 0, endedAt: 0 }] }
  const stuck = (): void => { const now = performance.now(); behind.lastTickAt = now - 420; behind.stalls[0] = { startedAt: now - 900, endedAt: now - 420 } }
  queue.loop = behind
  const port = (app.server.address() as { port: number }).port
  const statuses: number[] = []
  const until = performance.now() + 400
  while (performance.now() < until) {
    stuck()
    statuses.push((await fetch(`http://127.0.0.1:${port}/`)).status)
  }
  queue.loop = realLoop
  // Served again once the loop is back (a few tries: a loaded CI machine can lag one request).
  for (let i = 0; i < 20 && statuses.at(-1) !== 200; i++) statuses.push((await fetch(`http://127.0.0.1:${port}/`)).status)
  const refused = statuses.filter((s) => s === 503).length
  t.ok(refused > 3, `${refused} refusals`)
  t.equal(statuses.at(-1), 200, 'served again once the loop caught up')
  const shedding = lines.filter((l) => l.hangupGuard === 'shedding')
  const stopped = lines.filter((l) => l.hangupGuard === 'shedding-stopped')
  t.equal(shedding.length, 1, 'one line when shedding starts')
  t.equal(stopped.length, 1, 'one line when it stops')
  t.equal(app.hangupGuard.stats().answered.capacity, refused, 'every refusal counted, though no incident object was built')
  // With a subscriber on the incident channel, each refusal is reported.
  const incidents: Array<{ cause: string, code: string | null, statusCode: number | null }> = []
  const onIncident = (m: unknown): void => { incidents.push(m as { cause: string, code: string | null, statusCode: number | null }) }
  diagnosticsChannel.subscribe(INCIDENT_CHANNEL, onIncident)
  t.teardown(() => diagnosticsChannel.unsubscribe(INCIDENT_CHANNEL, onIncident))
  queue.loop = behind
  let more = 0
  const until2 = performance.now() + 300
  while (performance.now() < until2) {
    stuck()
    if ((await fetch(`http://127.0.0.1:${port}/`)).status === 503) more++
  }
  queue.loop = realLoop
  t.ok(more > 0)
  t.equal(incidents.length, more)
  t.match(incidents[0], { cause: 'capacity', code: 'HG_ERR_AT_CAPACITY', statusCode: 503 })
})
