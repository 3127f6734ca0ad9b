/**
 * Deadlines of budgets >= DEFER_SCHEDULE_MIN_MS go on the timer at the sampler's next tick, not at
 * admission (issue 12): a request that ends first never touches the timer's lists. The deadline
 * is still fixed at admission and answered on time, through both doors.
 */
import t from 'tap'
import http from 'node:http'
import Fastify from 'fastify'
import { configureServerTimeouts, type HangupGuardOptions } from '../../lib/http'
import hangupGuard from '../../lib/fastify'
import { deadlineSchedulerState } from '../../lib/core/deadline'
import { DEFER_SCHEDULE_MIN_MS } from '../../lib/core/guard'
import { deadlineOf } from '../../lib/core/pending'
import { listen, closeServer, get } from '../helpers/net'

const OPTIONS: HangupGuardOptions = { pressure: false, watchdog: false }
const LATE_MS = 250

async function httpServer (t: { teardown: (fn: () => unknown) => void }, handler: http.RequestListener, options: HangupGuardOptions): Promise<number> {
  const server = http.createServer(handler)
  const guard = configureServerTimeouts(server, { ...OPTIONS, ...options })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  return port
}

t.test('node:http door: a request that ends within its tick is never on the timer; a short budget is at once', async (t) => {
  const seen: number[] = []
  const port = await httpServer(t, (req, res) => {
    seen.push(deadlineSchedulerState().scheduled)
    res.end('ok')
  }, { handlerTimeout: 2000 })
  t.equal((await get(port, '/')).status, 200)
  t.equal((await get(port, '/again')).status, 200)
  t.same(seen, [0, 0], 'not scheduled during the handler')
  const short = await httpServer(t, (req, res) => {
    seen.push(deadlineSchedulerState().scheduled)
    res.end('ok')
  }, { handlerTimeout: DEFER_SCHEDULE_MIN_MS - 1, margin: 1000 })
  t.equal((await get(short, '/')).status, 200)
  t.equal(seen[2], 1, `a ${DEFER_SCHEDULE_MIN_MS - 1} ms budget is scheduled at admission`)
})

t.test('node:http door: a deferred deadline fires on time, and right after a block longer than the budget', async (t) => {
  const port = await httpServer(t, (req, res) => {
    if (req.url === '/block') {
      const until = Date.now() + 400
      while (Date.now() < until); // blocks the loop before any tick could schedule the deadline
    }
    setTimeout(() => { if (!res.writableEnded) res.end('late') }, 1500)
  }, { handlerTimeout: 200, margin: 100 })
  const slow = await get(port, '/slow')
  t.equal(slow.status, 504)
  t.ok(slow.ms >= 195 && slow.ms < 200 + LATE_MS, `504 after ${Math.round(slow.ms)} ms (budget 200)`)
  const blocked = await get(port, '/block')
  t.equal(blocked.status, 504)
  t.ok(blocked.ms >= 395 && blocked.ms < 400 + LATE_MS, `504 after ${Math.round(blocked.ms)} ms (400 ms block)`)
})

t.test('node:http door: extend() and clear() before the tick', async (t) => {
  const port = await httpServer(t, (req, res) => {
    const d = deadlineOf(req)!
    if (req.url === '/extend') d.extend(400)
    else d.clear()
    setTimeout(() => { if (!res.writableEnded) res.end('done') }, 450)
  }, { handlerTimeout: 200, margin: 100 })
  const extended = await get(port, '/extend')
  t.equal(extended.status, 200, 'extended to 600 ms: the 450 ms handler answers')
  const cleared = await get(port, '/clear')
  t.equal(cleared.status, 200, 'cleared: no deadline')
  t.equal(deadlineSchedulerState().scheduled, 0, 'nothing left on the timer')
})

t.test('Fastify door: not on the timer during the handler; the 504 on time', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, { ...OPTIONS, handlerTimeout: 200, margin: 100 })
  const seen: number[] = []
  app.get('/', async () => { seen.push(deadlineSchedulerState().scheduled); return 'ok' })
  app.get('/slow', async () => { await new Promise((resolve) => setTimeout(resolve, 1000)); return 'late' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  t.equal((await get(port, '/')).status, 200)
  t.same(seen, [0])
  const slow = await get(port, '/slow')
  t.equal(slow.status, 504)
  t.ok(slow.ms >= 195 && slow.ms < 200 + LATE_MS, `504 after ${Math.round(slow.ms)} ms`)
})

t.test('Fastify door: a deferred deadline fires right after a block longer than the budget', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, { ...OPTIONS, handlerTimeout: 200, margin: 100 })
  app.get('/block', async () => {
    const until = Date.now() + 400
    while (Date.now() < until); // blocks the loop before any tick could schedule the deadline
    await new Promise((resolve) => setTimeout(resolve, 1500))
    return 'late'
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const blocked = await get(port, '/block')
  t.equal(blocked.status, 504)
  t.ok(blocked.ms >= 395 && blocked.ms < 400 + LATE_MS, `504 after ${Math.round(blocked.ms)} ms (400 ms block)`)
})
