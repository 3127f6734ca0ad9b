'use strict'
// (a) Throughput: autocannon (keep-alive, 50 connections, pipelining 1 then 10) against a bare node:http hello
// world and the same app with configureServerTimeouts(server, {}), each server in its own process.
// Two bare processes (A and B) run too: their ratio (A/A) shows how noisy the machine is. Besides
// req/s and p99 it reports the server process's CPU time per request (process.cpuUsage around each
// run), which a busy shared machine disturbs much less than throughput.
const autocannon = require('autocannon')
const { startServer, median, fmt, table } = require('./lib')

async function cannon (server, seconds, pipelining) {
  const cpu0 = await server.call('cpu')
  const r = await autocannon({ url: server.url, connections: 50, pipelining, duration: seconds })
  const cpu1 = await server.call('cpu')
  const cpuUs = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
  return { rps: r.requests.average, p99: r.latency.p99, cpu: cpuUs / Math.max(1, r.requests.total), errors: r.errors + r.timeouts + r.non2xx }
}

/**
 * Loads every server of `servers` ({ label: mode }) for `rounds` rounds of `seconds`, one at a time,
 * rotating the order each round so drift on the shared machine falls on all alike.
 * Returns { label: [{ rps, p99, errors }, one per round] }.
 */
async function abRounds (servers, { rounds, seconds, warmup, pipelining = 1 }) {
  const labels = Object.keys(servers)
  const started = []
  try {
    const byLabel = {}
    for (const label of labels) {
      byLabel[label] = await startServer(servers[label])
      started.push(byLabel[label])
    }
    for (const label of labels) await cannon(byLabel[label], warmup, pipelining) // JIT warm-up, not counted
    const results = Object.fromEntries(labels.map((label) => [label, []]))
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < labels.length; k++) {
        const label = labels[(round + k) % labels.length]
        const r = await cannon(byLabel[label], seconds, pipelining)
        results[label].push(r)
        console.log(`  p=${pipelining} round ${round + 1}/${rounds}  ${label.padEnd(16)} ${fmt(r.rps, 0).padStart(7)} req/s  p99 ${fmt(r.p99, 1).padStart(5)} ms  ` +
          `server CPU ${fmt(r.cpu, 1)} µs/req${r.errors ? `  errors/non-2xx ${r.errors}` : ''}`)
      }
    }
    return results
  } finally {
    await Promise.all(started.map((s) => s.stop()))
  }
}

/** Median over rounds of (x / reference) per round: pairing within a round cancels slow drift. */
function pairedRatio (results, label, refLabels, key) {
  return median(results[label].map((r, i) => r[key] / (refLabels.reduce((sum, ref) => sum + results[ref][i][key], 0) / refLabels.length)))
}

/**
 * Prints the per-server medians; returns summary rows for `compare` ({ name: [label, refLabels, target?] }),
 * their metric names prefixed with `prefix` (e.g. 'p=10 ').
 */
function report (section, results, compare, prefix = '') {
  table([['server', 'req/s (median)', 'p99 ms (median)', 'server CPU µs/req (median)', 'errors/non-2xx'],
    ...Object.entries(results).map(([label, rs]) => [label, fmt(median(rs.map((r) => r.rps)), 0), fmt(median(rs.map((r) => r.p99)), 1),
      fmt(median(rs.map((r) => r.cpu)), 1), String(rs.reduce((n, r) => n + r.errors, 0))])])
  const rows = []
  for (const [name, [label, refs, target]] of Object.entries(compare)) {
    const rps = pairedRatio(results, label, refs, 'rps')
    const p99 = pairedRatio(results, label, refs, 'p99')
    const cpu = pairedRatio(results, label, refs, 'cpu')
    rows.push({ section, metric: `${prefix}${name} req/s`, value: fmt(rps, 3), target: target ? `>= ${target}` : '', ok: target ? rps >= target : null })
    rows.push({ section, metric: `${prefix}${name} p99 latency`, value: fmt(p99, 3), target: '', ok: null })
    rows.push({ section, metric: `${prefix}${name} server CPU per request`, value: fmt(cpu, 3), target: '', ok: null })
  }
  console.log('')
  table([['ratio (median of per-round ratios)', 'value', 'target'], ...rows.map((r) => [r.metric, r.value, r.target])], 'lrl')
  return rows
}

/** Pipelining levels every req/s section reports (issue 12): 1, and 10 as in proxies' and load tests' set-ups. */
const PIPELININGS = [1, 10]

async function run ({ quick }) {
  const opts = quick ? { rounds: 1, seconds: 1, warmup: 0.5 } : { rounds: 5, seconds: 3, warmup: 1.5 }
  const rows = []
  for (const pipelining of PIPELININGS) {
    console.log(`autocannon: 50 connections, pipelining ${pipelining}, ${opts.seconds} s per run, ${opts.rounds} round(s), order rotated each round`)
    const results = await abRounds({ 'bare A': 'http-bare', guarded: 'http-guarded', 'bare B': 'http-bare' }, { ...opts, pipelining })
    console.log('')
    rows.push(...report('throughput', results, {
      'guarded/bare': ['guarded', ['bare A', 'bare B'], 0.97],
      'A/A (bare B/bare A)': ['bare B', ['bare A']]
    }, `p=${pipelining} `))
    console.log('')
  }
  return rows
}

module.exports = { run, abRounds, report, PIPELININGS }
