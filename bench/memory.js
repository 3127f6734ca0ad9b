'use strict'
// (c) Memory and leaks: many requests through the guard, mixed fast (90%), slow (5%: the guard
// answers 504 at a short budget) and client-aborted (5%: the client leaves before the budget is
// spent). The server runs in a child with --expose-gc and reports its heap after forced GC, the
// deadline scheduler's state (no timer entry may remain) and the guard's stats (nothing in flight).
// The guard runs with its defaults, stall shedding included: with a 20 ms budget, a stall of this
// shared machine makes it answer some requests 503 (explicit answers, counted apart).
const { Pool } = require('undici')
const { startServer, runBounded, sleep, fmt, table } = require('./lib')

const BUDGET_MS = 20 // the guard's handlerTimeout
const SLOW_MS = 200 // /slow and /abort handlers answer this late (well after the 504 / after the client left)
const ABORT_AFTER_MS = 5
const CONCURRENCY = 32
const MAX_RUN_MS = 120_000

function kindOf (i) {
  const k = i % 20
  return k === 0 ? 'slow' : k === 1 ? 'abort' : 'fast'
}

async function drive (url, total) {
  const pool = new Pool(url, { connections: CONCURRENCY })
  const seen = { fast200: 0, slow504: 0, slowHandlerFirst: 0, shed503: 0, aborted: 0, abortTooLate: 0, unexpected: 0, unexpectedKinds: {} }
  const unexpected = (what) => { seen.unexpected++; seen.unexpectedKinds[what] = (seen.unexpectedKinds[what] ?? 0) + 1 }
  const t0 = Date.now()
  const done = await runBounded(total, CONCURRENCY, MAX_RUN_MS, async (i) => {
    const kind = kindOf(i)
    const ac = kind === 'abort' ? new AbortController() : null
    const timer = ac === null ? null : setTimeout(() => ac.abort(), ABORT_AFTER_MS)
    try {
      const { statusCode, body } = await pool.request({ path: `/${kind}`, method: 'GET', signal: ac?.signal })
      await body.dump()
      if (kind === 'fast' && statusCode === 200) seen.fast200++
      else if (kind === 'slow' && statusCode === 504) seen.slow504++
      else if (kind === 'slow' && statusCode === 200) seen.slowHandlerFirst++ // see the note printed below
      else if (kind === 'abort') seen.abortTooLate++ // the client's 5 ms timer ran late (busy client)
      else if (statusCode === 503) seen.shed503++ // the guard shed it: it waited behind a stall longer than its budget
      else unexpected(`${kind} ${statusCode}`)
    } catch (err) {
      if (kind === 'abort') seen.aborted++
      else unexpected(`${kind} ${err.code ?? err.name}`)
    } finally {
      clearTimeout(timer)
    }
  })
  const seconds = (Date.now() - t0) / 1000
  await pool.close()
  await sleep(SLOW_MS * 5) // late handlers finish, server-side sockets of aborted requests close
  return { done, seen, seconds }
}

async function run ({ quick }) {
  const total = quick ? 20_000 : 200_000
  const warmup = quick ? 5_000 : 20_000
  console.log(`${total} requests (after ${warmup} warm-up): 90% fast, 5% slow (504 at ${BUDGET_MS} ms), 5% aborted by the client at ${ABORT_AFTER_MS} ms; ${CONCURRENCY} concurrent`)
  const server = await startServer('memory', { budgetMs: BUDGET_MS, slowMs: SLOW_MS }, ['--expose-gc'])
  try {
    await drive(server.url, warmup)
    const before = await server.call('measure')
    const main = await drive(server.url, total)
    const after = await server.call('measure')
    const growthMb = (after.heapUsed - before.heapUsed) / 1024 / 1024
    const s = after.stats
    const d = (get) => get(after.stats) - get(before.stats) // this run only, warm-up excluded
    table([['memory run', 'value'],
      ['requests completed by the client', `${main.done} in ${fmt(main.seconds, 1)} s (${fmt(main.done / main.seconds, 0)} req/s)`],
      ['client saw: fast 200 / slow 504 / aborted / unexpected', `${main.seen.fast200} / ${main.seen.slow504} / ${main.seen.aborted} / ${main.seen.unexpected}`],
      ['aborts sent too late (the answer came first)', String(main.seen.abortTooLate)],
      ['503 (shed after a stall of this shared machine) / guard answered.stall + overload', `${main.seen.shed503} / ${d((x) => x.answered.stall + x.answered.overload)}`],
      ['slow: the handler answered first (200), after a stall', `${main.seen.slowHandlerFirst} (server counted ${after.slowHandlerWon - before.slowHandlerWon})`],
      ['guard stats over the run: requests', String(d((x) => x.requests))],
      ['guard stats over the run: answered.deadline / clientGone.count', `${d((x) => x.answered.deadline)} / ${d((x) => x.clientGone.count)}`],
      ['guard stats: inFlight', String(s.inFlight)],
      ['deadline scheduler: scheduled / lists / timer armed', `${after.scheduler.scheduled} / ${after.scheduler.lists} / ${after.scheduler.armed}`],
      ['heap used after forced GC: before -> after', `${fmt(before.heapUsed / 1048576)} MB -> ${fmt(after.heapUsed / 1048576)} MB`],
      ['heap growth', `${fmt(growthMb)} MB${after.gcExposed ? '' : ' (gc NOT exposed: unreliable)'}`]])
    if (main.seen.unexpected > 0) console.log('unexpected client outcomes:', JSON.stringify(main.seen.unexpectedKinds))
    if (main.seen.slowHandlerFirst > 0) {
      const ms = after.slowHandlerWins.map((w) => w.elapsedMs)
      console.log(`note: ${main.seen.slowHandlerFirst} slow request(s) got their handler's 200 instead of the 504: their handler timer ran ` +
        `${Math.min(...ms)}-${Math.max(...ms)} ms after arrival, past the ${BUDGET_MS} ms budget. After an event-loop stall longer than ` +
        `${SLOW_MS - BUDGET_MS} ms Node runs a whole overdue timer list (all ${SLOW_MS} ms timers) before the guard's overdue timer. ` +
        'No hang up: the client got the real answer.')
    }
    const complete = main.done === total
    return [
      { section: 'memory', metric: `heap growth over ${main.done} requests`, value: `${fmt(growthMb)} MB`, target: '< 1 MB', ok: growthMb < 1 && after.gcExposed },
      { section: 'memory', metric: 'deadline entries left scheduled', value: String(after.scheduler.scheduled), target: '0', ok: after.scheduler.scheduled === 0, hard: true },
      { section: 'memory', metric: 'stats().inFlight after the run', value: String(s.inFlight), target: '0', ok: s.inFlight === 0, hard: true },
      { section: 'memory', metric: 'unexpected client outcomes', value: String(main.seen.unexpected), target: '0', ok: main.seen.unexpected === 0, hard: true },
      { section: 'memory', metric: 'requests completed', value: `${main.done}/${total}`, target: `${total}`, ok: complete }
    ]
  } finally {
    await server.stop()
  }
}

module.exports = { run }
