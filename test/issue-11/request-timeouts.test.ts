/**
 * Issue 11, item 1: Node's requestTimeout bounds the receipt of a request only (a connection leaves
 * Node's check once its message is complete: ConnectionsList::Expired in src/node_http_parser.cc,
 * called from checkConnections in lib/_http_server.js). So a plan with headersTimeout 300 ms and
 * requestTimeout 1 s under a 30 s handler budget is coherent; a client that trickles its headers
 * or its body gets the guard's coded 408 (Node's own is a bare 408), counted; a healthy slow
 * handler still answers. Both doors, on real sockets.
 */
import t, { type Test } from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import Fastify from 'fastify'
import { configureServerTimeouts, type StatsSnapshot, type Incident } from '../../lib/index'
import hangupGuard from '../../lib/fastify'
import { listen, closeServer, QUIET } from '../helpers/net'

const OPTIONS = { ...QUIET, headersTimeout: 300, requestTimeout: 1000, connectionsCheckingInterval: 50 }

async function serve (t: Test, door: 'http' | 'fastify', incidents: Incident[]): Promise<{ port: number, stats: () => StatsSnapshot }> {
  const slow = (): Promise<string> => new Promise((resolve) => setTimeout(() => resolve('done'), 2000))
  if (door === 'http') {
    const server = http.createServer((req, res) => {
      req.resume()
      req.on('end', () => { slow().then((body) => res.end(body), () => {}) })
    })
    const guard = configureServerTimeouts(server, { ...OPTIONS, onIncident: (i) => incidents.push(i) })
    const port = await listen(server)
    t.teardown(async () => { guard.close(); await closeServer(server) })
    return { port, stats: () => guard.stats() }
  }
  const app = Fastify()
  await app.register(hangupGuard, { ...OPTIONS, onIncident: (i) => incidents.push(i) })
  app.post('/*', async () => slow())
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { port: (app.server.address() as net.AddressInfo).port, stats: () => app.hangupGuard.stats() }
}

/** Sends `head`, then `drip` every 100 ms (at most 40 times), and reads until the server closes. */
async function trickle (port: number, head: string, drip: string): Promise<{ raw: string, ms: number }> {
  const socket = net.connect({ port, host: '127.0.0.1' })
  socket.setEncoding('latin1')
  let raw = ''
  let ms = 0
  // Like a real client, it stops sending once an answer starts to arrive: bytes sent into a socket
  // the server has closed draw a reset (TCP), which can drop the answer before it is read.
  socket.on('data', (d: string) => { if (raw === '') { ms = performance.now() - t0; clearInterval(timer) } raw += d })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  await once(socket, 'connect')
  const t0 = performance.now()
  socket.write(head)
  let n = 0
  const timer = setInterval(() => { if (++n > 40 || socket.destroyed) clearInterval(timer); else socket.write(drip) }, 100)
  await closed
  clearInterval(timer)
  return { raw, ms }
}

function problemCode (raw: string): string | null {
  const body = raw.slice(raw.indexOf('\r\n\r\n') + 4)
  try { return (JSON.parse(body) as { code?: string }).code ?? null } catch { return null }
}

for (const door of ['http', 'fastify'] as const) {
  t.test(`${door} on Node ${process.version}: headersTimeout 300 ms, requestTimeout 1 s, handler budget 30 s`, async (t) => {
    const incidents: Incident[] = []
    const { port, stats } = await serve(t, door, incidents)

    const headers = await trickle(port, 'POST /h HTTP/1.1\r\nHost: 127.0.0.1\r\n', 'X-Drip: 1\r\n')
    t.match(headers.raw, /^HTTP\/1\.1 408 Request Timeout\r\n/, 'trickled headers: a 408')
    t.equal(headers.raw.split('HTTP/1.1 ').length - 1, 1, 'one answer only (no second 408 from another listener)')
    t.equal(problemCode(headers.raw), 'HG_ERR_REQUEST_HEADERS_TIMEOUT')
    t.ok(headers.ms >= 280 && headers.ms < 1000, `at about 300 ms (${Math.round(headers.ms)} ms), not at requestTimeout`)

    const body = await trickle(port, 'POST /b HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n', 'x')
    t.match(body.raw, /^HTTP\/1\.1 408 Request Timeout\r\n/, 'trickled body: a 408')
    t.equal(problemCode(body.raw), 'HG_ERR_REQUEST_BODY_TIMEOUT')
    t.ok(body.ms >= 950, `at about 1 s (${Math.round(body.ms)} ms)`)

    const s = stats()
    t.equal(s.answered.headersTimeout, 1, 'counted')
    t.equal(s.answered.bodyTimeout, 1, 'counted')
    t.match(incidents.map((i) => `${i.kind} ${i.cause} ${i.statusCode}`), ['answered headers-timeout 408', 'answered body-timeout 408'])

    // A healthy slow handler whose body arrived at once is never cut by requestTimeout.
    const t0 = performance.now()
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/slow', method: 'POST', agent: false, headers: { 'content-type': 'text/plain' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
      req.on('error', reject)
      req.end('payload')
    })
    t.equal(status, 200)
    t.ok(performance.now() - t0 >= 1900, 'after the 2 s handler, past requestTimeout')
  })
}

t.test('another clientError listener keeps its own answer for other client errors; alone, the guard answers as Node does', async (t) => {
  const server = http.createServer((req, res) => res.end('ok'))
  const guard = configureServerTimeouts(server, QUIET)
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  const bad = await trickle(port, 'NOT HTTP\r\n\r\n', '')
  t.match(bad.raw, /^HTTP\/1\.1 400 Bad Request\r\nConnection: close\r\n\r\n$/, "Node's own 400")
})
