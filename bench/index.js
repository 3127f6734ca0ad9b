'use strict'
// npm run bench [-- --quick] [-- --only=throughput|deadline|memory|stall|fastify|pipelining|overload|cost]
//   overload only: [--scenarios=a,b,c,d] (default: all) [--servers=bare,under-pressure,guard-http,guard-fastify] (default: all)
// Every figure is a ratio or a difference measured side by side in this run (the machine is shared
// and noisy): never an absolute time. Servers run in child processes (bench/server.js).
// Exit code: 1 when a correctness check fails (a leaked deadline, a request left in flight, a wrong
// answer); ratios off their target are reported as MISS but do not fail the run (noise).
const { parseArgs, stopAllChildren, table } = require('./lib')

const SECTIONS = {
  throughput: require('./throughput'),
  deadline: require('./deadline'),
  memory: require('./memory'),
  stall: require('./stall'),
  fastify: require('./fastify'),
  pipelining: require('./pipelining'),
  overload: require('./overload'),
  cost: require('./cost')
}
/**
 * Extra time the run watchdog allows a section (callgrind runs the servers ~50x slower). The
 * quick cost run takes ~22 min on a quiet machine (five servers, three processes each, each
 * warmed by 100 connections): 24 min stopped it on a loaded one, a server short of its median.
 */
const EXTRA_MS = { cost: { quick: 2_400_000, full: 3_600_000 } }

async function main () {
  const args = parseArgs(process.argv.slice(2))
  for (const name of args.only ?? []) {
    if (!(name in SECTIONS)) throw Object.assign(new Error(`--only: unknown section '${name}' (${Object.keys(SECTIONS).join('|')})`), { usage: true })
  }
  SECTIONS.overload.checkFilters(args) // a usage error for an unknown scenario or server
  const selected = Object.keys(SECTIONS).filter((name) => args.only === null || args.only.has(name))
  // overload alone: ~2 min quick, ~3 min full; cost (callgrind) has its own allowance
  const watchdogMs = (args.quick ? 240_000 : 600_000) + selected.reduce((ms, name) => ms + (EXTRA_MS[name]?.[args.quick ? 'quick' : 'full'] ?? 0), 0)
  const watchdog = setTimeout(async () => {
    console.error(`bench: still running after ${watchdogMs / 1000} s, stopping`)
    await stopAllChildren()
    process.exit(2)
  }, watchdogMs)
  const started = Date.now()
  console.log(`hangup-guard bench${args.quick ? ' (--quick)' : ''}, node ${process.version}\n`)
  const summary = []
  for (const [name, section] of Object.entries(SECTIONS)) {
    if (args.only !== null && !args.only.has(name)) continue
    console.log(`== ${name} ==`)
    const t0 = Date.now()
    summary.push(...await section.run(args))
    console.log(`(${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`)
  }
  clearTimeout(watchdog)
  console.log(`== summary (${((Date.now() - started) / 1000).toFixed(0)} s) ==`)
  const verdict = (r) => r.ok === null ? '' : r.ok ? 'ok' : r.hard ? 'FAIL' : 'MISS'
  table([['section', 'metric', 'value', 'target', ''], ...summary.map((r) => [r.section, r.metric, r.value, r.target, verdict(r)])], 'llrll')
  const failed = summary.filter((r) => r.hard && !r.ok)
  if (failed.length > 0) {
    console.log(`\nFAIL: ${failed.map((r) => `${r.section}: ${r.metric}`).join('; ')}`)
    process.exitCode = 1
  }
}

main().catch(async (err) => {
  console.error(err.usage ? `bench: ${err.message}` : err)
  await stopAllChildren()
  process.exit(1)
})
