'use strict'
// Overload (issue 9): four servers side by side in one run, each in its own process:
// bare node:http, Fastify + @fastify/under-pressure (maxEventLoopDelay 1000), and hangup-guard
// through both doors (defaults). Same handler in all (bench/overload-server.js). The load
// generator is another process (bench/overload-client.js), outside any cgroup.
//  (a) 0.25 CPU (real cgroup), ~4 ms of CPU per request, 64 closed-loop clients, a new connection
//      per request, 1 s client timeout; each server's capacity measured first with 2 clients.
//  (b) the same over 64 keep-alive connections (a proxy's pool).
//  (c) no CPU limit; the handler awaits a dependency of 10 slots x 20 ms (500 req/s), offered
//      open-loop at 3x that; the unloaded p99 is measured first at 100 req/s.
//  (d) 50 req/s open-loop over keep-alive, one 1.5 s event-loop stall (GET /stall).
// Filters (bench/index.js): --scenarios=a,b,c,d and --servers=<mode>,... run a part (default: all).
const path = require('node:path')
const os = require('node:os')
const { fork, execFileSync } = require('node:child_process')
const { once } = require('node:events')
const { startServer, sleep, fmt, table } = require('./lib')
const { makeCgroup, removeCgroup } = require('./cgroup')

const SERVERS = [
  { label: 'bare node:http', mode: 'bare' },
  { label: 'Fastify + under-pressure', mode: 'under-pressure' },
  { label: 'hangup-guard node:http', mode: 'guard-http', guard: true },
  { label: 'hangup-guard Fastify', mode: 'guard-fastify', guard: true }
]
const SCENARIOS = ['a', 'b', 'c', 'd']

/** Throws a usage error for a scenario or server the filters name that does not exist. */
function checkFilters ({ scenarios, servers }) {
  const bad = (kind, names, known) => {
    for (const n of names ?? []) {
      if (!known.includes(n)) throw Object.assign(new Error(`--${kind}: unknown ${kind.slice(0, -1)} '${n}' (${known.join('|')})`), { usage: true })
    }
  }
  bad('scenarios', scenarios, SCENARIOS)
  bad('servers', servers, SERVERS.map((s) => s.mode))
}
const QUOTA = { quotaUs: 25_000, periodUs: 100_000 }
const SCRIPT = path.join(__dirname, 'overload-server.js')

function config (quick) {
  const k = quick ? 0.5 : 1
  return {
    cpu: { cpuMs: 4, clients: 64, timeoutMs: 1000, durationMs: 6000 * k, capacityClients: 2, capacityMs: 3000 * k, warmupMs: 1000 },
    io: { slots: 10, ioMs: 20, capacityRps: 500, factor: 3, durationMs: 10_000 * k, timeoutMs: 1000, unloadedRps: 100, unloadedMs: 2000 * k },
    stall: { rps: 50, durationMs: 3500, atMs: 1000, ms: 1500, timeoutMs: 5000, afterMs: 50 }
  }
}

function commit () {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: __dirname, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib'], { cwd: __dirname, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== ''
    return `${head}${dirty ? ' (lib/ modified)' : ''}`
  } catch {
    return 'unknown (not a git checkout)'
  }
}
// The machine is shared: other work running during a scenario shows here.
const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ')

