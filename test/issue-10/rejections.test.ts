/**
 * Issue 10, item 1: a rejected async request listener on the node:http door. The README's
 * quickstart (a fetch with the deadline's signal to an upstream slower than the budget) used to
 * end the process with an unhandled HG_ERR_DEADLINE rejection after the 504; every other request
 * in flight went down with it.
 */
import t, { type Test } from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import Fastify from 'fastify'
import { configureServerTimeouts, deadlineOf, type Incident } from '../../lib/index'
import hangupGuard from '../../lib/fastify'
import { listen, closeServer, get, until, QUIET } from '../helpers/net'

/** An upstream that answers after `ms`. */
async function slowUpstream (t: Test, ms: number): Promise<string> {
  const upstream = http.createServer((req, res) => { setTimeout(() => res.end('late'), ms).unref() })
  const port = await listen(upstream)
  t.teardown(() => closeServer(upstream))
  return `http://127.0.0.1:${port}/slow`
}

t.test("the README quickstart: the deadline's abort rejects the handler; the process stays up and keeps serving", async (t) => {
  const url = await slowUpstream(t, 1500)
  const server = http.createServer(async (req, res) => {
    if (req.url === '/fast') { res.end('fast'); return }
    const { signal } = deadlineOf(req)!
    const r = await fetch(url, { signal })
    res.end(await r.text())
  })
  const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: '300ms', margin: 50 })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })

  const answer = await get(port, '/report')
  t.equal(answer.status, 504)
  t.equal(JSON.parse(answer.body).code, 'HG_ERR_DEADLINE')
  await until(() => guard.stats().handlerRejections.expected === 1)
  t.equal((await get(port, '/fast')).body, 'fast', 'still serving')

  // A client that leaves early: the handler's signal aborts with HG_ERR_CLIENT_GONE.
  const gone = http.get({ host: '127.0.0.1', port, path: '/report', agent: false })
  gone.on('error', () => {})
  setTimeout(() => gone.destroy(), 100)
  await until(() => guard.stats().handlerRejections.expected === 2)
  t.equal(guard.stats().clientGone.count, 1)
  t.equal((await get(port, '/fast')).body, 'fast', 'still serving')
  t.equal(guard.stats().answered.handlerError, 0, 'expected rejections are not answered again')
})

t.test('any other rejection: a coded 500 while nothing is on the wire, without the error text', async (t) => {
  const incidents: Incident[] = []
  const server = http.createServer(async (req, res) => {
    if (req.url === '/staged') res.writeHead(200, { 'content-type': 'text/plain', 'x-secret': 'a' })
    await new Promise((resolve) => setImmediate(resolve))
    throw new Error('password authentication failed for user "orders_rw"')
  })
  const guard = configureServerTimeouts(server, { ...QUIET, onIncident: (i) => incidents.push(i) })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })

  for (const path of ['/plain', '/staged']) {
    const answer = await get(port, path)
    t.equal(answer.status, 500, path)
    t.equal(answer.headers['content-type'], 'application/problem+json; charset=utf-8')
    t.equal(answer.headers['x-secret'], undefined, 'a staged head is discarded whole')
    t.equal(JSON.parse(answer.body).code, 'HG_ERR_HANDLER_FAILED')
    t.notMatch(answer.body, /password|orders_rw/, 'nothing internal reaches the client')
  }
  t.equal(guard.stats().answered.handlerError, 2)
  t.equal(incidents.length, 2)
  t.match(incidents[0], { kind: 'answered', cause: 'handler-error', statusCode: 500, code: 'HG_ERR_HANDLER_FAILED' })
  t.match((incidents[0]!.error as Error).message, /password authentication/, 'the error reaches the operator through the incident')
})

t.test('a rejection after the response started cuts it (counted); after it finished, it is only counted', async (t) => {
  const server = http.createServer(async (req, res) => {
    if (req.url === '/started') { res.writeHead(200); res.write('part'); await new Promise((resolve) => setTimeout(resolve, 20)) }
    if (req.url === '/done') res.end('done')
    throw new Error('late failure')
  })
  const guard = configureServerTimeouts(server, { ...QUIET, onIncident: () => {} })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })

  const cut = await get(port, '/started').then(() => null, (err: NodeJS.ErrnoException) => err)
  t.ok(cut !== null, 'the client sees a truncated response')
  t.equal(guard.stats().cut.handlerError, 1)
  const done = await get(port, '/done')
  t.equal(done.status, 200)
  t.equal(done.body, 'done')
  await until(() => guard.stats().handlerRejections.afterResponse === 1)
  t.equal(guard.stats().answered.handlerError, 0)
})

t.test('with nobody reading incidents, the error still reaches the process warnings', async (t) => {
  const server = http.createServer(async () => { throw new Error('unread failure') })
  const guard = configureServerTimeouts(server, QUIET)
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  const warned = once(process, 'warning')
  t.equal((await get(port, '/')).status, 500)
  const [warning] = await warned as [Error]
  t.match(warning.message, /unread failure/)
})

t.test('catchRejections: false leaves listeners to Node (no wrapping of their promises)', async (t) => {
  let seen: Promise<unknown> | null = null
  const server = http.createServer((req, res) => { res.end('ok') })
  const guard = configureServerTimeouts(server, { ...QUIET, catchRejections: false })
  server.on('request', () => { seen = Promise.resolve('mine') })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  t.equal((await get(port, '/')).status, 200)
  t.ok(seen !== null)
  t.throws(() => configureServerTimeouts(http.createServer(), { catchRejections: 'yes' as unknown as boolean }), { code: 'HG_ERR_OPT_TYPE' })
})

t.test("the Fastify README example: the route's deadline aborts the fetch; Fastify answers it and keeps serving", async (t) => {
  const url = await slowUpstream(t, 1500)
  const app = Fastify()
  await app.register(hangupGuard, { ...QUIET })
  app.get('/report', { config: { hangupGuard: { timeout: '300ms' } } }, async (request) => {
    return fetch(url, { signal: request.deadline!.signal }).then((r) => r.text())
  })
  app.get('/fast', async () => 'fast')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const answer = await get(port, '/report')
  t.equal(answer.status, 504)
  t.equal(JSON.parse(answer.body).code, 'HG_ERR_DEADLINE')
  t.equal((await get(port, '/fast')).body, 'fast', 'still serving')
})
