/**
 * The drain suites through the Fastify plugin: keep-alive load with 0 hang ups, a rollout whose
 * new connections are all served during the delay, and handlers still running at the hard
 * deadline answered before their sockets close. Same shapes as drain-load.test.ts and
 * drain.test.ts, with Fastify routes instead of a raw handler.
 */
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import hangupGuard from '../lib/fastify'
import { bindingOf } from '../lib/core/bind'
import type { DrainRun } from '../lib/core/drain'
import type { Guard } from '../lib/core/guard'
import type { HangupGuardOptions } from '../lib/http'
import { startLoad, type Load, type LoadClient } from './helpers/load'
import { get, connectionsOf } from './helpers/drain'

const DELAY_MS = 2_000
const TIMEOUT_MS = 2_000
const ROUTED_FOR_MS = 500

async function serveFastify (t: { teardown: (fn: () => Promise<void>) => void }, options: HangupGuardOptions): Promise<{ app: FastifyInstance, guard: Guard, port: number }> {
  const app = Fastify()
  await app.register(hangupGuard, options)
  app.get('/slow', () => new Promise(() => {})) // answered by the hard deadline
  app.get('/*', async () => { await sleep(Math.floor(Math.random() * 4)); return 'ok' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { app.server.closeAllConnections(); await app.close().catch(() => {}) })
  return { app, guard: bindingOf(app.server)!.guard, port: (app.server.address() as AddressInfo).port }
}

function drainUnderLoad (app: FastifyInstance, guard: Guard, load: Load): ReturnType<FastifyInstance['hangupGuard']['drain']> {
  const drained = app.hangupGuard.drain()
  const run = guard.drainRun as DrainRun
  setTimeout(() => load.stop(), ROUTED_FOR_MS)
  load.done.then(() => run.beginClosing(), () => {})
  return drained
}

for (const client of ['agent', 'undici'] as LoadClient[]) {
  t.test(`fastify, ${client}: keep-alive clients under steady load see no hang up while the server drains`, async (t) => {
    const { app, guard, port } = await serveFastify(t, { drain: { delay: DELAY_MS, timeout: TIMEOUT_MS }, pressure: false })
    const load = startLoad({ port, client, users: 16, maxRequests: 50_000 })
    const slow = [get(port, '/slow'), get(port, '/slow')]
    await load.completed(500)
    const atStart = { ...load.counts }
    const [result, counts, ...slowAnswers] = await Promise.all([drainUnderLoad(app, guard, load), load.done, ...slow])
    t.comment(`fastify ${client}: ${counts.sent} requests, ${counts.ok} 2xx, ${counts.unavailable} 503, ${counts.errors} errors ${JSON.stringify(counts.errorCodes)}`)
    t.equal(counts.errors, 0, 'no hang up, reset or refused connection')
    t.equal(counts.other, 0, 'nothing but 2xx and 503')
    t.equal(counts.ok + counts.unavailable, counts.sent)
    t.ok(counts.ok - atStart.ok > 0, 'requests were served during the delay')
    t.ok(counts.connectionClose > 0, 'answers during the delay carry Connection: close')
    for (const a of slowAnswers) t.match(a, { status: 503, code: 'HG_ERR_SHUTDOWN' }, 'handlers still running at the deadline are answered 503 before their socket closes')
    t.match(result, { timedOut: true, answeredAtDeadline: 2, cut: 0, openConnections: 0 })
    t.equal(await connectionsOf(app.server), 0, 'no socket left')
  })
}

t.test('fastify rollout: new connections opened during the delay are all served, none refused or reset', async (t) => {
  const { app, guard, port } = await serveFastify(t, { drain: { delay: DELAY_MS, timeout: TIMEOUT_MS }, pressure: false })
  let duringDrain = 0
  let started = false
  const load = startLoad({ port, client: 'fresh', users: 8, maxRequests: 50_000, path: () => { if (started) duringDrain++; return '/' } })
  await load.completed(100)
  started = true
  const [result, counts] = await Promise.all([drainUnderLoad(app, guard, load), load.done])
  t.ok(duringDrain > 0, 'the balancer kept sending after the drain started')
  t.equal(counts.errors, 0)
  t.equal(counts.unavailable, 0, 'none refused within the delay')
  t.equal(counts.ok, counts.sent, 'every request served (2xx)')
  t.match(result, { timedOut: false, refused: 0, cut: 0, openConnections: 0 })
})

t.test('fastify: a second drain() returns the same promise; app.close() after the drain is clean', async (t) => {
  const { app, port } = await serveFastify(t, { drain: { delay: 0, timeout: 300 }, pressure: false })
  const slow = get(port, '/slow')
  await sleep(50)
  const first = app.hangupGuard.drain()
  t.equal(app.hangupGuard.drain(), first, 'idempotent')
  t.match(await slow, { status: 503, code: 'HG_ERR_SHUTDOWN' })
  t.match(await first, { timedOut: true, answeredAtDeadline: 1 })
  t.equal(app.hangupGuard.stats().drain.phase, 'closed')
})
