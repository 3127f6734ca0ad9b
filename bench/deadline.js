'use strict'
// (b) Deadline timeliness: how late does the guard's 504 arrive at the client, compared with a handler
// that answers by its own setTimeout(D)? Same D, same client, each server in its own process. Both
// are loaded at the same time (same concurrency each), so a stall of this shared machine hits both
// alike. Times are measured by the client, from sending the request to the response's arrival.
const { Pool } = require('undici')
const { performance } = require('node:perf_hooks')
const { startServer, runBounded, percentile, median, fmt, table } = require('./lib')

const DEADLINE_MS = 200
const CONCURRENCY = 16

async function batch (pool, count, into) {
  await runBounded(count, CONCURRENCY, 60_000, async () => {
    const t0 = performance.now()
    const { statusCode, body } = await pool.request({ path: '/', method: 'GET' })
    const ms = performance.now() - t0
    await body.dump()
    into.push({ ms, statusCode })
  })
}

async function run ({ quick }) {
  const rounds = quick ? 2 : 4
  const perRound = quick ? 100 : 200
  console.log(`D = ${DEADLINE_MS} ms, ${rounds} rounds of ${perRound} requests per server, ${CONCURRENCY} concurrent per server, both servers at once`)
  const servers = {}
  const pools = {}
  try {
    servers.bare = await startServer('deadline-bare', { deadlineMs: DEADLINE_MS })
    servers.guard = await startServer('deadline-guarded', { deadlineMs: DEADLINE_MS })
    const seen = { bare: [], guard: [] }
    for (const name of ['bare', 'guard']) pools[name] = new Pool(servers[name].url, { connections: CONCURRENCY })
    await Promise.all(['bare', 'guard'].map((name) => batch(pools[name], CONCURRENCY * 2, []))) // warm-up, not counted
    await Promise.all(['bare', 'guard'].map((name) => servers[name].call('elapsed'))) // drop the warm-up's
    const roundDiffs = [] // p99(guard) - p99(bare) of each round: a stall of the machine spoils one round, not the median
    for (let round = 0; round < rounds; round++) {
      const now = { bare: [], guard: [] }
      await Promise.all(['bare', 'guard'].map((name) => batch(pools[name], perRound, now[name])))
      const p99 = (xs) => percentile(xs.map((x) => x.ms), 99)
      roundDiffs.push(p99(now.guard) - p99(now.bare))
      console.log(`  round ${round + 1}/${rounds}: p99 bare ${fmt(p99(now.bare))} ms, guard ${fmt(p99(now.guard))} ms, difference ${fmt(roundDiffs[round])} ms`)
      seen.bare.push(...now.bare)
      seen.guard.push(...now.guard)
    }
    const serverSide = { bare: await servers.bare.call('elapsed'), guard: await servers.guard.call('elapsed') }
    const describe = (label, ms, statuses) =>
      [label, String(ms.length), statuses, fmt(percentile(ms, 50)), fmt(percentile(ms, 99)), fmt(Math.max(...ms))]
    const statusesOf = (xs) => [...new Set(xs.map((x) => x.statusCode))].join('/')
    table([['answer at D = ' + DEADLINE_MS + ' ms', 'n', 'status', 'p50 ms', 'p99 ms', 'max ms'],
      describe("client-side, bare: handler's own setTimeout(D)", seen.bare.map((x) => x.ms), statusesOf(seen.bare)),
      describe('client-side, guard: 504 at handlerTimeout D', seen.guard.map((x) => x.ms), statusesOf(seen.guard)),
      describe('server-side, bare: arrival to answer', serverSide.bare, ''),
      describe('server-side, guard: arrival to answer', serverSide.guard, '')])
    const p99 = (xs) => percentile(xs.map((x) => x.ms), 99)
    const p50 = (xs) => percentile(xs.map((x) => x.ms), 50)
    const diff99 = median(roundDiffs)
    const pooled99 = p99(seen.guard) - p99(seen.bare)
    const diff50 = p50(seen.guard) - p50(seen.bare)
    console.log(`\np99(guard) - p99(bare), client-side: median over rounds ${fmt(diff99)} ms (target <= 5 ms), all rounds pooled ${fmt(pooled99)} ms; p50 difference ${fmt(diff50)} ms`)
    const wrongStatus = seen.guard.filter((x) => x.statusCode !== 504).length
    return [
      { section: 'deadline', metric: 'p99(guard) - p99(bare), median of rounds', value: `${fmt(diff99)} ms`, target: '<= 5 ms', ok: diff99 <= 5 },
      { section: 'deadline', metric: 'p99(guard) - p99(bare), pooled', value: `${fmt(pooled99)} ms`, target: '', ok: null },
      { section: 'deadline', metric: 'p50(guard) - p50(bare)', value: `${fmt(diff50)} ms`, target: '', ok: null },
      { section: 'deadline', metric: 'server-side p99(guard) - p99(bare)', value: `${fmt(percentile(serverSide.guard, 99) - percentile(serverSide.bare, 99))} ms`, target: '', ok: null },
      { section: 'deadline', metric: 'guard answers that were not 504', value: String(wrongStatus), target: '0', ok: wrongStatus === 0, hard: true }
    ]
  } finally {
    await Promise.all(Object.values(pools).map((p) => p.destroy()))
    await Promise.all(Object.values(servers).map((s) => s.stop()))
  }
}

module.exports = { run }
