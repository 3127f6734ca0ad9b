/**
 * Behind real proxies (Debian's nginx and HAProxy, installed by .ci/run): the server answers
 * before the proxy gives up, and the proxy closes idle connections first.
 */
import t from 'tap'
import http from 'node:http'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { configureServerTimeouts } from '../lib/http'
import { QUIET, listen, closeServer, get } from './helpers/net'
import { have, startNginx, startHaproxy } from './helpers/proxies'

const slow = (ms: number): http.RequestListener => (req, res) => { setTimeout(() => res.end('late'), ms) }

/** Records, per upstream connection, which side closed it first. */
function watchCloses (server: http.Server): { server: number, proxy: number } {
  const count = { server: 0, proxy: 0 }
  server.on('connection', (socket: Socket) => {
    let proxyEnded = false
    socket.on('end', () => { proxyEnded = true })
    socket.on('close', () => { if (proxyEnded) count.proxy++; else count.server++ })
  })
  return count
}

t.test('nginx', { skip: have('nginx') ? false : 'nginx is not installed (bash .ci/run installs it)' }, async (t) => {
  t.test('a slow handler: nginx answers its own 504 after proxy_read_timeout; with the plan the server answers first, with a coded body', async (t) => {
    const bare = http.createServer(slow(2500))
    const nginx = await startNginx(await listen(bare), 'keepalive 4;', 'proxy_read_timeout 1500ms;')
    const fromNginx = await get(nginx.port, '/')
    t.equal(fromNginx.status, 504)
    t.match(fromNginx.body, /<center>nginx/, "nginx's own error page: the client never learns why")
    await nginx.stop()
    await closeServer(bare)

    const server = http.createServer(slow(2500))
    const guard = configureServerTimeouts(server, { ...QUIET, upstream: { name: 'nginx (test)', idleTimeout: 1000, responseTimeout: 1500 }, margin: 400 })
    t.equal(guard.plan.handlerTimeout.value, 1100)
    const proxied = await startNginx(await listen(server), 'keepalive 4;', 'proxy_read_timeout 1500ms;')
    const answer = await get(proxied.port, '/')
    t.equal(answer.status, 504)
    t.equal(JSON.parse(answer.body).code, 'HG_ERR_DEADLINE', 'the guard answer passes through nginx')
    t.ok(answer.ms < 1500, `answered after ${Math.round(answer.ms)} ms, before nginx's 1.5 s`)
    await proxied.stop()
    guard.close()
    await closeServer(server)
  })

  t.test('upstream keepalive: without the plan the server closes idle connections under nginx; with it nginx closes first', async (t) => {
    const run = async (server: http.Server): Promise<{ server: number, proxy: number }> => {
      const closes = watchCloses(server)
      const nginx = await startNginx(await listen(server), 'keepalive 4; keepalive_timeout 1500ms;', '')
      for (let i = 0; i < 3; i++) t.equal((await get(nginx.port, '/')).status, 200)
      await sleep(2800) // past both idle timeouts (nginx 1.5 s; bare server 0.3 + 1 s buffer)
      await nginx.stop()
      await closeServer(server)
      return closes
    }
    const bare = http.createServer((req, res) => res.end('ok'))
    bare.keepAliveTimeout = 300
    const bareCloses = await run(bare)
    t.ok(bareCloses.server >= 1, `bare: the server closed ${bareCloses.server} idle connection(s) nginx still pooled`)

    const server = http.createServer((req, res) => res.end('ok'))
    const guard = configureServerTimeouts(server, { ...QUIET, upstream: { kind: 'proxy', idleTimeout: 1500 }, margin: 500 })
    t.equal(server.keepAliveTimeout, 2000)
    const planned = await run(server)
    t.equal(planned.server, 0, 'with the plan the server never closed a pooled connection')
    t.ok(planned.proxy >= 1, 'nginx closed its idle connection first')
    t.equal(guard.stats().idleClosed, 0)
    guard.close()
  })
})

t.test('haproxy: the server answers 504 before `timeout server` makes HAProxy answer its own', { skip: have('haproxy') ? false : 'haproxy is not installed (bash .ci/run installs it)' }, async (t) => {
  const bare = http.createServer(slow(2500))
  const hp = await startHaproxy(await listen(bare), '  timeout server 1500ms')
  const fromProxy = await get(hp.port, '/')
  t.equal(fromProxy.status, 504)
  t.match(fromProxy.body, /504 Gateway Time-out/)
  await hp.stop()
  await closeServer(bare)

  const server = http.createServer(slow(2500))
  const guard = configureServerTimeouts(server, { ...QUIET, upstream: { name: 'haproxy (test)', idleTimeout: 1000, responseTimeout: 1500 }, margin: 400 })
  const proxied = await startHaproxy(await listen(server), '  timeout server 1500ms')
  const answer = await get(proxied.port, '/')
  t.equal(answer.status, 504)
  t.equal(JSON.parse(answer.body).code, 'HG_ERR_DEADLINE')
  t.ok(answer.ms < 1500, `answered after ${Math.round(answer.ms)} ms, before HAProxy's 1.5 s`)
  await proxied.stop()
  guard.close()
  await closeServer(server)
})
