/**
 * Stall reaction on real sockets: requests queued behind an event-loop stall longer than their
 * budget are answered 503 as soon as the loop resumes, none reaches a handler, and readiness
 * reports the pressure and recovers. The server runs in a forked child so its stall does not
 * block the client.
 */
import t from 'tap'
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { get, listen, closeServer } from './helpers/net'
import { configureServerTimeouts } from '../lib/http'

interface Msg { handled?: number, port?: number, blocking?: true, stall?: { startedAt: number, durationMs: number }, stats?: { answered: { stall: number } } }

async function startChild (t: { teardown: (fn: () => Promise<void>) => void }): Promise<{ child: ChildProcess, port: number, messages: Msg[] }> {
  const child = fork(join(__dirname, 'fixtures', 'guarded-stall-server.ts'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const messages: Msg[] = []
  child.on('message', (m: Msg) => messages.push(m))
  t.teardown(async () => { if (child.exitCode === null) { child.disconnect(); child.kill(); await once(child, 'exit') } })
  const [first] = await once(child, 'message') as [Msg]
  return { child, port: first.port as number, messages }
}

async function waitFor<T> (messages: Msg[], pick: (m: Msg) => T | undefined, ms = 5000): Promise<T> {
  const until = performance.now() + ms
  for (;;) {
    for (const m of messages) { const v = pick(m); if (v !== undefined) return v }
    if (performance.now() > until) throw new Error('message did not come')
    await sleep(10)
  }
}

t.test('requests queued during a 800 ms stall (budget 300 ms) get 503 + Retry-After, and no handler runs for them', async (t) => {
  const { child, port, messages } = await startChild(t)
  const agent = new http.Agent({ keepAlive: false })
  t.equal((await get(port, '/readyz')).status, 200, 'ready before the stall')
  child.send({ block: 800 })
  await waitFor(messages, (m) => m.blocking)
  await sleep(50) // the loop is blocked now; these requests wait in the kernel
  const burst = await Promise.all(Array.from({ length: 20 }, () => get(port, '/work', { agent }).catch((err: NodeJS.ErrnoException) => ({ status: 0, error: err.code, headers: {} as http.IncomingHttpHeaders, body: '', ms: 0 }))))
  const statuses = burst.map((a) => a.status)
  t.same(statuses.filter((s) => s === 0), [], 'no hang up')
  t.ok(statuses.every((s) => s === 503), `all queued requests shed: ${statuses.join(',')}`)
  t.equal(burst[0]!.headers['retry-after'], '2')
  t.equal(JSON.parse(burst[0]!.body).code, 'HG_ERR_STALLED')
  child.send({ stats: true })
  const stats = await waitFor(messages, (m) => m.stats)
  t.equal(messages.find((m) => m.stats !== undefined)?.handled, 0, 'none of them reached the handler')
  t.equal(stats.answered.stall, 20, 'each is counted as a stall answer')

  const stall = await waitFor(messages, (m) => m.stall)
  // The watchdog measures the stall from heartbeats (20 ms apart): within max(20%, 50 ms) of 800.
  t.ok(Math.abs(stall.durationMs - 800) <= 160, `watchdog saw ${stall.durationMs} ms`)

  // Readiness: the p99 event-loop delay of the window with the stall is over 200 ms.
  let ready = await get(port, '/readyz')
  const until = performance.now() + 3000
  while (ready.status === 200 && performance.now() < until) { await sleep(100); ready = await get(port, '/readyz') }
  t.equal(ready.status, 503, 'readiness fails while the pressure lasts')
  t.equal(ready.headers['content-type'], 'application/health+json')
  const doc = JSON.parse(ready.body)
  t.equal(doc.status, 'fail')
  t.ok(doc.checks['eventLoop:delay'][0].observedValue >= 200)
  t.equal((await get(port, '/livez')).status, 200, 'liveness stays pass: the loop is progressing again')
  const back = performance.now() + 5000
  while (ready.status !== 200 && performance.now() < back) { await sleep(200); ready = await get(port, '/readyz') }
  t.equal(ready.status, 200, 'readiness passes again once the window is clean')
  t.equal((await get(port, '/work')).status, 200, 'fresh traffic is served')
  agent.destroy()
})

t.test('synchronous start-up work before listen() is not a backlog: the first requests are served', async (t) => {
  const server = http.createServer((req, res) => res.end('ok'))
  const guard = configureServerTimeouts(server, { handlerTimeout: 200, margin: 50, watchdog: false })
  const end = performance.now() + 400
  while (performance.now() < end) { /* loading modules, warming caches… */ }
  const port = await listen(server)
  const first = await get(port, '/')
  t.equal(first.status, 200, 'not shed as HG_ERR_STALLED')
  t.equal(guard.stats().answered.stall, 0)
  guard.close()
  await closeServer(server)
})
