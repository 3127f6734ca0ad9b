/**
 * A deadline acts once. Since deadlines are scheduled at the sampler's tick (issue 12), the tick
 * puts on the timer every in-flight request from the first deferred one on whose entry is off the
 * timer: after a loop block longer than a short budget, the deadline timer fires first (the
 * request is cut, its socket destroyed) and the late tick schedules the same entry again, to fire
 * before the response's 'close' settles it. Here the second firing is the guard's own `expire`,
 * called from the first cut's incident (the moment the tick would run): the response must be cut
 * and counted once, through both doors.
 */
import t from 'tap'
import http from 'node:http'
import Fastify from 'fastify'
import { configureServerTimeouts } from '../../lib/http'
import hangupGuard from '../../lib/fastify'
import { deadlineOf, type Pending } from '../../lib/core/pending'
import type { Incident } from '../../lib/core/stats'
import { listen, closeServer, get, until } from '../helpers/net'

const OPTIONS = { pressure: false as const, watchdog: false as const, handlerTimeout: 150, margin: 100 }

/** onIncident that fires the request's deadline a second time at its first cut, as the late tick would. */
function refireOnCut (incidents: Incident[], pendings: Pending[]): (i: Incident) => void {
  return (incident) => {
    incidents.push(incident)
    const p = pendings.shift()
    if (incident.kind === 'cut' && p !== undefined) p.owner.expire(p)
  }
}

t.test('node:http door: a deadline that fires again before the close cuts once', async (t) => {
  const incidents: Incident[] = []
  const pendings: Pending[] = []
  const server = http.createServer((req, res) => {
    pendings.push(deadlineOf(req) as Pending)
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('partial') // on the wire: the deadline can only cut
  })
  const guard = configureServerTimeouts(server, { ...OPTIONS, onIncident: refireOnCut(incidents, pendings) })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  await t.rejects(get(port, '/stream'), 'the client sees the cut')
  await until(() => guard.stats().inFlight === 0)
  t.same(incidents.map((i) => `${i.kind} ${i.cause}`), ['cut deadline'])
  t.equal(guard.stats().cut.deadline, 1)
})

t.test('Fastify door: a deadline that fires again before the close cuts once', async (t) => {
  const incidents: Incident[] = []
  const pendings: Pending[] = []
  const app = Fastify()
  await app.register(hangupGuard, { ...OPTIONS, onIncident: refireOnCut(incidents, pendings) })
  app.get('/stream', (request, reply) => {
    pendings.push(request.deadline as Pending)
    reply.hijack()
    reply.raw.writeHead(200, { 'content-type': 'text/plain' })
    reply.raw.write('partial')
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  await t.rejects(get(port, '/stream'), 'the client sees the cut')
  await until(() => app.hangupGuard.stats().inFlight === 0)
  t.same(incidents.map((i) => `${i.kind} ${i.cause}`), ['cut deadline'])
  t.equal(app.hangupGuard.stats().cut.deadline, 1)
})
