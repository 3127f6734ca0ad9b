'use strict'
// Helpers shared by the bench sections: child servers (fork), small statistics, formatting.
const { fork, spawn } = require('node:child_process')
const path = require('node:path')

const children = new Set()

/**
 * Starts bench/server.js (or `launch.script`) in its own process (so the load generator does not
 * share the server's event loop) and resolves once it listens on 127.0.0.1. `call(cmd)` asks it
 * something over IPC. With `launch.cgroupDir`, a shell writes its own pid to the cgroup's
 * cgroup.procs and then execs node (same pid): the server loads every module inside the cgroup.
 * `launch.execPath` runs it under another program (bench/cost.js: valgrind, whose own arguments and
 * node's path are then `execArgv`); `launch.startTimeoutMs` allows a slower start.
 */
function startServer (mode, options = {}, execArgv = [], launch = {}) {
  const startTimeoutMs = launch.startTimeoutMs ?? 15_000
  const script = launch.script ?? path.join(__dirname, 'server.js')
  const args = [mode, JSON.stringify(options)]
  const stdio = ['ignore', launch.stdout ?? 'inherit', 'inherit', 'ipc']
  const child = launch.cgroupDir === undefined
    ? fork(script, args, { execArgv, execPath: launch.execPath ?? process.execPath, env: launch.env ?? process.env, stdio })
    : spawn('/bin/sh', ['-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', launch.cgroupDir, process.execPath, ...execArgv, script, ...args], { stdio })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let nextId = 0
  const waiting = new Map()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bench server '${mode}' did not start within ${startTimeoutMs / 1000} s`)), startTimeoutMs)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`bench server '${mode}' exited (${code}) before listening`)) })
    child.on('message', (msg) => {
      if (msg.type === 'listening') {
        clearTimeout(timer)
        resolve({
          mode,
          port: msg.port,
          url: `http://127.0.0.1:${msg.port}`,
          child,
          call (cmd, timeoutMs = 30_000) {
            const id = ++nextId
            return new Promise((resolve, reject) => {
              const t = setTimeout(() => { waiting.delete(id); reject(new Error(`bench server '${mode}': no reply to '${cmd}'`)) }, timeoutMs)
              waiting.set(id, (reply) => { clearTimeout(t); resolve(reply) })
              child.send({ id, cmd })
            })
          },
          stop () { return stopChild(child) }
        })
      } else if (msg.type === 'reply') {
        waiting.get(msg.id)?.(msg.value)
        waiting.delete(msg.id)
      } else if (msg.type === 'skip') {
        clearTimeout(timer)
        reject(Object.assign(new Error(msg.reason), { skip: true }))
      }
    })
  })
}

/**
 * This process's environment without what would change how V8 compiles or runs a server: a test
 * runner's preloaded modules and flags (NODE_OPTIONS: tap's --enable-source-maps runs Node's
 * source-map parser in the server) and coverage (NODE_V8_COVERAGE allocates every function's
 * feedback at once).
 */
function plainEnv () {
  const env = { ...process.env }
  for (const key of Object.keys(env)) if (key === 'NODE_OPTIONS' || key === 'NODE_V8_COVERAGE' || /^(TAP|_TAPJS|TS_NODE)/.test(key)) delete env[key]
  return env
}

/** Ends one child we started, by its handle (SIGTERM, then SIGKILL after 2 s). */
function stopChild (child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 2000)
    child.once('exit', () => { clearTimeout(kill); resolve() })
    child.kill('SIGTERM')
  })
}

function stopAllChildren () {
  return Promise.all([...children].map(stopChild))
}

function parseArgs (argv) {
  // scenarios / servers: filters of the overload section (bench/overload.js); null: all.
  const args = { quick: false, only: null, scenarios: null, servers: null }
  const list = (a) => new Set(a.slice(a.indexOf('=') + 1).split(',').filter(Boolean))
  for (const a of argv) {
    if (a === '--quick') args.quick = true
    else if (a.startsWith('--only=')) args.only = list(a)
    else if (a.startsWith('--scenarios=') || a.startsWith('--scenario=')) args.scenarios = list(a)
    else if (a.startsWith('--servers=')) args.servers = list(a)
    else throw Object.assign(new Error(`unknown argument ${a}; use --quick, --only=<section>[,<section>], --scenarios=a,b,c,d and --servers=<mode>[,<mode>] (overload; see bench/index.js)`), { usage: true })
  }
  return args
}

function percentile (values, p) {
  if (values.length === 0) return NaN
  const sorted = values.slice().sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}
function median (values) {
  if (values.length === 0) return NaN
  const sorted = values.slice().sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const fmt = (n, digits = 2) => Number.isFinite(n) ? n.toFixed(digits) : String(n)

/**
 * Prints rows (arrays of strings) as an aligned table, first row as the header. `align` has one
 * letter per column, 'l' or 'r'; by default the first column is left-aligned, the others right.
 */
function table (rows, align = 'l' + 'r'.repeat(rows[0].length - 1)) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)))
  const line = (r) => r.map((c, i) => (align[i] === 'l' ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ').trimEnd()
  console.log(line(rows[0]))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const r of rows.slice(1)) console.log(line(r))
}

/**
 * Runs `fn(i)` for i in [0, total) with at most `concurrency` at once; stops issuing new work after
 * `maxMs` (the count actually done is returned).
 */
async function runBounded (total, concurrency, maxMs, fn) {
  let next = 0
  let done = 0
  const until = Date.now() + maxMs
  const worker = async () => {
    while (next < total && Date.now() <= until) {
      await fn(next++)
      done++
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker))
  return done
}

/** Index of the last entry of `sorted` (ascending by `start`) whose start is <= value; -1 if none. */
function lastAtOrBelow (sorted, value) {
  let lo = 0
  let hi = sorted.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (sorted[mid].start <= value) lo = mid + 1
    else hi = mid - 1
  }
  return hi
}

module.exports = { plainEnv, startServer, stopChild, stopAllChildren, parseArgs, percentile, median, sleep, fmt, table, runBounded, lastAtOrBelow }
