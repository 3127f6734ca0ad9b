'use strict'
// (g) Cost: instructions per request, counted by valgrind's callgrind, which a busy shared machine
// does not disturb (req/s ratios it does: see throughput and fastify).
//
// Method. Each server runs alone under `valgrind --tool=callgrind` (bench/server.js, the same modes
// as the other sections); the load generator (bench/raw-client.js) runs outside valgrind, in this
// process. Its connections are opened once, before anything is counted, and kept, so a measured
// run holds requests only. After a warm-up (the JIT tiers up), each measured run is framed by
// `callgrind_control --zero` and `--dump` on the same process: start-up and warm-up are never
// counted, and instructions per request are the slope between a run of N1 and one of N2 requests,
// (I(N2) - I(N1)) / (N2 - N1), so what every run pays once (the zero/dump commands, the last
// responses' tail, the settle pause) cancels. Each slope is taken twice (N1, N2, N1, N2) to show it
// repeats. Counts include every thread of the process (V8's GC helpers work for the requests too).
//
// Timers. Under callgrind a server runs ~50x slower, so work driven by wall time (the guard's
// sampler tick every 20 ms, its 1 s samples, the event-loop-delay histogram, the watchdog thread,
// under-pressure's sampler) falls on ~50x fewer requests per second than in production. The section
// measures that rate on the idle server (instructions per second with no request, in the same
// process, before and after the runs) and prints the slope both raw and with that rate times each
// run's duration taken out: the corrected figure is the per-request cost, the idle rate is the
// timers' own cost (in production divide it by the real request rate).
const { execFile, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { startServer, sleep, fmt, table, median } = require('./lib')
const { RawClient } = require('./raw-client')

const SERVERS = [
  ['bare node:http', 'http-bare'],
  ['guard node:http door (defaults)', 'http-guarded'],
  ['guard node:http door, every feature on', 'http-guarded-all'],
  ['plain Fastify', 'fastify-plain'],
  ['Fastify + under-pressure', 'fastify-under-pressure'],
  ['hangup-guard Fastify plugin', 'fastify-guard']
]
/** [label, baseline label, target ratio or null] */
const PAIRS = [
  ['guard node:http door (defaults)', 'bare node:http', 1.03],
  ['guard node:http door, every feature on', 'bare node:http', 1.05],
  ['hangup-guard Fastify plugin', 'plain Fastify', null],
  ['Fastify + under-pressure', 'plain Fastify', null],
  ['hangup-guard Fastify plugin', 'Fastify + under-pressure', 1.00]
]

/**
 * Pressure limits under callgrind, where the loop runs ~50x slower. The guard's event-loop-delay
 * check is off: a 1 s window in which the 10 ms histogram timer never ran reads NaN, which fails
 * closed (503 until the next sample), and a measured run must hold hello worlds only. The other
 * default checks stay on, and the request path is the same either way (admission reads one field,
 * `pressure.reason`; the checks run on the sampler's timer). under-pressure keeps both its checks on,
 * so its onRequest hook runs, with maxEventLoopDelay scaled by 60 (1 s in production) and
 * maxEventLoopUtilization at 1 (a loop under callgrind is always busy).
 */
const SERVER_OPTIONS = {
  guard: { pressure: { maxEventLoopDelay: false } },
  underPressure: { maxEventLoopDelay: 60_000, maxEventLoopUtilization: 1 }
}

const SETTINGS = {
  full: { connections: 10, pipelinings: [1, 10], n1: 2000, n2: 8000, warmup: 5000, idleMs: 2000, repeats: 2 },
  quick: { connections: 10, pipelinings: [1], n1: 1000, n2: 4000, warmup: 3000, idleMs: 1000, repeats: 2 }
}
/** Wait after the last response before the dump, for the server's tail (finish/close events). */
const SETTLE_MS = 300
const RUN_TIMEOUT_MS = 180_000

/** Why the section cannot run here, or null. */
function missingTools () {
  for (const [tool, args] of [['valgrind', ['--version']], ['callgrind_control', ['-h']], ['vgdb', ['--help']]]) {
    const r = spawnSync(tool, args, { stdio: 'ignore' })
    if (r.error !== undefined) return `${tool} not found (${r.error.code}); install Debian's valgrind package (apt-get install valgrind)`
  }
  return null
}

function callgrindControl (flag, pid) {
  return new Promise((resolve, reject) => {
    execFile('callgrind_control', [flag, String(pid)], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null || !/\bOK\b/.test(stdout)) reject(new Error(`callgrind_control ${flag} ${pid} failed: ${err?.message ?? ''} ${stdout} ${stderr}`.trim()))
      else resolve()
    })
  })
}

/**
 * Reads and removes the dump files callgrind wrote since the last call (one per thread with
 * --separate-threads=yes: cg.<pid>.<dump>-<thread>). Returns { total, main } instructions.
 */
