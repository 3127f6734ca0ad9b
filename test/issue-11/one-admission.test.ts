/**
 * Issue 11, item 4: both doors call one admission function in the core. The copies had drifted:
 * during the drain's grace phase a refusal (here: under pressure) closed the connection on
 * node:http and kept it alive on Fastify.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import Fastify from 'fastify'
import { configureServerTimeouts } from '../../lib/index'
import hangupGuard from '../../lib/fastify'
import { listen, closeServer, get, until } from '../helpers/net'

const OPTIONS = { watchdog: false as const, pressure: { maxEventLoopDelay: false as const, healthCheck: () => false }, drain: { delay: 5000, timeout: 6000 } }

for (const door of ['http', 'fastify'] as const) {
  t.test(`${door}: a refusal during the grace phase closes its connection`, async (t) => {
    let port: number
    let drain: () => Promise<unknown>
    if (door === 'http') {
      const server = http.createServer((req, res) => res.end('ok'))
      const guard = configureServerTimeouts(server, OPTIONS)
      port = await listen(server)
      drain = () => guard.drain()
      t.teardown(async () => { guard.close(); await closeServer(server) })
    } else {
      const app = Fastify()
      await app.register(hangupGuard, OPTIONS)
      app.get('/', async () => 'ok')
      await app.listen({ port: 0, host: '127.0.0.1' })
      port = (app.server.address() as net.AddressInfo).port
      drain = () => app.hangupGuard.drain()
      t.teardown(() => { app.server.closeAllConnections(); return app.close() })
    }
    const agent = new http.Agent({ keepAlive: true })
    t.teardown(() => agent.destroy())
    await until(async () => (await get(port, '/', { agent })).status === 503)
    const before = await get(port, '/', { agent })
    t.equal(before.headers.connection, 'keep-alive', 'before the drain, a refusal keeps the connection')
    drain().then(() => {}, () => {})
    const during = await get(port, '/', { agent })
    t.equal(during.status, 503)
    t.equal(during.headers.connection, 'close', 'during the grace phase, it closes it: the client must go elsewhere')
  })
}
