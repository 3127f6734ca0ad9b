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
