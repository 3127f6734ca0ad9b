/**
 * Issue 10, items 2 and 3: pipelined requests, through both doors. A pipelined request's response
 * waits in Node's queue behind the one before it; on Node 20 and 22, when the connection closes
 * first, the queued responses never emit 'close', and the guard used to keep them in flight
 * forever (a later drain could not finish). A drain used to put `Connection: close` on every
 * response not started, so Node closed the connection after the first and the queued answers,
 * whose handlers had run, were lost.
 */
import t, { type Test } from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import Fastify, { type FastifyInstance } from 'fastify'
import { configureServerTimeouts, type ServerGuard, type StatsSnapshot, type DrainResult, type HangupGuardOptions } from '../../lib/index'
import hangupGuard from '../../lib/fastify'
import { QUIET } from '../helpers/net'

type Door = 'http' | 'fastify'

interface Served {
  port: number
  stats (): StatsSnapshot
  drain (options?: { delay?: number, timeout?: number }): Promise<DrainResult>
  /** Handler runs by path. */
  runs: Map<string, number>
  server: http.Server
}

/**
 * `/slow…` answers after 100 ms, `/staged` writes its head at once and ends after 150 ms, every
 * other path answers at once with its own path.
 */
async function serve (t: Test, door: Door, options: HangupGuardOptions = {}): Promise<Served> {
  const runs = new Map<string, number>()
  const count = (path: string): void => { runs.set(path, (runs.get(path) ?? 0) + 1) }
  const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
  if (door === 'http') {
    const server = http.createServer(async (req, res) => {
      const path = req.url ?? '/'
      count(path)
      if (path.startsWith('/slow')) await delay(100)
      if (path === '/staged') { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('x'); await delay(150) }
      res.end(path)
    })
    const guard: ServerGuard = configureServerTimeouts(server, { ...QUIET, ...options })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => { guard.close(); server.closeAllConnections(); server.close() })
    return { port: (server.address() as net.AddressInfo).port, stats: () => guard.stats(), drain: (o) => guard.drain(o), runs, server }
  }
  const app: FastifyInstance = Fastify()
  await app.register(hangupGuard, { ...QUIET, ...options })
  app.all('/*', async (request, reply) => {
    const path = request.url
    count(path)
    if (path.startsWith('/slow')) await delay(100)
    if (path === '/staged') { reply.raw.writeHead(200, { 'content-type': 'text/plain' }); reply.raw.write('x'); await delay(150); reply.raw.end(path); return reply }
    return path
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => { app.server.closeAllConnections(); return app.close() })
  return { port: (app.server.address() as net.AddressInfo).port, stats: () => app.hangupGuard.stats(), drain: (o) => app.hangupGuard.drain(o), runs, server: app.server }
}

function pipeline (paths: string[], method = 'GET'): string {
  return paths.map((p) => `${method} ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n`).join('')
}

/** Sends the pipelined requests on one connection; resolves with all it read until the server closed it. */
async function exchange (port: number, raw: string): Promise<string> {
  const socket = net.connect({ port, host: '127.0.0.1' })
  socket.setEncoding('latin1')
  let got = ''
  socket.on('data', (d: string) => { got += d })
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(raw)
  await once(socket, 'close')
  return got
}

function responses (raw: string): Array<{ status: number, close: boolean, body: string }> {
  const out: Array<{ status: number, close: boolean, body: string }> = []
  let rest = raw
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n')
    const head = rest.slice(0, end)
    const m = /content-length: (\d+)/i.exec(head)
    let body: string
    if (m !== null) {
      body = rest.slice(end + 4, end + 4 + Number(m[1]))
      rest = rest.slice(end + 4 + Number(m[1]))
    } else { // chunked
      let i = end + 4
      body = ''
      for (;;) {
        const nl = rest.indexOf('\r\n', i)
        const size = parseInt(rest.slice(i, nl), 16)
        if (size === 0) { i = nl + 4; break }
        body += rest.slice(nl + 2, nl + 2 + size)
        i = nl + 2 + size + 2
      }
      rest = rest.slice(i)
    }
    out.push({ status: Number(head.slice(9, 12)), close: /\r\nconnection: close/i.test(head), body })
  }
  return out
}

async function connectionsOf (server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => err === null ? resolve(n) : reject(err)))
}

