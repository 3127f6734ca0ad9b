'use strict'
// (g) Cost: instructions per request, counted by valgrind's callgrind, which a busy shared machine
// does not disturb (req/s ratios it does: see throughput and fastify).
//
// One connection: with several, how many requests each loop iteration finds depends on how fast
// the client runs next to the server, which a busy machine changes from run to run (measured: 4%
// between two processes of the same server with 10 connections). With one, every iteration holds
// exactly one request (pipelining 1) or one batch of 10 (pipelining 10).
//
// Method. Each server runs alone under `valgrind --tool=callgrind` (bench/server.js, the same modes
// as the other sections); the load generator (bench/raw-client.js) runs outside valgrind, in this
// process. Its connections are opened once, before anything is counted, and kept, so a measured
// run holds requests only; before them, 100 short connections come and go (CHURN), as they do on a
// production server. After a warm-up (the JIT tiers up), each measured run is framed by
// `callgrind_control --zero` and `--dump` on the same process (one process, many runs: a
// process started per run would pay callgrind's start-up, ~30 s, each time): start-up and warm-up are never
// counted, and instructions per request are the slope between a run of N1 and one of N2 requests,
// (I(N2) - I(N1)) / (N2 - N1), so what every run pays once (the zero/dump commands, the last
// responses' tail, the settle pause) cancels. Each slope is taken twice (N1, N2, N1, N2) to show it
// repeats (three times per process, the first after warm-up still a little high; in several
// processes: see SETTINGS).
//
// Timers. Under callgrind a server runs ~50x slower (and 100-500x on a busy machine), so work driven
// by wall time (the guard's sampler tick every 20 ms, the event-loop-delay histogram, under-pressure's
// sampler) would fall on that many fewer requests than in production and swamp the figure: with
// everything counted, the guard's ~2 M instructions a second of timers added 4,000-20,000 to each
// request depending on the machine's load. So only what runs under libuv's stream callback
// (uv__stream_io: reads, parsing, handlers, writes, write completions, and the nextTicks and
// microtasks they run) is counted (`--collect-atstart=no --toggle-collect=uv__stream_io`), whatever a
// run's duration. Left out: timers, idle wake-ups, the IPC channel, V8's GC helper threads and
// background compilers; scavenges a request's allocations trigger stay in. The idle windows (no
// request) before and after the runs check that: they must count ~0.
const { execFile, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { startServer, sleep, fmt, table, median } = require('./lib')
const { RawClient, churn } = require('./raw-client')

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
  // queueTarget scaled by 60 as under-pressure's delay below: the controller still judges every
  // request (its cost is counted), but a pause of valgrind's (translating new code, a GC) must
  // not shed a measured request (seen: a 503 at pipelining 10 with the 250 ms default).
  guard: { pressure: { maxEventLoopDelay: false, queueTarget: '15s' } },
  underPressure: { maxEventLoopDelay: 60_000, maxEventLoopUtilization: 1 }
}

/**
 * Connections opened, used for 20 requests and closed before the measured connection is opened:
 * a server's JIT must see connections come and go, as every production server does. With one
 * connection opened once, whether Node's own listener bookkeeping (events.js _addListener, reached
 * from Readable.on and clearIncoming on every request) stayed polymorphic or went megamorphic
 * depended on whether that one socket was built before or after V8 allocated the function's
 * feedback: plain Fastify and under-pressure missed it, the plugin did not (bench/ic-states.js
 * shows the sites). With the churn every server's listener bookkeeping is megamorphic, as in
 * production, and every count rose by about 2,000 (medians of three processes, quick settings:
 * bare node:http 50,754 -> 52,736, plain Fastify 47,707 -> 49,880, under-pressure
 * 48,571 -> 50,840, the plugin 49,537 -> 51,675). HG_BENCH_CHURN=0 measures the old way.
 */
const CHURN = { connections: Number(process.env.HG_BENCH_CHURN ?? 100), requests: 20 }
const SETTINGS = {
  // Warm-up: after 3,000 requests the JIT still improved the next 5,000 by 3-8% (measured: the
  // first slope of a process came out up to 4,000 instructions above the later ones), and the
  // node:http door's first slope after 10,000 still came out up to 2,000 above its later ones.
  // Processes: two processes of the same server differed by up to ~600 instructions per request
  // before the warm-up churned (CHURN), and still by up to ~350 after (the JIT's choices differ
  // from process to process), more than the repeats within one process
  // (~50): each server is measured in several processes, run in rounds (every server once per
  // round), and a server's figure is the median of its processes' medians. Three, so that one
  // outlier process cannot move it: one of two Fastify-plugin processes once ran at ~86,600
  // instructions per request through all its repeats, against ~51,600 for five others (not
  // understood yet).
  full: { connections: 1, pipelinings: [1, 10], n1: 2000, n2: 8000, warmup: 30000, churn: CHURN, idleMs: 1000, repeats: 3, processes: 3 },
  quick: { connections: 1, pipelinings: [1], n1: 1000, n2: 4000, warmup: 15000, churn: CHURN, idleMs: 1000, repeats: 3, processes: 3 }
}

