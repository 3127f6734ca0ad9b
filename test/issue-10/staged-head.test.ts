/**
 * Issue 10, item 4: writeHead() stages a head without writing a byte; a handler that then overruns
 * its budget used to get its socket destroyed (the client: `socket hang up`, 0 bytes). While
 * nothing is on the wire, the staged head is dropped and the client gets the explicit 504.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import Fastify from 'fastify'
import { configureServerTimeouts } from '../../lib/index'
import hangupGuard from '../../lib/fastify'
import { listen, closeServer, get, QUIET } from '../helpers/net'

t.test(`Node ${process.version}: after writeHead() alone, headersSent is true and _headerSent false; once a write is flushed, both true`, async (t) => {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    const staged = { headersSent: res.headersSent, _headerSent: (res as unknown as { _headerSent: boolean })._headerSent }
    res.write('x')
    // Node 24 and later cork the first tick's chunks and flush them on the next tick.
    setImmediate(() => {
      const written = { headersSent: res.headersSent, _headerSent: (res as unknown as { _headerSent: boolean })._headerSent }
      res.end(JSON.stringify({ staged, written }))
    })
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  const body = (await get(port, '/')).body.slice(1)
  t.same(JSON.parse(body), { staged: { headersSent: true, _headerSent: false }, written: { headersSent: true, _headerSent: true } })
})

t.test('node:http: writeHead() then an overrun: the client gets the 504, without the staged headers', async (t) => {
  const server = http.createServer((req, res) => {
    if (req.url === '/204') res.writeHead(204)
    else res.writeHead(200, { 'content-type': 'text/csv', 'x-report': 'staged' })
  })
  const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: 100, margin: 50 })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  for (const path of ['/report', '/204']) {
    const answer = await get(port, path)
    t.equal(answer.status, 504, path)
    t.equal(answer.headers['x-report'], undefined)
    t.equal(answer.headers['content-type'], 'application/problem+json; charset=utf-8')
    t.equal(JSON.parse(answer.body).code, 'HG_ERR_DEADLINE', 'with its body (a staged 204 had no body)')
  }
  t.equal(guard.stats().answered.deadline, 2)
  t.equal(guard.stats().cut.deadline, 0)
})

t.test('node:http: a HEAD request with a staged head gets the 504 head without a body', async (t) => {
  const server = http.createServer((req, res) => { res.writeHead(200, { 'content-length': '10' }) })
  const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: 100, margin: 50 })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  const socket = net.connect({ port, host: '127.0.0.1' })
  socket.setEncoding('latin1')
  let got = ''
  socket.on('data', (d: string) => { got += d })
  socket.write('HEAD /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
  await new Promise((resolve) => socket.on('close', resolve))
  t.match(got, /^HTTP\/1\.1 504 /)
  t.equal(got.split('\r\n\r\n')[1], '', 'no body after the head')
})

t.test('Fastify: reply.raw.writeHead() then an overrun: the 504 goes through the reply', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, { ...QUIET, handlerTimeout: 100, margin: 50 })
  app.get('/report', async (request, reply) => {
    reply.raw.writeHead(200, { 'content-type': 'text/csv', 'x-report': 'staged' })
    await new Promise((resolve) => setTimeout(resolve, 400))
    return reply
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const answer = await get((app.server.address() as net.AddressInfo).port, '/report')
  t.equal(answer.status, 504)
  t.equal(answer.headers['x-report'], undefined)
  t.equal(JSON.parse(answer.body).code, 'HG_ERR_DEADLINE')
  t.equal(app.hangupGuard.stats().answered.deadline, 1)
})

t.test('bytes on the wire make it a cut (counted), not an answer', async (t) => {
  const server = http.createServer((req, res) => { res.writeHead(200); res.write('partial') })
  const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: 100, margin: 50 })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  const err = await get(port, '/').then(() => null, (e: Error) => e)
  t.ok(err !== null)
  t.equal(guard.stats().cut.deadline, 1)
})