for (const door of ['http', 'fastify'] as const) {
  t.test(`${door}: 100 connections x 10 pipelined requests, each closed after 30 ms: nothing stays in flight`, async (t) => {
    const served = await serve(t, door)
    const paths = ['/slow', ...Array.from({ length: 9 }, (_, i) => `/q${i}`)]
    const clients: Array<Promise<void>> = []
    for (let c = 0; c < 100; c++) {
      clients.push((async () => {
        const socket = net.connect({ port: served.port, host: '127.0.0.1' })
        socket.on('error', () => {})
        await once(socket, 'connect')
        socket.write(pipeline(paths))
        setTimeout(() => socket.destroy(), 30)
        await once(socket, 'close')
      })())
    }
    await Promise.all(clients)
    // Every handler ran (the slow ones end 100 ms after their start) and every connection is gone.
    const end = performance.now() + 5000
    while ((served.runs.get('/slow') ?? 0) < 100 || await connectionsOf(served.server) > 0) {
      if (performance.now() > end) break
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    await new Promise((resolve) => setTimeout(resolve, 150)) // the last slow handlers end
    t.equal(served.runs.get('/q8'), 100, 'every pipelined request reached its handler')
    t.equal(served.stats().inFlight, 0, 'nothing stays in flight')
    t.equal(served.stats().requests, 1000)
  })

  t.test(`${door}: a deadline cut on a pipelined connection settles the responses queued behind it`, async (t) => {
    const served = await serve(t, door, { handlerTimeout: 60, margin: 20 })
    const got = await exchange(served.port, pipeline(['/staged', '/a', '/b']))
    t.match(got, /^HTTP\/1\.1 200/, 'the started response was cut (no answer after it)')
    t.equal(served.stats().cut.deadline, 1)
    const end = performance.now() + 2000
    while (served.stats().inFlight > 0 && performance.now() < end) await new Promise((resolve) => setTimeout(resolve, 10))
    t.equal(served.stats().inFlight, 0, 'the queued ones are settled with the connection')
  })

  t.test(`${door}: a drain answers every pipelined request in flight; only the last closes the connection`, async (t) => {
    const served = await serve(t, door)
    const socket = net.connect({ port: served.port, host: '127.0.0.1' })
    socket.setEncoding('latin1')
    let got = ''
    socket.on('data', (d: string) => { got += d })
    await once(socket, 'connect')
    socket.write(pipeline(['/slow', '/slow1', '/slow2'], 'POST'))
    const end = performance.now() + 2000
    while (served.stats().inFlight < 3 && performance.now() < end) await new Promise((resolve) => setTimeout(resolve, 5))
    served.drain({ delay: 2000, timeout: 4000 }).then(() => {}, () => {})
    await once(socket, 'close')
    const answers = responses(got)
    t.same(answers.map((a) => a.body), ['/slow', '/slow1', '/slow2'], 'all three answers arrive')
    t.same(answers.map((a) => a.close), [false, false, true], 'only the last carries Connection: close')
    // During the grace phase, a connection that pipelines more requests: every handler that ran
    // has its answer delivered; one that could get none is not run; the last answer closes.
    const paths = ['/slow', '/g1', '/g2', '/g3']
    const again = responses(await exchange(served.port, pipeline(paths, 'POST')))
    const ran = paths.filter((p) => served.runs.has(p))
    t.same(again.map((a) => a.body), ran, `every handler that ran was answered (${ran.join(' ')})`)
    t.ok(ran.length >= 2, 'the connection was not closed after the first response')
    t.same(again.map((a) => a.close), ran.map((_, i) => i === ran.length - 1), 'only the last closes')
    t.equal(served.stats().answered.draining, paths.length - ran.length, 'the others were refused, counted')
  })

  t.test(`${door}: behind a response whose head already says close, a pipelined request is not run`, async (t) => {
    const served = await serve(t, door)
    const socket = net.connect({ port: served.port, host: '127.0.0.1' })
    socket.setEncoding('latin1')
    let got = ''
    socket.on('data', (d: string) => { got += d })
    await once(socket, 'connect')
    // Drain first, then a request that writes its head at once (with close: it is the last).
    served.drain({ delay: 2000, timeout: 4000 }).then(() => {}, () => {})
    socket.write(pipeline(['/staged']))
    while (!got.includes('\r\n\r\n')) await once(socket, 'data')
    socket.write(pipeline(['/late']))
    await once(socket, 'close')
    const answers = responses(got)
    t.equal(answers.length, 1)
    t.equal(answers[0]?.close, true)
    t.equal(served.runs.get('/late'), undefined, 'the handler of a request that could get no answer did not run')
    t.equal(served.stats().answered.draining, 1, 'it was refused (and counted)')
  })
}
