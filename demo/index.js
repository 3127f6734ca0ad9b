'use strict'
// npm run demo: the same node:http app twice, once with Node's timeouts misconfigured the way people
// commonly do ("bare"), once with configureServerTimeouts ("guarded"). Real clients on 127.0.0.1 hit
// both, and we print what the clients saw. Exits 0 only if no guarded client saw a hang up.
const http = require('node:http')
const net = require('node:net')
const path = require('node:path')
const { fork } = require('node:child_process')
const { performance } = require('node:perf_hooks')
const { configureServerTimeouts, planTimeouts } = require('../dist/index.js')
const { startClient, makeCgroup, removeCgroup, withServer, settle, QUOTA } = require('../bench/overload')

const HOST = '127.0.0.1'
const watchdog = setTimeout(() => { console.error('demo: took longer than 45 s, giving up'); process.exit(2) }, 45_000)

function listen (server) {
  return new Promise((resolve) => server.listen(0, HOST, () => resolve(server.address().port)))
}
function stop (server) {
  server.closeAllConnections()
  server.close()
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]

// What one client saw: { status, ms, code? } for an answer, { error, ms } for a hang up / reset.
function get (port, path) {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const req = http.get({ host: HOST, port, path, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { body += c })
      res.on('end', () => {
        const code = res.headers['content-type']?.includes('problem+json') ? JSON.parse(body).code : undefined
        resolve({ status: res.statusCode, ms: performance.now() - t0, code })
      })
    })
    req.setTimeout(5000, () => req.destroy(new Error('no answer within 5 s')))
    req.on('error', (err) => resolve({ error: err.message, ms: performance.now() - t0 }))
  })
}

// (a) A handler slower than the socket timeout. Bare Node destroys the socket at `timeout` ms:
// the client sees "socket hang up". The guard answers 504 at the handler budget instead.
async function scenarioSlowHandler () {
  const app = (req, res) => {
    const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms'))
    setTimeout(() => res.end(`done after ${ms} ms\n`), ms)
  }
  const bare = http.createServer(app)
  bare.timeout = 300 // the misconfiguration: shorter than what the handler may need
  const guarded = http.createServer(app)
  configureServerTimeouts(guarded, { handlerTimeout: 400, margin: 100 })
  try {
    planTimeouts({ handlerTimeout: 400, margin: 100, timeout: 300 })
  } catch (err) {
    console.log(`(a) The planner refuses the bare setting, so the guarded server uses the plan's:\n    ${err.code}: ${err.message}\n`)
  }
  const ports = [await listen(bare), await listen(guarded)]
  const rows = []
  for (const ms of [100, 350, 600]) {
    const [b, g] = await Promise.all(ports.map((port) =>
      Promise.all(Array.from({ length: 3 }, () => get(port, `/?ms=${ms}`)))))
    rows.push({ scenario: `(a) handler takes ${ms} ms (bare: timeout 300 ms)`, bare: b, guarded: g })
  }
  stop(bare)
  stop(guarded)
  return rows
}

// (b) Keep-alive reuse race behind a proxy. The "proxy" keeps idle connections PROXY_IDLE_MS and
// ignores the server's `Keep-Alive: timeout=` hint, as ALB, nginx and most non-Node clients do.
// Node 20 closes an idle keep-alive socket keepAliveTimeout + 1 s after the response (its keep-alive
// buffer), so the bare server (keepAliveTimeout 500) closes at ~1.5 s while the proxy still holds
// the connection as usable until 2 s: a request the proxy sends then is lost (a 502 at a real proxy).
// (With a proxy idle timeout of 1 s there would be no race on Node 20: the server would close last.)
// Guarded, keepAliveTimeout is planned above the proxy's idle timeout: the proxy always closes first.
const PROXY_IDLE_MS = 2000