/** libuv's stream I/O callback (src/unix/stream.c): every request's work runs under it. */
const TOGGLE_FUNCTION = 'uv__stream_io'
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
function takeDump (dir, keepAs = null) {
  let total = 0
  let main = 0
  let files = 0
  for (const name of fs.readdirSync(dir)) {
    const m = /^cg\.\d+\.\d+-(\d+)$/.exec(name)
    if (m === null) continue
    const file = path.join(dir, name)
    const text = fs.readFileSync(file, 'latin1')
    if (keepAs !== null && Number(m[1]) === 1) fs.copyFileSync(file, keepAs) // the event-loop thread's dump (bench/cost-profile.js)
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

async function measured (server, dir, work, keepAs = null) {
  await callgrindControl('--zero', server.child.pid)
  const t0 = process.hrtime.bigint()
  await work()
  await sleep(SETTLE_MS)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  await callgrindControl('--dump', server.child.pid)
  return { ...takeDump(dir, keepAs), seconds }
}

/**
 * One server under callgrind: warm-up, idle rate, then for each pipelining the N1/N2 runs,
 * `repeats` times. Returns { idleRate, byPipelining: { p: [{ raw, corrected, main, rps }] } }.
 */
async function measureServer (mode, s, log = console.log, serverOptions = SERVER_OPTIONS, extra = {}) {
  // extra.nodeFlags: more node flags; extra.valgrindFlags: more callgrind flags (--dump-instr=yes);
  // extra.keep: a folder where the event-loop thread's dump of each measured run is kept as
  // p<pipelining>-n<requests>-r<repeat> (bench/cost-profile.js).
  const keepAs = (p, n, rep) => extra.keep === undefined ? null : path.join(extra.keep, `p${p}-n${n}-r${rep}`)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-cost-'))
  // Only what runs inside libuv's stream callbacks is counted (reads, parsing, handlers, writes,
  // write completions, and the nextTicks and microtasks they run): timers (the guard's sampler,
  // under-pressure's, the deadline timer when it fires), idle wake-ups and the IPC channel fall
  // outside, however long a run takes on a busy machine.
  const execArgv = ['-q', '--tool=callgrind', `--callgrind-out-file=${path.join(dir, 'cg.%p')}`, '--separate-threads=yes',
    '--collect-atstart=no', `--toggle-collect=${TOGGLE_FUNCTION}`,
    '--dump-line=no', '--compress-strings=no', '--compress-pos=no', ...(extra.valgrindFlags ?? []), process.execPath, ...(extra.nodeFlags ?? [])]
  let server = null
  let client = null
  try {
    const t0 = Date.now()
    server = await startServer(mode, serverOptions, execArgv, { execPath: 'valgrind', startTimeoutMs: 180_000, stdout: 'ignore' })
    if (process.env.HG_BENCH_COST_DEBUG) log(`  ${mode}: started under callgrind in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    // Before the measured connection: one kept idle through the churn would meet keepAliveTimeout.
    const churned = s.churn === undefined ? 0 : await churn(server.port, s.churn.connections, s.churn.requests, RUN_TIMEOUT_MS)
    client = new RawClient(server.port, { connections: s.connections })
    client.refused = churned
    await client.open()
    // A guard may shed the first warm-up requests: under callgrind, and more on a busy machine, the
    // first requests through code valgrind has not translated yet can hold the loop for many
    // seconds, a stall the guard measures (it refuses requests that waited behind it longer than
    // their budget). Those refusals are counted, not measured; every measured request must get 200.
    client.tolerant = true
    for (const p of s.pipelinings) await client.run(s.warmup, p, RUN_TIMEOUT_MS)
    client.tolerant = false
    if (client.refused > 0) log(`  ${mode}: ${client.refused} warm-up requests refused (a start-up stall under callgrind), not counted`)
    fs.readdirSync(dir).forEach((f) => fs.unlinkSync(path.join(dir, f)))
    const runs = [] // every measured run: { p, n, seconds, main, total } (returned, for analysis)
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
        const a = await measured(server, dir, () => client.run(s.n1, p, RUN_TIMEOUT_MS), keepAs(p, s.n1, rep))
        const b = await measured(server, dir, () => client.run(s.n2, p, RUN_TIMEOUT_MS), keepAs(p, s.n2, rep))
        reps.push({ a, b })
        runs.push({ p, n: s.n1, seconds: a.seconds, main: a.main, total: a.total }, { p, n: s.n2, seconds: b.seconds, main: b.main, total: b.total })
      }
      byPipelining[p] = reps
    }
    idleRates.push(await idle())
    // ~0 with the toggle; taken out anyway, so a toggle that stopped matching shows as a rate, not a bias.
    const idleMain = (idleRates[0].main + idleRates[1].main) / 2
    const dn = s.n2 - s.n1
    const result = { pid: server.child.pid, idleRates: idleRates.map((r) => r.total), timerRate: idleMain, runs, byPipelining: {} }
    for (const [p, reps] of Object.entries(byPipelining)) {
      result.byPipelining[p] = reps.map(({ a, b }) => ({
        corrected: ((b.main - idleMain * b.seconds) - (a.main - idleMain * a.seconds)) / dn,
        main: (b.main - a.main) / dn,
        raw: (b.total - a.total) / dn,
        rps: dn / Math.max(1e-9, (b.seconds - a.seconds)) // request rate under callgrind (SETTLE_MS cancels)
      }))
      log(`  ${mode.padEnd(24)} p=${String(p).padEnd(2)} ` + result.byPipelining[p].map((r, i) =>
        `rep ${i + 1}: ${fmt(r.corrected, 0)} instr/req (${fmt(r.rps, 0)} req/s under callgrind)`).join('; '))
    }
    log(`  ${mode.padEnd(24)} idle windows (no request): ${idleRates.map((r) => fmt(r.main / 1e6, 3)).join(', ')} M instr/s counted (must be ~0)`)
    return result
  } finally {
    client?.close()
    await server?.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

async function run ({ quick }) {
  const missing = missingTools()
  if (missing !== null) {
    console.log(`skipped: ${missing}`)
    return [{ section: 'cost', metric: 'instructions per request (callgrind)', value: 'skipped', target: missing, ok: null }]
  }
  const s = quick ? SETTINGS.quick : SETTINGS.full
  console.log(`callgrind (${spawnSync('valgrind', ['--version']).stdout.toString().trim()}); ` +
    `client: bench/raw-client.js outside valgrind, ${s.connections} keep-alive connection(s) opened before counting, ` +
    `pipelining ${s.pipelinings.join(' and ')} (batches: the next once all are answered), GET / (hello world), ` +
    `warm-up: ${s.churn.connections} connections opened, used for ${s.churn.requests} requests each and closed, then ${s.warmup} requests per pipelining; ` +
    `slope between runs of N1=${s.n1} and N2=${s.n2} requests, ${s.repeats} times per process, ${s.processes} processes per server (in rounds); idle windows of ${s.idleMs} ms before and after.\n` +
    `counted: the event-loop thread under ${TOGGLE_FUNCTION} (timers excluded: see bench/cost.js)`)
  const perProcess = {} // label -> [measureServer() result of each process]
  for (let round = 0; round < s.processes; round++) {
    for (const [label, mode] of SERVERS) {
      try {
        (perProcess[label] ??= []).push(await measureServer(mode, s))
      } catch (err) {
        if (!err.skip) throw err
        if (round === 0) console.log(`  ${mode}: skipped (${err.message})`)
      }
    }
  }
  const results = {}
  for (const [label, list] of Object.entries(perProcess)) results[label] = byProcess(list)
  console.log('')
  return report(results, s)
}

/**
 * One server's processes as one result: byPipelining[p][i] is process i's median slope (its
 * repeats), so the tables show a column per process and the verdicts the median across them.
 */
function byProcess (list) {
  const out = { idleRates: list.flatMap((r) => r.idleRates), byPipelining: {} }
  for (const p of Object.keys(list[0].byPipelining)) {
    out.byPipelining[p] = list.map((r) => ({
      corrected: median(r.byPipelining[p].map((x) => x.corrected)),
      rps: median(r.byPipelining[p].map((x) => x.rps))
    }))
  }
  return out
}

/** Prints the tables for `results` ({ label: byProcess() result }); returns the summary rows. */
function report (results, s) {
  const rows = []
  for (const p of s.pipelinings) {
    table([[`server (pipelining ${p})`, ...Array.from({ length: s.processes }, (_, i) => `instr/req process ${i + 1}`), 'req/s under callgrind', 'idle (must be ~0)'],
      ...Object.entries(results).map(([label, r]) => [label, ...r.byPipelining[p].map((x) => fmt(x.corrected, 0)),
        r.byPipelining[p].map((x) => fmt(x.rps, 0)).join(', '), `${fmt(median(r.idleRates) / 1e6, 3)} M/s`])])
    console.log('')
    const pairRows = []
    for (const [label, ref, target] of PAIRS) {
      if (results[label] === undefined || results[ref] === undefined) continue
      const ratios = results[label].byPipelining[p].map((x, i) => x.corrected / results[ref].byPipelining[p][i].corrected)
      // The ratio of the medians (processes are not pairs: any process of one may meet any of the other).
      const value = median(results[label].byPipelining[p].map((x) => x.corrected)) / median(results[ref].byPipelining[p].map((x) => x.corrected))
      pairRows.push([`${label} / ${ref}`, ...ratios.map((r) => pct(r))])
      rows.push({ section: 'cost', metric: `p=${p} ${label} / ${ref} instr/req`, value: pct(value), target: target === null ? '' : `<= ${pct(target)}`, ok: target === null ? null : value <= target })
    }
    table([[`overhead (pipelining ${p})`, ...Array.from({ length: s.processes }, (_, i) => `process ${i + 1}`)], ...pairRows])
    console.log('')
  }
  return rows
}

function pct (ratio) {
  const d = (ratio - 1) * 100
  return `${d >= 0 ? '+' : ''}${d.toFixed(1)}%`
}

module.exports = { run, report, measureServer, SETTINGS, SERVER_OPTIONS, CHURN }