function takeDump (dir) {
  let total = 0
  let main = 0
  let files = 0
  for (const name of fs.readdirSync(dir)) {
    const m = /^cg\.\d+\.\d+-(\d+)$/.exec(name)
    if (m === null) continue
    const file = path.join(dir, name)
    const text = fs.readFileSync(file, 'latin1')
    fs.unlinkSync(file)
    const line = /^(?:summary|totals): (\d+)/m.exec(text)
    if (line === null) continue
    if (process.env.HG_BENCH_COST_DEBUG) process.stdout.write(`[${m[1]}:${(Number(line[1]) / 1e6).toFixed(1)}M] `)
    files++
    total += Number(line[1])
    if (Number(m[1]) === 1) main += Number(line[1])
  }
  if (files === 0) throw new Error(`no callgrind dump found in ${dir}`)
  return { total, main }
}

async function measured (server, dir, work) {
  await callgrindControl('--zero', server.child.pid)
  const t0 = process.hrtime.bigint()
  await work()
  await sleep(SETTLE_MS)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  await callgrindControl('--dump', server.child.pid)
  return { ...takeDump(dir), seconds }
}

/**
 * One server under callgrind: warm-up, idle rate, then for each pipelining the N1/N2 runs,
 * `repeats` times. Returns { idleRate, byPipelining: { p: [{ raw, corrected, main, rps }] } }.
 */