// One proxy connection: request, response, idle for idleMs (< PROXY_IDLE_MS, so the proxy still
// reuses it), then a second request on the same connection. On a real network the server's FIN is
// still in flight when the proxy picks the connection; on loopback it arrives at once, so this proxy
// (allowHalfOpen) writes regardless, as it would not have seen the FIN yet. Its request then meets a
// closed connection: no answer will ever come (the proxy's 502), which Node's client calls "socket hang up".
function proxyReuse (port, idleMs) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: HOST, allowHalfOpen: true })
    let buf = ''
    let sent = 0
    let t0 = 0
    const hangUp = () => done({ error: 'socket hang up', ms: performance.now() - t0 })
    const request = () => {
      sent++
      t0 = performance.now()
      socket.write('GET / HTTP/1.1\r\nHost: demo\r\n\r\n')
      if (socket.readableEnded) hangUp() // the server had closed (FIN received): this request is lost
    }
    const done = (outcome) => { clearTimeout(timer); socket.destroy(); resolve(outcome) }
    const timer = setTimeout(() => done({ error: 'no answer within 5 s', ms: 0 }), idleMs + 5000)
    socket.on('connect', request)
    socket.on('data', (chunk) => {
      buf += chunk
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return
      const length = Number(/content-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0)
      if (buf.length < end + 4 + length) return
      const status = Number(buf.slice(9, 12))
      buf = buf.slice(end + 4 + length)
      if (sent === 1) setTimeout(request, idleMs) // idle in the proxy's pool, then reused
      else done({ status, ms: performance.now() - t0 })
    })
    socket.on('error', (err) => done({ error: err.code ?? err.message, ms: performance.now() - t0 }))
    socket.on('end', () => { if (sent === 2) hangUp() }) // closed by the server with the request unanswered
    socket.on('close', hangUp)
  })
}

async function scenarioKeepAliveRace () {
  const app = (req, res) => res.end('ok')
  const bare = http.createServer(app)
  bare.keepAliveTimeout = 500 // the misconfiguration: shorter than the proxy's idle timeout
  const guarded = http.createServer(app)
  const guard = configureServerTimeouts(guarded, { upstream: { kind: 'proxy', idleTimeout: PROXY_IDLE_MS }, margin: 200 })
  const ports = [await listen(bare), await listen(guarded)]
  // 10 reuses at ~ keepAliveTimeout + 1 s (the bare server's real close time): 1520, 1540 ... 1700 ms.
  const gaps = Array.from({ length: 10 }, (_, i) => 1520 + 20 * i)
  const [b, g] = await Promise.all(ports.map((port) => Promise.all(gaps.map((gap) => proxyReuse(port, gap)))))
  stop(bare)
  stop(guarded)
  return [{ scenario: '(b) proxy reuses a connection idle 1.5-1.7 s', bare: b, guarded: g, guard }]
}

// (c) Event-loop stall: a CPU-bound handler blocks the loop 600 ms while 5 more requests queue
// behind it. Bare: they are all answered late. Guarded (handlerTimeout 400 ms): requests that waited
// behind a stall longer than their budget get an explicit 503 + Retry-After at once, so a proxy can
// retry them elsewhere instead of waiting for work it has given up on.
async function scenarioStall () {
  const outcomes = []
  for (const mode of ['bare', 'guarded']) {
    const child = fork(path.join(__dirname, 'stall-server.js'), [mode])
    const port = await new Promise((resolve) => child.once('message', resolve))
    const blocked = get(port, '/block')
    await sleep(100) // the server is now blocked; these requests wait in the kernel's queue
    outcomes.push(await Promise.all([blocked, ...Array.from({ length: 5 }, () => get(port, '/'))]))
    child.kill()
  }
  return [{ scenario: '(c) 1 handler blocks the loop 600 ms, 5 wait', bare: outcomes[0], guarded: outcomes[1] }]
}

// (d) Overload in a pod with a CPU limit: each server process starts inside its own cgroup limited
// to 0.25 CPU (limits.cpu: 250m), its handler burns ~4 ms of CPU, and 64 load-test clients loop:
// a new connection, GET, give up (destroy) after 1 s, next request. Both servers run at once, each
// with its own limit and its own client process (bench/overload.js, the `overload` bench section).
const OVERLOAD = { cpuMs: 4, clients: 64, timeoutMs: 1000, durationMs: 4000 }

function overloadOutcome ([, outcome, ms, code]) {
  if (typeof outcome === 'number') return { status: outcome, ms, code }
  if (outcome === 'timeout') return { error: `client gave up after ${OVERLOAD.timeoutMs / 1000} s`, timeout: true, ms }
  return { error: outcome, ms }
}

