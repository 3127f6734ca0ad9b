'use strict'
// A server of the overload section (bench/overload.js), in its own process, started by
// bench/lib.js startServer() (inside a CPU-limited cgroup when the scenario has one: the launcher
// moves the shell into the cgroup and execs node, so no module is loaded outside it).
//   node bench/overload-server.js <bare|under-pressure|guard-http|guard-fastify> '<json options>'
// options: { handler: 'cpu', cpuMs } (fixed work calibrated to cpuMs of CPU) or
//          { handler: 'io', slots, ioMs } (awaits a dependency of `slots` slots of ioMs each).
// Every mode runs the same handler on GET / and GET /stall?ms=N (a busy loop of N ms, not counted).
// The client sends x-sent-at (Date.now() at send), x-give-up-ms (its timeout) and x-phase: this
// process counts, per phase, the handlers that started (and the dependency calls that began) after
// the client had given up. Same machine, same clock (CLOCK_REALTIME in both processes).
const http = require('node:http')
const fs = require('node:fs')

const mode = process.argv[2]
const options = JSON.parse(process.argv[3] ?? '{}')
const MAX_WAITS = 50_000

const phases = new Map() // x-phase → { started, late, lateWork, waits }
let lastStartAt = 0
let guard = null // { stats() } when the mode has a hangup-guard
const stall = { start: null, end: null }

function phaseOf (headers) {
  const key = headers['x-phase'] ?? '-'
  let p = phases.get(key)
  if (p === undefined) {
    p = { started: 0, late: 0, lateWork: 0, waits: [] }
    phases.set(key, p)
  }
  return p
}

/** Called first thing in the handler: records when it started relative to the client's give-up time. */
function onStart (headers) {
  const now = Date.now()
  lastStartAt = now
  const p = phaseOf(headers)
  p.started++
  const sentAt = Number(headers['x-sent-at'])
  if (!Number.isFinite(sentAt)) return
  const wait = now - sentAt
  if (p.waits.length < MAX_WAITS) p.waits.push(wait)
  if (wait > Number(headers['x-give-up-ms'])) p.late++
}

// CPU handler: fixed work (a real handler does work, not "CPU until a clock says so"), calibrated
// at start-up against process.cpuUsage() so that one call costs about options.cpuMs of CPU time.
let sink = 0
function spin (n) {
  let x = sink
  for (let i = 0; i < n; i++) x = (Math.imul(x, 1103515245) + 12345) | 0
  sink = x
}
function cpuUs () {
  const u = process.cpuUsage()
  return u.user + u.system
}
let spinPerMs = 0
let calibratedMs = null
if (options.handler === 'cpu') {
  spin(2e6) // JIT warm-up
  let best = Infinity
  for (let i = 0; i < 5; i++) {
    const t0 = cpuUs()
    spin(2e6)
    best = Math.min(best, (cpuUs() - t0) / 1000)
  }
  spinPerMs = 2e6 / best
  const t0 = cpuUs()
  for (let i = 0; i < 10; i++) spin(Math.round(spinPerMs * options.cpuMs))
  calibratedMs = (cpuUs() - t0) / 10_000 // reported: what one handler's work costs here
}

// I/O handler: a dependency of `slots` slots (a pool) held ioMs each, FIFO when all are busy.
let freeSlots = options.slots ?? 0
const waiting = []
function acquire (resolve) {
  if (freeSlots > 0) { freeSlots--; resolve() } else waiting.push(resolve)
}
function release () {
  const next = waiting.shift()
  if (next !== undefined) next()
  else freeSlots++
}
async function dependency (headers) {
  await new Promise(acquire)
  const sentAt = Number(headers['x-sent-at'])
  if (Date.now() - sentAt > Number(headers['x-give-up-ms'])) phaseOf(headers).lateWork++
  await new Promise((resolve) => setTimeout(resolve, options.ioMs))
  release()
  return 'ok'
}

/** The handler of GET /: a string (CPU) or a promise of one (I/O). */
function work (headers) {
  onStart(headers)
  if (options.handler === 'io') return dependency(headers)
  spin(Math.round(spinPerMs * options.cpuMs))
  return 'ok'
}

function stallFor (url) {
  const ms = Number(new URL(url, 'http://x').searchParams.get('ms'))
  stall.start = Date.now()
  const end = stall.start + ms
  while (Date.now() < end) { /* the event loop is blocked */ }
  stall.end = Date.now()
  return 'stalled'
}

function httpHandler (req, res) {
  if (req.url.startsWith('/stall')) return res.end(stallFor(req.url))
  const body = work(req.headers)
  if (typeof body === 'string') res.end(body)
  else body.then((b) => res.end(b))
}

async function fastifyApp (register, serverOptions) {
  const app = require('fastify')({ ...serverOptions, logger: false })
  await register(app)
  app.get('/', (request, reply) => {
    const body = work(request.headers)
    if (typeof body === 'string') reply.send(body)
    else body.then((b) => reply.send(b))
    return reply
  })
  app.get('/stall', (request, reply) => { reply.send(stallFor(request.url)); return reply })
  await app.ready()
  return app
}

const modes = {
  bare: () => http.createServer(httpHandler),
  'guard-http': () => {
    const { configureServerTimeouts } = require('../dist/index.js')
    const server = http.createServer(httpHandler)
    guard = configureServerTimeouts(server) // the defaults
    return server
  },
  'under-pressure': () => fastifyApp((app) => app.register(require('@fastify/under-pressure'), { maxEventLoopDelay: 1000 }), {}),
  'guard-fastify': async () => {
    const plugin = require('../dist/fastify/index.js')
    const app = await fastifyApp((app) => app.register(plugin, {}), plugin.fastifyServerOptions({}))
    guard = app.hangupGuard
    return app
  }
}

function cgroupLine () {
  try {
    const lines = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')
    return lines.find((l) => (l.split(':')[1] ?? '').split(',').includes('cpu')) ?? lines.find((l) => l.startsWith('0::')) ?? null
  } catch {
    return null
  }
}

function report () {
  const out = {}
  for (const [key, p] of phases) {
    const sorted = p.waits.slice().sort((a, b) => a - b)
    out[key] = { started: p.started, late: p.late, lateWork: p.lateWork, waitP50: sorted.length ? sorted[sorted.length >> 1] : null }
  }
  return { at: Date.now(), phases: out, queued: waiting.length, sinceLastStartMs: lastStartAt === 0 ? null : Date.now() - lastStartAt, cpuUs: cpuUs(), stall: { ...stall }, stats: guard?.stats() ?? null }
}

async function main () {
  const made = await modes[mode]()
  let port
  if (typeof made.listen === 'function' && made.server !== undefined) { // Fastify
    await made.listen({ port: 0, host: '127.0.0.1' })
    port = made.server.address().port
  } else {
    await new Promise((resolve) => made.listen(0, '127.0.0.1', resolve))
    port = made.address().port
  }
  process.on('message', (msg) => {
    const value = msg.cmd === 'report' ? report() : msg.cmd === 'info' ? { cgroup: cgroupLine(), calibratedMs, pid: process.pid } : null
    process.send({ type: 'reply', id: msg.id, value })
  })
  process.send({ type: 'listening', port })
}

process.on('disconnect', () => process.exit(0))
main().catch((err) => { console.error(err); process.exit(1) })
