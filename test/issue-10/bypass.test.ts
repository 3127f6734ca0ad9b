/**
 * Issue 10, items 6 and 7: ways around the guard. `exclude` matched the raw path, so
 * `/sse/../api/report` escaped the deadline that routers then served as `/api/report`; requests
 * delivered through 'checkContinue' / 'checkExpectation' skipped the guard entirely.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import Fastify from 'fastify'
import { configureServerTimeouts } from '../../lib/index'
import hangupGuard from '../../lib/fastify'
import { normalizePath } from '../../lib/core/options'
import { listen, closeServer, get, QUIET } from '../helpers/net'

t.test('normalizePath: unreserved percent-escapes decoded, dot segments removed, the query dropped', async (t) => {
  const cases: Array<[string, string]> = [
    ['/api/report', '/api/report'],
    ['/sse/../api/report?x=1', '/api/report'],
    ['/sse/%2e%2e/api/report', '/api/report'],
    ['/sse/%2E%2E/api/report', '/api/report'],
    ['/sse/.%2e/api', '/api'],
    ['/a/./b/../c', '/a/c'],
    ['/../../etc', '/etc'],
    ['/a/b/..', '/a/'],
    ['/a/.', '/a/'],
    ['/%73se/stream', '/sse/stream'],
    ['/sse%2Fstream', '/sse%2Fstream'], // '/' is reserved: not decoded (a different path to a router)
    ['/caf%C3%A9', '/caf%C3%A9']
  ]
  for (const [input, output] of cases) t.equal(normalizePath(input), output, input)
})

for (const door of ['http', 'fastify'] as const) {
  t.test(`${door}: exclude matches the normalised path; dot segments cannot escape the deadline`, async (t) => {
    const options = { ...QUIET, handlerTimeout: 100, margin: 50, exclude: ['/sse/*'] }
    let port: number
    if (door === 'http') {
      const server = http.createServer((req, res) => { setTimeout(() => res.end('late'), 300) })
      const guard = configureServerTimeouts(server, options)
      port = await listen(server)
      t.teardown(async () => { guard.close(); await closeServer(server) })
    } else {
      const app = Fastify()
      await app.register(hangupGuard, options)
      app.get('/*', async () => { await new Promise((resolve) => setTimeout(resolve, 300)); return 'late' })
      await app.listen({ port: 0, host: '127.0.0.1' })
      t.teardown(() => app.close())
      port = (app.server.address() as net.AddressInfo).port
    }
    t.equal((await get(port, '/sse/stream')).status, 200, 'an excluded path has no deadline')
    for (const path of ['/sse/../api/report', '/sse/%2e%2e/api/report', '/%73se/../api/report']) {
      t.equal((await get(port, path)).status, 504, `${path} keeps its deadline`)
    }
  })
}

/** One request with `Expect: 100-continue`, on a raw socket: the status line of the final answer. */
async function expectContinue (port: number, path: string, expect = '100-continue', method = 'POST'): Promise<string> {
  const socket = net.connect({ port, host: '127.0.0.1' })
  socket.setEncoding('latin1')
  let got = ''
  socket.on('data', (d: string) => {
    got += d
    if (got.includes('100 Continue\r\n\r\n') && !got.includes('sent')) { got += 'sent'; socket.write('ab') }
  })
  await once(socket, 'connect')
  socket.write(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: ${expect}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n`)
  await once(socket, 'close')
  const finals = got.replace(/HTTP\/1\.1 100 Continue\r\n\r\n/, '').replace('sent', '')
  return finals.slice(0, finals.indexOf('\r\n'))
}

t.test("'checkContinue' and 'checkExpectation' requests get the deadline and the health paths", async (t) => {
  const server = http.createServer()
  server.on('checkContinue', (req, res) => {
    res.writeContinue()
    req.resume()
    req.on('end', () => { setTimeout(() => res.end('late'), 300) })
  })
  server.on('checkExpectation', (req, res) => { setTimeout(() => res.end('late'), 300) })
  const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: 100, margin: 50 })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  t.match(await expectContinue(port, '/upload'), /^HTTP\/1\.1 504/, 'checkContinue: deadline')
  t.match(await expectContinue(port, '/upload', 'x-custom'), /^HTTP\/1\.1 504/, 'checkExpectation: deadline')
  t.match(await expectContinue(port, '/livez', '100-continue', 'GET'), /^HTTP\/1\.1 200/, 'checkContinue: a probe is answered by the guard')
  t.equal(guard.stats().healthChecks, 1)
  t.equal(guard.stats().answered.deadline, 2)
})