async function scenarioOverload () {
  const scenario = `(d) 0.25 CPU (cgroup), ${OVERLOAD.cpuMs} ms CPU handler, ${OVERLOAD.clients} clients, new connection each, ${OVERLOAD.timeoutMs / 1000} s timeout, ${OVERLOAD.durationMs / 1000} s`
  const sides = [{ label: 'bare', mode: 'bare' }, { label: 'guarded', mode: 'guard-http' }]
  const cgroups = sides.map((side) => makeCgroup(`demo-${side.mode}`, QUOTA))
  try {
    const reason = cgroups.find((c) => c.reason !== undefined)?.reason
    if (reason !== undefined) return [{ scenario, skipped: `skipped: ${reason}` }]
    const clients = await Promise.all(sides.map(() => startClient()))
    try {
      const [bare, guarded] = await Promise.all(sides.map((side, i) => withServer(side, { handler: 'cpu', cpuMs: OVERLOAD.cpuMs }, cgroups[i].dir, async (server) => {
        const job = { port: server.port, timeoutMs: OVERLOAD.timeoutMs, connection: 'new' }
        await clients[i].run({ ...job, phase: 'warm', durationMs: 500, closed: { clients: 2 } })
        const r = await clients[i].run({ ...job, phase: 'load', durationMs: OVERLOAD.durationMs, closed: { clients: OVERLOAD.clients }, records: true })
        const { report } = await settle(server, 4000) // handlers still to run for clients that left
        return { outcomes: r.records.map(overloadOutcome), late: report.phases.load?.late ?? 0 }
      })))
      return [{ scenario, bare: bare.outcomes, guarded: guarded.outcomes, late: [bare.late, guarded.late] }]
    } finally {
      await Promise.all(clients.map((c) => c.stop()))
    }
  } finally {
    for (const c of cgroups) if (c.dir !== undefined) removeCgroup(c.dir)
  }
}

// "4× 200 ~101 ms, 3× socket hang up ~301 ms": one group per outcome, with its median client time.
function describe (outcomes) {
  const groups = new Map()
  for (const o of outcomes) {
    const label = o.error ?? (o.code ? `${o.status} ${o.code}` : String(o.status))
    if (!groups.has(label)) groups.set(label, [])
    groups.get(label).push(o.ms)
  }
  return [...groups].map(([label, ms]) => `${ms.length}× ${label} ~${Math.round(median(ms))} ms`).join(', ')
}
const hangUps = (outcomes = []) => outcomes.filter((o) => o.error !== undefined && !o.timeout).length

function printTable (rows) {
  const table = [['scenario', 'bare: what clients saw', 'guarded: what clients saw'],
    ...rows.map((r) => r.skipped !== undefined ? [r.scenario, r.skipped, r.skipped] : [r.scenario, describe(r.bare), describe(r.guarded)])]
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)))
  const line = (r) => r.map((cell, i) => cell.padEnd(widths[i])).join(' | ').trimEnd()
  console.log(line(table[0]))
  console.log(widths.map((w) => '-'.repeat(w)).join('-+-'))
  for (const r of table.slice(1)) console.log(line(r))
}

async function main () {
  console.log('hangup-guard demo: the same app, bare vs configureServerTimeouts, real clients on 127.0.0.1\n')
  const rows = [...await scenarioSlowHandler(), ...await scenarioKeepAliveRace(), ...await scenarioStall(), ...await scenarioOverload()]
  printTable(rows)
  const overload = rows.find((r) => r.late !== undefined)
  if (overload !== undefined) {
    console.log(`\n(d) handlers that ran after their client had given up: bare ${overload.late[0]}, guarded ${overload.late[1]} (counted in the server)`)
  }
  const bareHangUps = rows.reduce((n, r) => n + hangUps(r.bare), 0)
  const guardedHangUps = rows.reduce((n, r) => n + hangUps(r.guarded), 0)
  console.log(`\nhang ups / resets seen by clients: bare ${bareHangUps}, guarded ${guardedHangUps}`)
  console.log('\nThe guarded server of (b) planned its timeouts this way (guard.explain()):\n')
  console.log(rows.find((r) => r.guard).guard.explain())
  if (bareHangUps === 0) console.log('\nnote: the bare server had no hang ups this time (a very slow machine?)')
  if (rows.some((r) => /^\((a|b)\)/.test(r.scenario) && r.guarded.some((o) => o.code === 'HG_ERR_STALLED'))) {
    console.log('\nnote: this busy machine stalled the demo process for longer than a budget; the guard answered the requests that had waited behind the stall with 503 (stall shedding, as in (c)): explicit answers, not hang ups.')
  }
  clearTimeout(watchdog)
  process.exitCode = guardedHangUps === 0 ? 0 : 1
  console.log(guardedHangUps === 0 ? '\nOK: no guarded client saw a hang up.' : '\nFAIL: a guarded client saw a hang up.')
}

main().catch((err) => { console.error(err); process.exit(1) })
