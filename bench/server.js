'use strict'
// A bench server, run in its own process by bench/lib.js startServer():
//   node bench/server.js <mode> '<json options>'
// It listens on 127.0.0.1 (random port), reports { type: 'listening', port } over IPC, answers
// { id, cmd } messages ('measure'), and exits when the parent goes away.
const http = require('node:http')
const { performance } = require('node:perf_hooks')
const fs = require('node:fs')
const path = require('node:path')
// HG_BENCH_DIST: another build of the package (bench/cost.js experiments on a patched copy).
const DIST = process.env.HG_BENCH_DIST ?? path.join(__dirname, '..', 'dist')
const { configureServerTimeouts, deadlineOf } = require(path.join(DIST, 'index.js'))
// dist/core/ since issue 11's layout; an older build (bench/ab-commits.js) has it at dist/.
const { deadlineSchedulerState } = require(fs.existsSync(path.join(DIST, 'core')) ? path.join(DIST, 'core', 'deadline.js') : path.join(DIST, 'deadline.js'))

const mode = process.argv[2]
const options = JSON.parse(process.argv[3] ?? '{}')
let guard = null // the ServerGuard, when the mode has one
const elapsed = [] // deadline modes: server-side ms from the request's arrival to its answer (bounded)
let slowHandlerWon = 0 // memory mode: /slow handlers that found their response not yet answered by the guard
const slowHandlerWins = [] // ...and, up to 20 since the last 'measure', when they ran (diagnostics)

function hello (req, res) {
  res.writeHead(200, { 'content-type': 'text/plain' })
  res.end('hello world')
}

let busy = 0 // pipeline modes: slow handlers not done yet
let listening = null // the http.Server, for the connection count
function pipelined (req, res) {
  if (req.url !== '/slow') return res.end('fast')
  busy++
  setTimeout(() => { busy--; res.end('slow') }, 100)
}

