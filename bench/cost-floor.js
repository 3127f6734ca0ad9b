'use strict'
// The floor under the Fastify plugin's cost: what a Fastify plugin pays per request before it does
// any work of its own, and what the least per-request deadline costs, next to under-pressure and
// the plugin, in instructions per request (the same callgrind count as bench/cost.js).
//   node bench/cost-floor.js [--processes=3]      (run `npm run build` first; about 25 minutes)
//
// Servers (modes of bench/server.js), all the same hello-world route:
// - plain Fastify;
// - one empty onRequest hook (Fastify's hook runner, the price of any hook);
// - the deadline floor: that hook reading the clock, allocating one record per request and linking
//   it into an in-flight list, unlinked once its response closed (no verdict, no route budget);
// - Fastify + under-pressure (its hook and its per-request checks), the reference;
// - the plugin, and two builds of it cut down in a copy of dist/ (never in dist/ itself):
//   "hook admits nothing" (its onRequest hook calls done() at once: the hook, the probe front, the
//   decorators), and "admission without checks" (the clock, the Pending, the in-flight list, the
//   route's budget, the settling; no verdict, no client-gone check, no deadline header or exclude).
//   A cut whose source text is no longer in dist/ is skipped with the reason.
const fs = require('node:fs')
const path = require('node:path')
const { measureServer, SETTINGS, SERVER_OPTIONS } = require('./cost')
const { median, table, fmt, stopAllChildren } = require('./lib')

const ROOT = path.join(__dirname, '..')
const DIST = path.join(ROOT, 'dist')
/** Copies of dist/ live under the repository, so that their require('fastify') finds its node_modules. */
const CUTS_DIR = path.join(ROOT, '.bench-dist')

/** [file under dist/, text in it, replacement] */
const CUTS = {
  'hook admits nothing': [
    ['fastify/index.js', 'if (door.bound === true)\n            admitRequest(door, request, reply, done);', 'if (door.bound === true)\n            done();']
  ],
  'admission without checks': [
    ['core/guard.js',
      '        if (this.clientLeft(req))\n            return null;\n        const now = node_perf_hooks_1.performance.now();\n        const budget = this.budgetFor(req, routeBudget);\n        const refusal = this.verdict(budget, now, req, res);\n        if (refusal !== null)\n            return refusal;\n',
      '        const now = node_perf_hooks_1.performance.now();\n        const budget = routeBudget;\n']
  ]
}

/** A copy of dist/ with `cuts` applied, in `under`; throws (with .skip) when one no longer applies. */
function cutBuild (name, cuts, under = CUTS_DIR) {
  const dir = path.join(under, name.replace(/\W+/g, '-'))
  fs.rmSync(dir, { recursive: true, force: true })
  fs.cpSync(DIST, dir, { recursive: true })
  for (const [file, from, to] of cuts) {
    const target = path.join(dir, file)
    const text = fs.readFileSync(target, 'utf8')
    if (!text.includes(from)) throw Object.assign(new Error(`${file} no longer holds the text this cut replaces (update CUTS in bench/cost-floor.js)`), { skip: true })
    fs.writeFileSync(target, text.replace(from, to))
  }
  return dir
}

async function main () {
  const processes = Number(/^--processes=(\d+)$/.exec(process.argv[2] ?? '--processes=3')?.[1])
  if (!(processes >= 1)) throw new Error('usage: node bench/cost-floor.js [--processes=N]')
  const s = { ...SETTINGS.quick, processes }
  if (!fs.existsSync(path.join(DIST, 'fastify', 'index.js'))) throw new Error('dist/ is not built: run `npm run build` first')
  const servers = [
    ['plain Fastify', 'fastify-plain', null],
    ['one empty onRequest hook', 'fastify-empty-hook', null],
    ['deadline floor (clock, record, in-flight list)', 'fastify-deadline-floor', null],
    ['Fastify + under-pressure', 'fastify-under-pressure', null],
    ['plugin', 'fastify-guard', null]
  ]
  for (const [name, cuts] of Object.entries(CUTS)) {
    try {
      servers.push([`plugin, ${name}`, 'fastify-guard', cutBuild(name, cuts)])
    } catch (err) {
      if (!err.skip) throw err
      console.log(`plugin, ${name}: skipped (${err.message})`)
    }
  }
  console.log(`callgrind as in bench/cost.js (--quick settings): pipelining 1, slope between ${s.n1} and ${s.n2} requests, ` +
    `${s.repeats} repeats per process, ${s.processes} processes per server (in rounds); a process's figure is the median of its repeats.`)
  const figures = new Map(servers.map(([label]) => [label, []]))
  try {
    for (let round = 0; round < s.processes; round++) {
      for (const [label, mode, dist] of servers) {
        if (dist === null) delete process.env.HG_BENCH_DIST
        else process.env.HG_BENCH_DIST = dist
        const r = await measureServer(mode, s, () => {}, SERVER_OPTIONS)
        figures.get(label).push(median(r.byPipelining[1].map((x) => x.corrected)))
        console.log(`  round ${round + 1}: ${label}: ${fmt(figures.get(label).at(-1), 0)}`)
      }
    }
  } finally {
    delete process.env.HG_BENCH_DIST
    fs.rmSync(CUTS_DIR, { recursive: true, force: true })
  }
  const med = (label) => median(figures.get(label))
  const plain = med('plain Fastify')
  const up = med('Fastify + under-pressure')
  console.log('')
  table([['server', ...Array.from({ length: s.processes }, (_, i) => `process ${i + 1}`), 'median', 'over plain Fastify', 'over under-pressure'],
    ...servers.map(([label]) => [label, ...figures.get(label).map((v) => fmt(v, 0)), fmt(med(label), 0),
      signed(med(label) - plain), signed(med(label) - up)])])
}

function signed (n) {
  return `${n >= 0 ? '+' : ''}${fmt(n, 0)}`
}

module.exports = { CUTS, cutBuild }

if (require.main === module) {
  main().then(() => stopAllChildren(), (err) => {
    console.error(err)
    stopAllChildren()
    process.exitCode = 1
  })
}
