'use strict'
// (a) Throughput: autocannon (keep-alive, 50 connections, pipelining 1) against a bare node:http hello
// world and the same app with configureServerTimeouts(server, {}), each server in its own process.
// Two bare processes (A and B) run too: their ratio (A/A) shows how noisy the machine is.
const autocannon = require('autocannon')
const { startServer, median, fmt, table } = require('./lib')

async function cannon (url, seconds) {
  const r = await autocannon({ url, connections: 50, pipelining: 1, duration: seconds })
  return { rps: r.requests.average, p99: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx }
}

/**
 * Loads every server of `servers` ({ label: mode }) for `rounds` rounds of `seconds`, one at a time,
 * rotating the order each round so drift on the shared machine falls on all alike.
 * Returns { label: [{ rps, p99, errors }, one per round] }.
 */
async function abRounds (servers, { rounds, seconds, warmup }) {
  const labels = Object.keys(servers)
  const started = []
  try {
    const byLabel = {}
    for (const label of labels) {
      byLabel[label] = await startServer(servers[label])
      started.push(byLabel[label])
    }
    for (const label of labels) await cannon(byLabel[label].url, warmup) // JIT warm-up, not counted
    const results = Object.fromEntries(labels.map((label) => [label, []]))
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < labels.length; k++) {
        const label = labels[(round + k) % labels.length]
        const r = await cannon(byLabel[label].url, seconds)
        results[label].push(r)
        console.log(`  round ${round + 1}/${rounds}  ${label.padEnd(16)} ${fmt(r.rps, 0).padStart(7)} req/s  p99 ${fmt(r.p99, 1)} ms${r.errors ? `  errors/non-2xx ${r.errors}` : ''}`)
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

/** Prints the per-server medians; returns summary rows for `compare` ({ name: [label, refLabels, target?] }). */
function report (section, results, compare) {
  table([['server', 'req/s (median)', 'p99 ms (median)', 'errors/non-2xx'],
    ...Object.entries(results).map(([label, rs]) => [label, fmt(median(rs.map((r) => r.rps)), 0), fmt(median(rs.map((r) => r.p99)), 1), String(rs.reduce((n, r) => n + r.errors, 0))])])
  const rows = []
  for (const [name, [label, refs, target]] of Object.entries(compare)) {
    const rps = pairedRatio(results, label, refs, 'rps')
    const p99 = pairedRatio(results, label, refs, 'p99')
    rows.push({ section, metric: `${name} req/s`, value: fmt(rps, 3), target: target ? `>= ${target}` : '', ok: target ? rps >= target : null })
    rows.push({ section, metric: `${name} p99 latency`, value: fmt(p99, 3), target: '', ok: null })
  }
  console.log('')
  table([['ratio (median of per-round ratios)', 'value', 'target'], ...rows.map((r) => [r.metric, r.value, r.target])], 'lrl')
  return rows
}

async function run ({ quick }) {
  const opts = quick ? { rounds: 1, seconds: 1, warmup: 0.5 } : { rounds: 5, seconds: 3, warmup: 1.5 }
  console.log(`autocannon: 50 connections, pipelining 1, ${opts.seconds} s per run, ${opts.rounds} round(s), order rotated each round`)
  const results = await abRounds({ 'bare A': 'http-bare', guarded: 'http-guarded', 'bare B': 'http-bare' }, opts)
  console.log('')
  return report('throughput', results, {
    'guarded/bare': ['guarded', ['bare A', 'bare B'], 0.97],
    'A/A (bare B/bare A)': ['bare B', ['bare A']]
  })
}

module.exports = { run, abRounds, report }