async function measureServer (mode, s, log = console.log, serverOptions = SERVER_OPTIONS) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-cost-'))
  const execArgv = ['-q', '--tool=callgrind', `--callgrind-out-file=${path.join(dir, 'cg.%p')}`, '--separate-threads=yes',
    '--dump-line=no', '--compress-strings=no', '--compress-pos=no', process.execPath]
  let server = null
  let client = null
  try {
    const t0 = Date.now()
    server = await startServer(mode, serverOptions, execArgv, { execPath: 'valgrind', startTimeoutMs: 180_000, stdout: 'ignore' })
    if (process.env.HG_BENCH_COST_DEBUG) log(`  ${mode}: started under callgrind in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    client = new RawClient(server.port, { connections: s.connections })
    await client.open()
    for (const p of s.pipelinings) await client.run(s.warmup, p, RUN_TIMEOUT_MS)
    fs.readdirSync(dir).forEach((f) => fs.unlinkSync(path.join(dir, f)))
    const runs = [] // every measured run of the main thread: { n, seconds, main }, for the timer-rate fit
    const idle = async () => {
      const r = await measured(server, dir, () => sleep(s.idleMs))
      runs.push({ p: 0, n: 0, seconds: r.seconds, main: r.main, total: r.total })
      return { total: r.total / r.seconds, main: r.main / r.seconds }
    }
    const idleRates = [await idle()]
    const byPipelining = {}
    for (const p of s.pipelinings) {
      const reps = []
      for (let rep = 0; rep < s.repeats; rep++) {
        const a = await measured(server, dir, () => client.run(s.n1, p, RUN_TIMEOUT_MS))
        const b = await measured(server, dir, () => client.run(s.n2, p, RUN_TIMEOUT_MS))
        reps.push({ a, b })
        runs.push({ p, n: s.n1, seconds: a.seconds, main: a.main, total: a.total }, { p, n: s.n2, seconds: b.seconds, main: b.main, total: b.total })
      }
      byPipelining[p] = reps
    }
    idleRates.push(await idle())
    // Timer rate under load: least squares of I = a + c*N + r*T over the idle windows and the runs
    // of the first pipelining (other pipelinings have another c). On a busy machine the runs' durations
    // vary while their counts do not, which is what separates r from c.
    const fitRuns = runs.filter((x) => x.p === 0 || x.p === s.pipelinings[0])
    const idleMain = fitTimerRate(fitRuns) ?? (idleRates[0].main + idleRates[1].main) / 2
    const dn = s.n2 - s.n1
    const result = { idleRates: idleRates.map((r) => r.total), timerRate: idleMain, runs, byPipelining: {} }
    for (const [p, reps] of Object.entries(byPipelining)) {
      result.byPipelining[p] = reps.map(({ a, b }) => ({
        // The figure: the event loop's thread, less its timers' rate times each run's duration.
        corrected: ((b.main - idleMain * b.seconds) - (a.main - idleMain * a.seconds)) / dn,
        main: (b.main - a.main) / dn,
        // Every thread (GC helpers and JIT compilers too): lumpier, a major GC falls in one run or the other.
        raw: (b.total - a.total) / dn,
        rps: dn / Math.max(1e-9, (b.seconds - a.seconds)) // request rate under callgrind (SETTLE_MS cancels)
      }))
      log(`  ${mode.padEnd(24)} p=${String(p).padEnd(2)} ` + result.byPipelining[p].map((r, i) =>
        `rep ${i + 1}: ${fmt(r.corrected, 0)} instr/req (main thread raw ${fmt(r.main, 0)}, all threads ${fmt(r.raw, 0)}, ${fmt(r.rps, 0)} req/s under callgrind)`).join('; '))
    }
    log(`  ${mode.padEnd(24)} timers: main thread idle ${idleRates.map((r) => fmt(r.main / 1e6, 2)).join(', ')} M instr/s (all threads ${idleRates.map((r) => fmt(r.total / 1e6, 2)).join(', ')}); ` +
      `rate fitted over idle and loaded runs ${fmt(idleMain / 1e6, 2)} M instr/s (used for the correction)`)
    return result
  } finally {
    client?.close()
    await server?.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Least-squares fit of main-thread instructions I = a + c*N + r*T (a: what each measured run pays
 * once, c: per request, r: per second of timers) over `runs`; returns r, or null when the runs do
 * not determine it (or it comes out negative).
 */
function fitTimerRate (runs) {
  // Normal equations for the columns [1, N, T].
  const cols = runs.map((x) => [1, x.n, x.seconds])
  const m = [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
  const v = [0, 0, 0]
  for (let k = 0; k < runs.length; k++) {
    for (let i = 0; i < 3; i++) {
      v[i] += cols[k][i] * runs[k].main
      for (let j = 0; j < 3; j++) m[i][j] += cols[k][i] * cols[k][j]
    }
  }
  const det = (a) => a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
  const d = det(m)
  if (!(Math.abs(d) > 1e-9)) return null
  const r = det(m.map((row, i) => [row[0], row[1], v[i]])) / d // Cramer's rule, third unknown
  return r >= 0 ? r : null
}

async function run ({ quick }) {
  const missing = missingTools()
  if (missing !== null) {
    console.log(`skipped: ${missing}`)
    return [{ section: 'cost', metric: 'instructions per request (callgrind)', value: 'skipped', target: missing, ok: null }]
  }
  const s = quick ? SETTINGS.quick : SETTINGS.full
  console.log(`callgrind (${spawnSync('valgrind', ['--version']).stdout.toString().trim()}), all threads of the server process counted; ` +
    `client: bench/raw-client.js outside valgrind, ${s.connections} keep-alive connections opened before counting, ` +
    `pipelining ${s.pipelinings.join(' and ')} (batches: the next once all are answered), GET / (hello world), warm-up ${s.warmup} requests per pipelining; ` +
    `slope between runs of N1=${s.n1} and N2=${s.n2} requests, ${s.repeats} times; idle timer rate over ${s.idleMs} ms before and after.\n` +
    'instr/req: the server\'s main (event-loop) thread, less its idle timer rate times each run\'s duration; uncorrected: without that; all threads: GC helpers and compilers included (lumpy)')
  const results = {}
  for (const [label, mode] of SERVERS) {
    try {
      results[label] = await measureServer(mode, s)
    } catch (err) {
      if (!err.skip) throw err
      console.log(`  ${mode}: skipped (${err.message})`)
    }
  }
  console.log('')
  const rows = []
  for (const p of s.pipelinings) {
    table([[`server (pipelining ${p})`, ...Array.from({ length: s.repeats }, (_, i) => `instr/req rep ${i + 1}`),
      ...Array.from({ length: s.repeats }, (_, i) => `uncorrected ${i + 1}`), ...Array.from({ length: s.repeats }, (_, i) => `all threads ${i + 1}`), 'idle M instr/s'],
    ...Object.entries(results).map(([label, r]) => [label,
      ...r.byPipelining[p].map((x) => fmt(x.corrected, 0)), ...r.byPipelining[p].map((x) => fmt(x.main, 0)), ...r.byPipelining[p].map((x) => fmt(x.raw, 0)),
      fmt(median(r.idleRates) / 1e6, 2)])])
    console.log('')
    const pairRows = []
    for (const [label, ref, target] of PAIRS) {
      if (results[label] === undefined || results[ref] === undefined) continue
      const ratios = results[label].byPipelining[p].map((x, i) => x.corrected / results[ref].byPipelining[p][i].corrected)
      const rawRatios = results[label].byPipelining[p].map((x, i) => x.main / results[ref].byPipelining[p][i].main)
      const value = median(ratios)
      pairRows.push([`${label} / ${ref}`, ...ratios.map((r) => pct(r)), ...rawRatios.map((r) => pct(r))])
      rows.push({ section: 'cost', metric: `p=${p} ${label} / ${ref} instr/req`, value: pct(value), target: target === null ? '' : `<= ${pct(target)}`, ok: target === null ? null : value <= target })
    }
    table([[`overhead (pipelining ${p})`, ...Array.from({ length: s.repeats }, (_, i) => `rep ${i + 1}`), ...Array.from({ length: s.repeats }, (_, i) => `uncorrected ${i + 1}`)], ...pairRows])
    console.log('')
  }
  return rows
}

function pct (ratio) {
  const d = (ratio - 1) * 100
  return `${d >= 0 ? '+' : ''}${d.toFixed(1)}%`
}

module.exports = { run, measureServer, SETTINGS, SERVER_OPTIONS }
