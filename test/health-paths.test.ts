/**
 * Which request is a health probe, through both doors: the path alone or with a query, GET and
 * HEAD; a longer path that starts like it, another method, or a trailing slash reaches the app.
 */
import t from 'tap'
import http from 'node:http'
import Fastify from 'fastify'
import { get, listen, closeServer } from './helpers/net'
import { configureServerTimeouts } from '../lib/http'
import hangupGuard from '../lib/fastify'

const CASES: Array<[method: string, path: string, probe: boolean]> = [
  ['GET', '/livez', true],
  ['GET', '/livez?verbose=1', true],
  ['HEAD', '/readyz', true],
  ['GET', '/readyz?', true],
  ['GET', '/livezz', false],
  ['GET', '/livez/', false],
  ['GET', '/readyzx?y', false],
  ['GET', '/l', false],
  ['GET', '/lx', false],
  ['GET', '/readme', false],
  ['GET', '/api/livez', false],
  ['POST', '/readyz', false],
  ['GET', '/', false]
]

function isHealthAnswer (a: { status: number, headers: http.IncomingHttpHeaders }): boolean {
  return a.status === 200 && String(a.headers['content-type']).startsWith('application/health+json')
}

t.test('node:http door: health probes by path, query and method', async (t) => {
  let appSaw = 0
  const server = http.createServer((_req, res) => { appSaw++; res.end('app') })
  const guard = configureServerTimeouts(server, { watchdog: false })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  for (const [method, path, probe] of CASES) {
    const before = appSaw
    const a = await get(port, path, { method })
    t.equal(isHealthAnswer(a), probe, `${method} ${path}: ${probe ? 'the probe answers' : 'the app answers'}`)
    t.equal(appSaw - before, probe ? 0 : 1)
  }
  t.equal(guard.stats().healthChecks, CASES.filter(([, , probe]) => probe).length)
})

t.test('Fastify door: the same paths reach the health routes or the app', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, { watchdog: false })
  let appSaw = 0
  app.all('/*', async () => { appSaw++; return 'app' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  for (const [method, path, probe] of CASES) {
    const before = appSaw
    const a = await get(port, path, { method })
    t.equal(isHealthAnswer(a), probe, `${method} ${path}: ${probe ? 'the probe answers' : 'the app answers'}`)
    t.equal(appSaw - before, probe ? 0 : 1)
  }
  t.equal(app.hangupGuard.stats().healthChecks, CASES.filter(([, , probe]) => probe).length)
})

t.test('a health path of one character is compared in full (no first-character shortcut)', async (t) => {
  let appSaw = 0
  const server = http.createServer((_req, res) => { appSaw++; res.end('app') })
  const guard = configureServerTimeouts(server, { watchdog: false, health: { livenessPath: '/', readinessPath: '/ready' } })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  t.ok(isHealthAnswer(await get(port, '/')), 'GET / is the liveness probe')
  t.ok(isHealthAnswer(await get(port, '/?x=1')), 'with a query too')
  t.notOk(isHealthAnswer(await get(port, '/x')), 'GET /x reaches the app')
  t.equal(appSaw, 1)
})

t.test("Fastify door: probes wrap Fastify's own 'request' listener; the server's emit stays Node's, and close() restores it", async (t) => {
  const app = Fastify()
  const fastifyListener = app.server.listeners('request')[0]
  await app.register(hangupGuard, { watchdog: false })
  app.get('/', async () => 'app')
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  t.equal(app.server.emit, http.Server.prototype.emit, "emit is Node's own")
  t.equal(app.server.listenerCount('request'), 1)
  t.not(app.server.listeners('request')[0], fastifyListener, "Fastify's listener is wrapped")
  t.ok(isHealthAnswer(await get(port, '/livez')))
  t.equal((await get(port, '/')).body, 'app')
  await app.close()
  t.same(app.server.listeners('request'), [fastifyListener], "close() puts Fastify's listener back")
})

t.test("Fastify door with another 'request' listener at registration: the emit front answers probes before both", async (t) => {
  const app = Fastify()
  let otherSaw = 0
  app.server.on('request', () => { otherSaw++ })
  await app.register(hangupGuard, { watchdog: false })
  app.get('/', async () => 'app')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  t.not(app.server.emit, http.Server.prototype.emit, 'emit is wrapped: it sees every listener')
  t.ok(isHealthAnswer(await get(port, '/readyz')))
  t.equal(otherSaw, 0, 'no listener saw the probe')
  t.equal((await get(port, '/')).body, 'app')
  t.equal(otherSaw, 1)
})
