/**
 * Node's real behaviour behind rules R2, R4 and R7 (docs/timeouts.md), on a socket, on every line.
 * R1, R3 and R6 are shown in test/timeouts.test.ts and test/proxies.test.ts.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { listen, closeServer } from '../helpers/net'

t.test(`R2 on Node ${process.version}: an idle keep-alive connection is closed about keepAliveTimeout + 1 s after its last response`, async (t) => {
  const server = http.createServer((req, res) => res.end('ok'))
  server.keepAliveTimeout = 200
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  const socket = net.connect({ port, host: '127.0.0.1' })
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  await once(socket, 'data')
  const t0 = performance.now()
  await once(socket, 'end')
  const ms = performance.now() - t0
  t.ok(ms >= 1100 && ms < 3000, `closed after ${Math.round(ms)} ms: keepAliveTimeout (200) + Node's 1000 ms buffer, so R2 counts that second`)
  socket.destroy()
})

t.test(`R4 on Node ${process.version}: the constructor refuses headersTimeout > requestTimeout; assigning later is not checked`, async (t) => {
  t.throws(() => http.createServer({ headersTimeout: 2000, requestTimeout: 1000 }), { code: 'ERR_OUT_OF_RANGE' })
  const server = http.createServer()
  server.requestTimeout = 1000
  server.headersTimeout = 2000
  t.equal(server.headersTimeout, 2000, 'accepted silently: hangup-guard checks it (R4)')
})

t.test(`R7 on Node ${process.version}: headersTimeout fires only at a connection check, up to one interval late`, async (t) => {
  const server = http.createServer({ headersTimeout: 200, requestTimeout: 5000, connectionsCheckingInterval: 1000 }, (req, res) => res.end('ok'))
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  const socket = net.connect({ port, host: '127.0.0.1' })
  socket.setEncoding('latin1')
  let got = ''
  socket.on('data', (d: string) => { got += d })
  socket.on('error', () => {})
  await once(socket, 'connect')
  const t0 = performance.now()
  socket.write('GET / HTTP/1.1\r\n') // and never the rest
  await once(socket, 'close')
  const ms = performance.now() - t0
  t.match(got, /^HTTP\/1\.1 408/, "Node's bare 408")
  t.ok(ms >= 600, `${Math.round(ms)} ms for a 200 ms headersTimeout: the 1 s check decides when it fires`)
})
