/**
 * Issue 10, items 8 to 10: what the guard exposes. A throwing health check's message used to be
 * the public 503 detail of every request and was in /readyz; the health endpoints showed the plan,
 * counters, heap figures and cgroup paths to anyone, and answered every method on node:http;
 * incidents carried the whole request target, query string included.
 */
import t, { type Test } from 'tap'
import http from 'node:http'
import net from 'node:net'
import Fastify from 'fastify'
import { configureServerTimeouts, type Incident, type HangupGuardOptions } from '../../lib/index'
import hangupGuard from '../../lib/fastify'
import { listen, closeServer, get, until } from '../helpers/net'

const SECRET = 'password authentication failed for user "orders_rw" at db-primary.internal:5432'

async function serve (t: Test, door: 'http' | 'fastify', options: HangupGuardOptions): Promise<{ port: number, handled: string[] }> {
  const handled: string[] = []
  if (door === 'http') {
    const server = http.createServer((req, res) => { handled.push(`${req.method} ${req.url}`); res.end('app') })
    const guard = configureServerTimeouts(server, { watchdog: false, ...options })
    const port = await listen(server)
    t.teardown(async () => { guard.close(); await closeServer(server) })
    return { port, handled }
  }
  const app = Fastify()
  await app.register(hangupGuard, { watchdog: false, ...options })
  app.all('/*', async (request) => { handled.push(`${request.method} ${request.url}`); return 'app' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { port: (app.server.address() as net.AddressInfo).port, handled }
}

for (const door of ['http', 'fastify'] as const) {
  t.test(`${door}: a throwing health check's text reaches neither clients nor /readyz; it goes to the incident`, async (t) => {
    const incidents: Incident[] = []
    const { port } = await serve(t, door, {
      pressure: { maxEventLoopDelay: false, healthCheck: () => { throw new Error(SECRET) } },
      onIncident: (i) => incidents.push(i)
    })
    let shed = await get(port, '/orders')
    await until(async () => { shed = await get(port, '/orders'); return shed.status === 503 })
    t.equal(JSON.parse(shed.body).code, 'HG_ERR_OVERLOADED')
    t.notMatch(shed.body, /password|orders_rw|db-primary/, 'the public answer says only that the server is overloaded')
    const ready = await get(port, '/readyz')
    t.equal(ready.status, 503)
    t.notMatch(ready.body, /password|orders_rw|db-primary/)
    t.match(incidents.find((i) => i.cause === 'overload')?.detail, /db-primary\.internal/, 'operators get the reason')
  })

  t.test(`${door}: health bodies show status and check names only, unless details are on`, async (t) => {
    const { port } = await serve(t, door, {})
    const ready = JSON.parse((await get(port, '/readyz')).body) as Record<string, unknown>
    t.same(Object.keys(ready).sort(), ['checks', 'description', 'status'])
    for (const results of Object.values(ready.checks as Record<string, unknown[]>)) {
      for (const r of results) t.same(Object.keys(r as object), ['status'], 'no figures, limits or texts')
    }
    t.notMatch(JSON.stringify(ready), /cgroup|\/sys\/fs|limit|observed|output|MiB/)
    const detailed = await serve(t, door, { health: { details: true } })
    const full = JSON.parse((await get(detailed.port, '/readyz')).body) as Record<string, unknown>
    t.ok('plan' in full && 'stats' in full && 'container' in full, 'details: the whole document')
  })

  t.test(`${door}: only GET and HEAD reach the health endpoints; other methods go to the app`, async (t) => {
    const { port, handled } = await serve(t, door, {})
    t.equal((await get(port, '/readyz', { method: 'HEAD' })).status, 200)
    for (const method of ['POST', 'DELETE', 'PROPFIND']) {
      const answer = await get(port, '/readyz', { method })
      t.notOk(answer.headers['content-type']?.startsWith('application/health+json'), `${method} is not answered by the guard`)
    }
    if (door === 'http') t.same(handled, ['POST /readyz', 'DELETE /readyz', 'PROPFIND /readyz'], 'the app got them')
  })

  t.test(`${door}: incidents carry the path only (capped), the query only when asked`, async (t) => {
    const incidents: Incident[] = []
    const opts = { pressure: false as const, handlerTimeout: 50, margin: 20, onIncident: (i: Incident) => incidents.push(i) }
    const slow = async (t: Test, options: HangupGuardOptions): Promise<number> => {
      if (door === 'http') {
        const server = http.createServer((req, res) => { setTimeout(() => res.end('late'), 200) })
        const guard = configureServerTimeouts(server, { watchdog: false, ...options })
        const port = await listen(server)
        t.teardown(async () => { guard.close(); await closeServer(server) })
        return port
      }
      const app = Fastify({ maxParamLength: 20000 })
      await app.register(hangupGuard, { watchdog: false, ...options })
      app.get('/*', async () => { await new Promise((resolve) => setTimeout(resolve, 200)); return 'late' })
      await app.listen({ port: 0, host: '127.0.0.1' })
      t.teardown(() => app.close())
      return (app.server.address() as net.AddressInfo).port
    }
    const port = await slow(t, opts)
    await get(port, '/reset?token=s3cr3t&code=oauth')
    await get(port, '/long/' + 'x'.repeat(1000) + '?q=' + 'y'.repeat(15000))
    t.equal(incidents[0]?.url, '/reset')
    t.notMatch(JSON.stringify(incidents), /s3cr3t|oauth|yyyy/)
    t.equal(incidents[1]?.url.length, 256, 'capped at 256 characters')
    t.ok(incidents[1]?.url.endsWith('…'))
    t.ok((incidents[1]?.route.length ?? 0) <= 256)
    incidents.length = 0
    const withQuery = await slow(t, { ...opts, incidentQuery: true })
    await get(withQuery, '/reset?token=s3cr3t')
    await get(withQuery, '/q?' + 'y'.repeat(15000))
    t.equal(incidents[0]?.url, '/reset?token=s3cr3t', 'incidentQuery: true')
    t.equal(incidents[1]?.url.length, 2048, 'capped at 2048 characters')
  })
}
