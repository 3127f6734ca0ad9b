/**
 * handleSignals on the Fastify door, in a forked process (the built package: npm test builds
 * dist/ first): the first SIGTERM drains the server, then app.close() runs the onClose hooks, and
 * the process exits on its own.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'

const root = path.resolve(__dirname, '..')

const CHILD = `
  const http = require('node:http')
  const Fastify = require('fastify')
  const hangupGuard = require('hangup-guard/fastify')
  ;(async () => {
    const app = Fastify()
    await app.register(hangupGuard, { handleSignals: true, drain: { delay: 0, timeout: '2s' }, pressure: false })
    app.addHook('onClose', async () => { console.log(JSON.stringify({ event: 'onClose', stats: app.hangupGuard.stats() })) })
    app.get('/work', async () => { await new Promise((resolve) => setTimeout(resolve, 300)); return 'done' })
    await app.listen({ port: 0, host: '127.0.0.1' })
    http.get({ host: '127.0.0.1', port: app.server.address().port, path: '/work', agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c) => { body += c }).on('end', () => console.log(JSON.stringify({ event: 'answer', status: res.statusCode, body })))
    })
    setTimeout(() => { console.log(JSON.stringify({ event: 'signal' })); process.kill(process.pid, 'SIGTERM') }, 100)
  })()
`

t.test('SIGTERM drains (the request in flight is answered), then app.close() runs onClose; the process exits 0', async (t) => {
  const child = spawn(process.execPath, ['-e', CHILD], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  const [code, signal] = await once(child, 'exit') as [number | null, string | null]
  clearTimeout(timer)
  t.equal(signal, null, 'not killed')
  t.equal(code, 0)
  const events = out.trim().split('\n').map((l) => JSON.parse(l) as { event: string, status?: number, body?: string, stats?: { requests: number, inFlight: number } })
  // The client shares the process, so its 'end' may come just after onClose: order-free checks.
  t.equal(events[0]?.event, 'signal')
  t.match(events.find((e) => e.event === 'answer'), { status: 200, body: 'done' }, 'the request in flight got its answer')
  t.match(events.find((e) => e.event === 'onClose'), { stats: { requests: 1, inFlight: 0 } }, 'onClose ran after it finished')
})