const modes = {
  // (a) throughput
  'http-bare': () => http.createServer(hello),
  'http-guarded': () => {
    const server = http.createServer(hello)
    guard = configureServerTimeouts(server, options.guard ?? {})
    return server
  },
  // "every feature on" (issue 12): the defaults plus handleSignals, a deadline header and three
  // exclude patterns, none of which matches '/' (the requests stay guarded: the patterns are tested).
  'http-guarded-all': () => {
    const server = http.createServer(hello)
    guard = configureServerTimeouts(server, {
      ...options.guard,
      handleSignals: true,
      deadlineHeader: 'x-envoy-expected-rq-timeout-ms',
      exclude: ['/metrics', '/static/*', /^\/internal\//]
    })
    return server
  },
  // (b) deadline timeliness: the guard's 504 at D vs a handler's own setTimeout(D)
  'deadline-bare': () => http.createServer((req, res) => {
    const t0 = performance.now()
    setTimeout(() => {
      if (elapsed.length < 100_000) elapsed.push(performance.now() - t0)
      res.writeHead(504, { 'content-type': 'application/problem+json' })
      res.end('{"status":504,"detail":"answered by the handler\'s own timer"}')
    }, options.deadlineMs)
  }),
  'deadline-guarded': () => {
    const server = http.createServer(() => {}) // never answers: the guard does, at handlerTimeout
    guard = configureServerTimeouts(server, {
      handlerTimeout: options.deadlineMs,
      onIncident: (incident) => { if (elapsed.length < 100_000) elapsed.push(incident.elapsedMs) }
    })
    return server
  },
  // (c) memory: /fast answers at once; /slow and /abort answer after slowMs, past the budget
  // (the guard answers /slow with 504; the client leaves /abort before the budget is spent).
  memory: () => {
    const server = http.createServer((req, res) => {
      if (req.url === '/fast') return hello(req, res)
      const t0 = performance.now()
      setTimeout(() => {
        if (req.url === '/slow' && !res.headersSent) {
          slowHandlerWon++
          const deadline = deadlineOf(req)
          if (slowHandlerWins.length < 20) {
            slowHandlerWins.push({ elapsedMs: Math.round(performance.now() - t0), remainingMs: deadline?.remaining() ?? null })
          }
        }
        res.end('late')
      }, options.slowMs)
    })
    guard = configureServerTimeouts(server, { handlerTimeout: options.budgetMs })
    return server
  },
  // (e) pipelining: the first request of each connection answers after 100 ms, the rest at once
  'pipeline-bare': () => http.createServer(pipelined),
  'pipeline-guarded': () => {
    const server = http.createServer(pipelined)
    guard = configureServerTimeouts(server, { watchdog: false })
    return server
  },
  // (d) Fastify
  'fastify-plain': () => fastifyApp(null, sameServerOptions()),
  // Fastify's own server defaults (keepAliveTimeout 72 s): what sameServerOptions() changes, against 'fastify-plain'.
  'fastify-plain-own-defaults': () => fastifyApp(null),
  'fastify-guard': async () => {
    const file = path.join(DIST, 'fastify', 'index.js')
    if (!fs.existsSync(file)) return { skip: 'dist/fastify/index.js does not exist (lib/fastify/index.ts not built yet)' }
    const mod = require(file)
    const plugin = typeof mod === 'function'
      ? mod
      : mod.default ?? mod.hangupGuard ?? mod.fastifyHangupGuard ??
        Object.values(mod).find((v) => typeof v === 'function' && v[Symbol.for('skip-override')] === true)
    if (typeof plugin !== 'function') return { skip: `dist/fastify/index.js exports no plugin function (exports: ${Object.keys(mod).join(', ')})` }
    // As documented (docs/api.md, Fastify plugin): factory options from fastifyServerOptions, then the plugin.
    const serverOptions = typeof mod.fastifyServerOptions === 'function' ? mod.fastifyServerOptions({}) : {}
    const app = await fastifyApp((app) => app.register(plugin, options.guard ?? {}), serverOptions)
    guard = app.hangupGuard // its stats() in 'measure' (test/issue-12/cost-floor.test.ts reads them)
    return app
  },
  'fastify-under-pressure': () => fastifyApp((app) => app.register(require('@fastify/under-pressure'), options.underPressure ?? {
    maxEventLoopDelay: 1000,
    maxEventLoopUtilization: 0.98
  }), sameServerOptions()),
  // The floor (bench/cost-floor.js): what any Fastify plugin pays per request, without the guard.
  // One onRequest hook that does nothing: the price of Fastify's hook runner.
  'fastify-empty-hook': () => fastifyApp((app) => app.addHook('onRequest', (request, reply, done) => done()), sameServerOptions()),
  // The least a plugin can do and still give every request a deadline and count it in flight:
  // read the clock, allocate one record, link it into an in-flight list, and unlink it at a later
  // admission once its response has closed (as the guard does between its ticks). No verdict, no
  // timer (a timer would run outside the counted window anyway), no per-route budget.
  'fastify-deadline-floor': () => fastifyApp((app) => {
    let head = null
    let tail = null
    app.addHook('onRequest', (request, reply, done) => {
      while (head !== null && head.res.closed) {
        head = head.next
        if (head === null) tail = null
        else head.prev = null
      }
      const entry = { res: reply.raw, at: performance.now() + 30_000, prev: tail, next: null }
      if (tail === null) head = entry
      else tail.next = entry
      tail = entry
      done()
    })
  }, sameServerOptions())
}

/**
 * The server timeouts of the plugin's documented set-up (fastifyServerOptions({}): keepAliveTimeout
 * 5 s, Node's default, where Fastify's own is 72 s), for every Fastify server of the bench: the
 * servers compared differ by their hooks only. The timeouts change what Node writes on every
 * response: V8's String::WriteUtf8 spends ~70 instructions more writing 'Keep-Alive: timeout=5'
 * than 'timeout=72' (`node bench/cost-profile.js fastify-plain-own-defaults fastify-plain`),
 * though bench/cost.js's count of the two servers differs by less than their processes do.
 * {} when the build has no plugin (another build: HG_BENCH_DIST).
 */
function sameServerOptions () {
  const file = path.join(DIST, 'fastify', 'index.js')
  const fn = fs.existsSync(file) ? require(file).fastifyServerOptions : undefined
  return typeof fn === 'function' ? fn({}) : {}
}

async function fastifyApp (register, serverOptions = {}) {
  const app = require('fastify')({ ...serverOptions, logger: false })
  if (register !== null) register(app)
  app.get('/', async () => 'hello world')
  await app.ready()
  return app
}

async function measure () {
  for (let i = 0; i < 4; i++) {
    global.gc?.()
    await new Promise((resolve) => setImmediate(resolve))
  }
  await new Promise((resolve) => setTimeout(resolve, 50))
  global.gc?.()
  return {
    gcExposed: typeof global.gc === 'function',
    heapUsed: process.memoryUsage().heapUsed,
    scheduler: deadlineSchedulerState(),
    stats: guard?.stats() ?? null,
    slowHandlerWon,
    slowHandlerWins: slowHandlerWins.splice(0)
  }
}

async function main () {
  const make = modes[mode]
  if (make === undefined) throw new Error(`unknown bench server mode '${mode}'`)
  const made = await make()
  if (made.skip !== undefined) {
    process.send({ type: 'skip', reason: made.skip }, () => process.disconnect())
    return
  }
  let port
  if (typeof made.listen === 'function' && made.server !== undefined) { // Fastify instance
    await made.listen({ port: 0, host: '127.0.0.1' })
    port = made.server.address().port
  } else {
    await new Promise((resolve) => made.listen(0, '127.0.0.1', resolve))
    port = made.address().port
  }
  listening = made.server ?? made
  process.on('message', async (msg) => {
    const value = msg.cmd === 'measure'
      ? await measure()
      : msg.cmd === 'elapsed'
        ? elapsed.splice(0)
        : msg.cmd === 'cpu'
          ? process.cpuUsage()
          : msg.cmd === 'busy' ? { busy, connections: await new Promise((resolve) => listening.getConnections((err, n) => resolve(err ? -1 : n))) } : null
    process.send({ type: 'reply', id: msg.id, value })
  })
  process.send({ type: 'listening', port })
}

process.on('disconnect', () => process.exit(0))
main().catch((err) => { console.error(err); process.exit(1) })