/** The load generator: one process for the whole section. */
async function startClient () {
  const child = fork(path.join(__dirname, 'overload-client.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  await once(child, 'message')
  let nextId = 0
  return {
    child,
    run (job) {
      const id = ++nextId
      return new Promise((resolve, reject) => {
        const bound = (job.durationMs ?? 0) + (job.timeoutMs ?? 0) + 30_000
        const t = setTimeout(() => reject(new Error('overload client: no result in time')), bound)
        const on = (msg) => { if (msg.id === id) { child.off('message', on); clearTimeout(t); resolve(msg.result) } }
        child.on('message', on)
        child.send({ id, job })
      })
    },
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.disconnect()
      await once(child, 'exit')
    }
  }
}

/** Waits until the server has started no handler and burnt < 8 ms of CPU for 400 ms (bounded). */
async function settle (server, maxMs) {
  const until = Date.now() + maxMs
  let prev = await server.call('report')
  if (maxMs === 0) return { report: prev, settled: false }
  while (Date.now() < until) {
    await sleep(400)
    const r = await server.call('report')
    const idle = r.cpuUs - prev.cpuUs < 8000 && (r.sinceLastStartMs === null || r.sinceLastStartMs >= 400)
    prev = r
    if (idle) return { report: r, settled: true }
  }
  return { report: prev, settled: false }
}

/** One load run against one server: the client's counts plus what the server saw for the phase. */
async function measure (server, client, job, settleMs) {
  const before = await server.call('report')
  const result = await client.run({ port: server.port, ...job })
  const during = await server.call('report')
  const { report, settled } = await settle(server, settleMs)
  const phase = report.phases[job.phase] ?? { started: 0, late: 0, lateWork: 0, waitP50: null }
  const lateWorkAtEnd = during.phases[job.phase]?.lateWork ?? 0
  const guardDelta = report.stats === null ? null : statsDelta(before.stats, report.stats)
  return { ...result, server: phase, settled, lateWorkAtEnd, queuedAtEnd: during.queued, guardDelta, cpuPerS: (during.cpuUs - before.cpuUs) / 1000 / Math.max(1, during.at - before.at), stall: report.stall, stats: report.stats }
}

/** The guard's own counters for one run (those of stats() that this version has). */
const GUARD_COUNTERS = [['answered', 'capacity'], ['answered', 'overload'], ['answered', 'stall'], ['clientGone', 'count'], ['queue', 'acceptReads'], ['queue', 'acceptReadMs']]
function statsDelta (before, after) {
  const out = {}
  for (const [group, key] of GUARD_COUNTERS) {
    const b = before?.[group]?.[key]
    const a = after?.[group]?.[key]
    if (typeof a === 'number') out[`${group}.${key}`] = Math.round((a - (b ?? 0)) * 10) / 10
  }
  return out
}
const describeDelta = (d) => Object.entries(d).map(([k, v]) => `${k} ${v}`).join(', ')

const gen = (r) => `${fmt(r.generator.loopDelayP99Ms, 0)}/${fmt(r.generator.loopDelayMaxMs, 0)}`
// Past these, the load generator itself was late (a busy machine): its timeouts fired late and its
// open-loop sends bunched up, so that row measures the machine as much as the server.
const GENERATOR_LATE = { loopDelayP99Ms: 50, maxSendLagMs: 100 }
function generatorNotes (label, r) {
  const g = r.generator
  return g.loopDelayP99Ms > GENERATOR_LATE.loopDelayP99Ms || (g.maxSendLagMs ?? 0) > GENERATOR_LATE.maxSendLagMs
    ? [`DOUBTFUL ${label}: the load generator was late (loop delay p99 ${fmt(g.loopDelayP99Ms, 0)} ms` +
      `${g.maxSendLagMs === null ? '' : `, sends up to ${fmt(g.maxSendLagMs, 0)} ms behind schedule`}; the machine is busy)`]
    : []
}
const pct = (x, of) => of > 0 ? `${(100 * x / of).toFixed(0)}%` : '-'
const ms = (x) => x === null ? '-' : fmt(x, 0)
const others = (r) => r.otherStatus + Object.values(r.errors).reduce((a, b) => a + b, 0)
const errorNotes = (label, r) => Object.keys(r.errors).length === 0 ? [] : [`${label}: ${Object.entries(r.errors).map(([c, n]) => `${n}x ${c}`).join(', ')}`]

async function withServer (spec, options, cgroupDir, fn) {
  const server = await startServer(spec.mode, options, [], { script: SCRIPT, cgroupDir: cgroupDir ?? undefined })
  try {
    const info = await server.call('info')
    if (cgroupDir !== null && !info.cgroup?.endsWith(path.basename(cgroupDir))) {
      throw new Error(`${spec.label}: server is not in ${cgroupDir} (/proc/self/cgroup: ${info.cgroup})`)
    }
    return await fn(server, info)
  } finally {
    await server.stop()
  }
}

// (a) and (b): one process per server in a fresh cgroup, capacity then overload for each.
async function cpuLimited (c, client, keys, servers) {
  const results = []
  for (const spec of servers) {
    const { dir, reason } = makeCgroup(spec.mode, QUOTA)
    if (reason !== undefined) return { skipped: reason }
    try {
      results.push(await withServer(spec, { handler: 'cpu', cpuMs: c.cpuMs }, dir, async (server, info) => {
        const row = { spec, calibratedMs: info.calibratedMs, cgroup: info.cgroup }
        const base = { timeoutMs: c.timeoutMs }
        await client.run({ ...base, port: server.port, phase: 'warm', connection: 'new', durationMs: c.warmupMs, closed: { clients: c.capacityClients } })
        await settle(server, 3000)
        // Both capacities first: a capacity run right after an overload run would measure the
        // overload's after-effects (lagging pressure windows), not what the server can serve.
        const scenarios = [['a', 'new'], ['b', 'keep-alive']].filter(([key]) => keys.includes(key))
        for (const [key, connection] of scenarios) {
          const cap = await measure(server, client, { ...base, phase: `cap-${key}`, connection, durationMs: c.capacityMs, closed: { clients: c.capacityClients } }, 3000)
          row[key] = { capacity: cap.served * c.durationMs / c.capacityMs, cap }
        }
        for (const [key, connection] of scenarios) {
          row[key].load = await measure(server, client, { ...base, phase: key, connection, durationMs: c.durationMs, closed: { clients: c.clients } }, 10_000)
        }
        return row
      }))
    } finally {
      if (!removeCgroup(dir)) console.log(`WARNING: could not remove ${dir}`)
    }
  }
  return { results }
}

function printCpuTable (key, c, results) {
  const bareCapacity = results.find((r) => r.spec.mode === 'bare')?.[key].capacity ?? NaN
  const rows = [['server', 'offered', 'capacity', 'cap run CPU s/s', 'served in time', 'served/cap', 'served/bare cap', '503', 'client timeouts', 'hang ups', 'other',
    'handled after give-up', '(% offered)', 'p50 ms', 'p99 ms', 'server wait p50 ms', 'server CPU s/s', 'drained', 'client loop delay p99/max ms']]
  const notes = []
  for (const r of results) {
    const { capacity, load } = r[key]
    rows.push([r.spec.label, load.offered, fmt(capacity, 0), fmt(r[key].cap.cpuPerS, 3), load.served, pct(load.served, capacity), pct(load.served, bareCapacity), load.shed503, load.timeouts, load.hangUps, others(load),
      load.server.late, pct(load.server.late, load.offered), ms(load.p50), ms(load.p99), ms(load.server.waitP50), fmt(load.cpuPerS, 3), load.settled ? 'yes' : 'NO', gen(load)])
    notes.push(...errorNotes(r.spec.label, load), ...errorNotes(`${r.spec.label} (capacity run)`, r[key].cap), ...generatorNotes(r.spec.label, load))
    if (load.guardDelta !== null) notes.push(`${r.spec.label}, its stats() for this run: ${describeDelta(load.guardDelta)}`)
    if (r[key].cap.timeouts + r[key].cap.shed503 + r[key].cap.hangUps > 0) {
      notes.push(`${r.spec.label}: the capacity run (2 clients) saw ${r[key].cap.shed503} 503, ${r[key].cap.timeouts} timeouts, ${r[key].cap.hangUps} hang ups`)
    }
  }
  table(rows)
  console.log(`capacity = served by ${c.capacityClients} closed-loop clients in ${c.capacityMs / 1000} s, scaled to the ${c.durationMs / 1000} s run; ` +
    'handled after give-up = handlers that started more than the client timeout after the client sent (server side); ' +
    'server wait = handler start - client send; CPU s/s = server process CPU per wall second (the quota is 0.25: a capacity run below it did not keep the server busy); ' +
    'drained = the server went idle after the run (its counts are final)')
  for (const n of notes) console.log(`  ${n}`)
}

/** The highest per-second p99; a second in which nothing sent was served counts as Infinity. */
function worstSecond (load) {
  return Math.max(...load.perSecond.map((s) => s.offered === 0 ? 0 : s.p99 ?? Infinity))
}

// (c) no CPU limit, I/O-bound handler.
async function ioBound (c, client, servers) {
  const results = []
  for (const spec of servers) {
    results.push(await withServer(spec, { handler: 'io', slots: c.slots, ioMs: c.ioMs }, null, async (server) => {
      const base = { timeoutMs: c.timeoutMs, connection: 'keep-alive' }
      const unloaded = await measure(server, client, { ...base, phase: 'c-unloaded', durationMs: c.unloadedMs, open: { rate: c.unloadedRps } }, 3000)
      // No wait for the backlog to drain (bare: ~20 s of dependency calls for no one): the
      // figures of this table are taken when the last client got its answer or gave up.
      const load = await measure(server, client, { ...base, phase: 'c', durationMs: c.durationMs, open: { rate: c.capacityRps * c.factor } }, 0)
      return { spec, unloaded, load }
    }))
  }
  return results
}

function printIoTable (c, results) {
  const capacity = c.capacityRps * c.durationMs / 1000
  const rows = [['server', 'offered', 'served in time', 'served/dep cap', '503', 'client timeouts', 'hang ups', 'other',
    'handled after give-up', 'dep calls after give-up', 'still queued at end', 'p50 ms', 'p99 ms', 'unloaded p99 ms', 'worst 1 s p99 / unloaded', 'client loop delay p99/max ms', 'max send lag ms']]
  const perSecond = []
  const notes = []
  for (const r of results) {
    const { load, unloaded } = r
    const worst = worstSecond(load)
    rows.push([r.spec.label, load.offered, load.served, pct(load.served, capacity), load.shed503, load.timeouts, load.hangUps, others(load),
      load.server.late, load.lateWorkAtEnd, load.queuedAtEnd, ms(load.p50), ms(load.p99), fmt(unloaded.p99, 1), fmt(worst / unloaded.p99, 2), gen(load), fmt(load.generator.maxSendLagMs, 0)])
    perSecond.push([r.spec.label, ...load.perSecond.map((s) => `${ms(s.p99)} (${s.served})`)])
    notes.push(...errorNotes(r.spec.label, load), ...generatorNotes(r.spec.label, load), ...generatorNotes(`${r.spec.label} (unloaded run)`, unloaded))
    if (load.guardDelta !== null) notes.push(`${r.spec.label}, its stats() for this run: ${describeDelta(load.guardDelta)}`)
  }
  table(rows)
  console.log(`dependency capacity = ${c.capacityRps} req/s x ${c.durationMs / 1000} s = ${capacity}; dep calls after give-up = dependency slots taken ` +
    'after the client had given up, counted when the run ended (every client answered or gone); still queued at end = requests waiting for a slot then ' +
    '(all their clients have given up: each takes a slot later, for no one)')
  for (const n of notes) console.log(`  ${n}`)
  console.log('\np99 ms of the served requests (and how many were served), by the second they were sent in:')
  const seconds = Math.max(...perSecond.map((r) => r.length - 1))
  table([['server', ...Array.from({ length: seconds }, (_, i) => `${i + 1}`)], ...perSecond])
}

// (d) light traffic, one stall.
async function oneStall (c, client, servers) {
  const results = []
  for (const spec of servers) {
    results.push(await withServer(spec, { handler: 'cpu', cpuMs: 0 }, null, async (server) => {
      await client.run({ port: server.port, phase: 'warm', timeoutMs: c.timeoutMs, connection: 'keep-alive', durationMs: 500, open: { rate: c.rps } })
      const load = await measure(server, client, {
        phase: 'd', timeoutMs: c.timeoutMs, connection: 'keep-alive', durationMs: c.durationMs, open: { rate: c.rps }, stall: { atMs: c.atMs, ms: c.ms }, records: true
      }, 3000)
      return { spec, load }
    }))
  }
  return results
}

function stallCounts (c, load) {
  const { start, end } = load.stall
  const during = load.records.filter(([sentAt]) => start !== null && sentAt >= start && sentAt < end)
  const after = load.records.filter(([sentAt]) => end !== null && sentAt >= end + c.afterMs)
  const ok = ([, o]) => typeof o === 'number' && o >= 200 && o < 300
  return {
    during: during.length,
    duringServed: during.filter(ok).length,
    during503: during.filter(([, o]) => o === 503).length,
    after: after.length,
    after503: after.filter(([, o]) => o === 503).length,
    last503: Math.max(-Infinity, ...load.records.filter(([, o]) => o === 503).map(([sentAt]) => sentAt - end)),
    stallMs: end - start
  }
}

function printStallTable (c, results) {
  const rows = [['server', 'offered', 'served', '503', 'client timeouts', 'hang ups', 'other', 'stall ms', 'sent during stall', 'of which served', 'of which 503',
    `sent >= ${c.afterMs} ms after`, 'of which 503', 'last 503 sent at (ms after stall end)', 'p50 ms', 'p99 ms', 'the /stall request', 'client loop delay p99/max ms', 'max send lag ms']]
  for (const r of results) {
    const s = stallCounts(c, r.load)
    r.counts = s
    rows.push([r.spec.label, r.load.offered, r.load.served, r.load.shed503, r.load.timeouts, r.load.hangUps, others(r.load), s.stallMs, s.during, s.duringServed, s.during503,
      s.after, s.after503, Number.isFinite(s.last503) ? String(s.last503) : '-', ms(r.load.p50), ms(r.load.p99), String(r.load.stallOutcome), gen(r.load), fmt(r.load.generator.maxSendLagMs, 0)])
  }
  table(rows)
  for (const r of results) for (const n of generatorNotes(r.spec.label, r.load)) console.log(`  ${n}`)
  console.log('sent = the client\'s send time, compared with the stall\'s start and end as the server clocked them (Date.now(), same machine)')
}

function summary (a, c, d, cfg, keys) {
  const rows = []
  const push = (metric, value, target, ok, hard = false) => rows.push({ section: 'overload', metric, value, target, ok, hard })
  for (const key of keys) {
    for (const r of a.results ?? []) {
      if (!r.spec.guard) continue
      const { capacity, load } = r[key]
      push(`(${key}) ${r.spec.label}: served/capacity`, `${load.served}/${fmt(capacity, 0)}`, '>= 80%', load.served >= 0.8 * capacity)
      push(`(${key}) ${r.spec.label}: handled after give-up`, `${load.server.late}/${load.offered}`, '<= 5% offered', load.server.late <= 0.05 * load.offered)
      push(`(${key}) ${r.spec.label}: hang ups`, String(load.hangUps), '0', load.hangUps === 0, true)
    }
  }
  if (a.skipped !== undefined) push('(a), (b) CPU-limited', 'skipped', a.skipped, null)
  const capacity = cfg.io.capacityRps * cfg.io.durationMs / 1000
  for (const r of c) {
    if (!r.spec.guard) continue
    const worst = worstSecond(r.load)
    push(`(c) ${r.spec.label}: served/dependency capacity`, `${r.load.served}/${capacity}`, '>= 80%', r.load.served >= 0.8 * capacity)
    push(`(c) ${r.spec.label}: worst 1 s p99 / unloaded p99`, fmt(worst / r.unloaded.p99, 2), '<= 2', worst <= 2 * r.unloaded.p99)
  }
  for (const r of d) {
    if (!r.spec.guard) continue
    push(`(d) ${r.spec.label}: 503 sent >= ${cfg.stall.afterMs} ms after the stall`, `${r.counts.after503}/${r.counts.after}`, '0', r.counts.after503 === 0)
  }
  return rows
}

async function run ({ quick, scenarios = null, servers = null }) {
  checkFilters({ scenarios, servers })
  const cfg = config(quick)
  const want = (key) => scenarios === null || scenarios.has(key)
  const specs = SERVERS.filter((s) => servers === null || servers.has(s.mode))
  const cpuKeys = ['a', 'b'].filter(want)
  const q = `cpu.cfs_quota_us ${QUOTA.quotaUs} / cpu.cfs_period_us ${QUOTA.periodUs} (${QUOTA.quotaUs / QUOTA.periodUs} CPU)`
  console.log(`code: ${commit()}; node ${process.version} (servers and client), ${os.cpus().length} CPUs, load average ${loadavg()} at start; scenarios: ${SCENARIOS.filter(want).join(', ')}; servers: ${specs.map((s) => s.label).join(', ')} (hangup-guard and under-pressure: defaults, under-pressure maxEventLoopDelay 1000)`)
  const client = await startClient()
  const interrupted = () => { console.error('overload: interrupted, stopping servers and removing cgroups'); process.exit(130) }
  process.once('SIGINT', interrupted)
  process.once('SIGTERM', interrupted)
  try {
    const { cpu, io, stall } = cfg
    let t0 = Date.now()
    const took = () => { const s = ((Date.now() - t0) / 1000).toFixed(0); t0 = Date.now(); return `(${s} s; load average ${loadavg()})` }
    let a = { results: [] }
    if (cpuKeys.length > 0 && specs.length > 0) {
      console.log(`\n-- (a) new connection per request / (b) keep-alive: ${q}, handler ~${cpu.cpuMs} ms of CPU, ${cpu.clients} closed-loop clients, ` +
        `client timeout ${cpu.timeoutMs} ms, ${cpu.durationMs / 1000} s; capacity: ${cpu.capacityClients} clients, ${cpu.capacityMs / 1000} s, guard running --`)
      a = await cpuLimited(cpu, client, cpuKeys, specs)
      if (a.skipped !== undefined) {
        console.log(`SKIPPED (${cpuKeys.join(') and (')}): ${a.skipped}`)
      } else {
        console.log(`handler CPU per call, measured in each server: ${a.results.map((r) => `${r.spec.mode} ${fmt(r.calibratedMs, 2)} ms`).join(', ')}; cgroup: ${a.results[0].cgroup}`)
        if (want('a')) {
          console.log('\n(a) 64 clients, a new connection per request')
          printCpuTable('a', cpu, a.results)
        }
        if (want('b')) {
          console.log('\n(b) 64 keep-alive connections')
          printCpuTable('b', cpu, a.results)
        }
      }
      console.log(took())
    }
    const c = want('c') ? await ioScenario(io, client, specs, took) : []
    const d = want('d') ? await stallScenario(stall, client, specs, took) : []
    return summary(a, c, d, cfg, cpuKeys)
  } finally {
    process.off('SIGINT', interrupted)
    process.off('SIGTERM', interrupted)
    await client.stop()
  }
}

async function ioScenario (io, client, specs, took) {
  console.log(`\n-- (c) no CPU limit, handler awaits a dependency of ${io.slots} slots x ${io.ioMs} ms (${io.capacityRps} req/s), open loop at ${io.factor}x = ` +
    `${io.capacityRps * io.factor} req/s over keep-alive, client timeout ${io.timeoutMs} ms, ${io.durationMs / 1000} s; unloaded: ${io.unloadedRps} req/s, ${io.unloadedMs / 1000} s --`)
  const c = await ioBound(io, client, specs)
  printIoTable(io, c)
  console.log(took())
  return c
}

async function stallScenario (stall, client, specs, took) {
  console.log(`\n-- (d) no CPU limit, ${stall.rps} req/s open loop over keep-alive, trivial handler, client timeout ${stall.timeoutMs} ms, ${stall.durationMs / 1000} s; ` +
    `GET /stall busy-loops ${stall.ms} ms at ${stall.atMs / 1000} s --`)
  const d = await oneStall(stall, client, specs)
  printStallTable(stall, d)
  console.log(`${took()}\n`)
  return d
}

module.exports = { run, checkFilters, startClient, makeCgroup, removeCgroup, withServer, settle, QUOTA, SERVERS }
