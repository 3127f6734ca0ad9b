'use strict'
// Two builds of the guard side by side in one run (issue 9: "the commit before this change and
// the one after it"): req/s of the node:http door from each build's dist, plus bare node:http,
// with autocannon (50 connections, pipelining 1 and 10), rounds rotated so drift falls on all.
//   node bench/ab-commits.js <other dist dir> [label] [--rounds=3] [--seconds=5]
// Build the other commit first, e.g. `git worktree add /tmp/old <commit> && (cd /tmp/old && npx tsc -p tsconfig.build.json)`.
const path = require('node:path')
const autocannon = require('autocannon')
const { startServer, median, table, fmt } = require('./lib')

async function main () {
  const otherDist = process.argv[2]
  if (otherDist === undefined) throw new Error('usage: node bench/ab-commits.js <other dist dir> [label] [--rounds=3] [--seconds=5]')
  const label = process.argv[3] !== undefined && !process.argv[3].startsWith('--') ? process.argv[3] : path.basename(path.dirname(path.resolve(otherDist)))
  const arg = (name, dflt) => Number((process.argv.find((a) => a.startsWith(`--${name}=`)) ?? `=${dflt}`).split('=')[1])
  const rounds = arg('rounds', 3)
  const seconds = arg('seconds', 5)
  const servers = {
    bare: await startServer('http-bare'),
    [`guard (${label})`]: await startServer('http-guarded', {}, [], { env: { ...process.env, HG_BENCH_DIST: path.resolve(otherDist) } }),
    'guard (this checkout)': await startServer('http-guarded')
  }
  try {
    const labels = Object.keys(servers)
    for (const p of [1, 10]) {
      const rps = Object.fromEntries(labels.map((l) => [l, []]))
      for (const l of labels) await autocannon({ url: servers[l].url, connections: 50, pipelining: p, duration: 2 }) // warm-up
      for (let r = 0; r < rounds; r++) {
        const order = labels.slice(r % labels.length).concat(labels.slice(0, r % labels.length))
        for (const l of order) rps[l].push((await autocannon({ url: servers[l].url, connections: 50, pipelining: p, duration: seconds })).requests.average)
      }
      const base = median(rps.bare)
      table([[`pipelining ${p}`, 'req/s (median)', 'per round', '/ bare'], ...labels.map((l) => [l, fmt(median(rps[l]), 0), rps[l].map((x) => fmt(x, 0)).join(', '), fmt(median(rps[l]) / base, 3)])])
      const other = median(rps[`guard (${label})`])
      console.log(`this checkout / ${label}: ${fmt(median(rps['guard (this checkout)']) / other, 3)}\n`)
    }
  } finally {
    for (const s of Object.values(servers)) await s.stop()
  }
}

main().catch((err) => { console.error(err); process.exit(1) })
