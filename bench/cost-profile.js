'use strict'
// Where a server's instructions per request go, function by function, against another server:
//   node bench/cost-profile.js [modeA=http-bare] [modeB=http-guarded]
// (modes of bench/server.js; run `npm run build` first). Each server runs once under callgrind as
// in bench/cost.js (same client, same counting under libuv's stream callback), with node's
// --perf-basic-prof, which writes /tmp/perf-<pid>.map: the address range of every function the JIT
// compiled, by name. A function's cost per request is the slope of its own instructions (not its
// callees') between a run of N1 and one of N2 requests; the table is B's minus A's, largest
// first. JavaScript the JIT inlined is counted in its caller ('JS:admit' includes the verdict it
// inlined). Code that V8's GC moved after it was logged cannot be named ('JIT code, not named').
// Needs valgrind's callgrind_annotate. What costs what is only a guide: two processes of one
// server differ by a few hundred instructions per request (see bench/cost.js).
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { measureServer, SERVER_OPTIONS, CHURN } = require('./cost')
const { lastAtOrBelow } = require('./lib')

const SETTINGS = { connections: 1, pipelinings: [1], n1: 1000, n2: 4000, warmup: 15000, churn: CHURN, idleMs: 300, repeats: 1 }

/** Address → name, from a --perf-basic-prof map ("start size name", hex). */
function perfMap (pid) {
  const file = `/tmp/perf-${pid}.map`
  const entries = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => {
    const [start, size, ...name] = line.split(' ')
    return { start: parseInt(start, 16), end: parseInt(start, 16) + parseInt(size, 16), name: name.join(' ').replace(/^JS:[*^~]?/, 'JS:') }
  }).sort((a, b) => a.start - b.start)
  fs.unlinkSync(file)
  return (address) => {
    const e = entries[lastAtOrBelow(entries, address)]
    return e !== undefined && address < e.end ? e.name : 'JIT code, not named'
  }
}

/** The process's entry frames (start-up, the event loop): never a request's own cost. */
const ENTRY_FRAMES = /\(below main\)|^\?\?\?:main |node::Start\(|SpinEventLoop|NodeMainInstance|ld-linux|libc_start/

/** Self instructions by function name in one callgrind dump (PROGRAM TOTALS included). */
function selfCosts (file, nameOf) {
  const text = execFileSync('callgrind_annotate', ['--threshold=100', '--inclusive=no', file], { encoding: 'latin1', maxBuffer: 64 << 20 })
  const costs = new Map()
  for (const line of text.split('\n')) {
    const m = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/.exec(line)
    if (m === null) continue
    const raw = m[2].trim()
    if (ENTRY_FRAMES.test(raw)) continue
    const jit = /^\?\?\?:0x([0-9a-f]+)(?:'\d+)? \[\?\?\?\]$/.exec(raw) // JIT code has no object file
    const name = jit !== null ? nameOf(parseInt(jit[1], 16)) : raw.replace(/ \[[^\]]*\]$/, '')
    costs.set(name, (costs.get(name) ?? 0) + Number(m[1].replace(/,/g, '')))
  }
  return costs
}

async function profile (mode) {
  const keep = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-cost-profile-'))
  try {
    const r = await measureServer(mode, SETTINGS, () => {}, SERVER_OPTIONS, { nodeFlags: ['--perf-basic-prof'], keep })
    const nameOf = perfMap(r.pid)
    const a = selfCosts(path.join(keep, `p1-n${SETTINGS.n1}-r0`), nameOf)
    const b = selfCosts(path.join(keep, `p1-n${SETTINGS.n2}-r0`), nameOf)
    const perRequest = new Map()
    for (const name of new Set([...a.keys(), ...b.keys()])) perRequest.set(name, ((b.get(name) ?? 0) - (a.get(name) ?? 0)) / (SETTINGS.n2 - SETTINGS.n1))
    return perRequest
  } finally {
    fs.rmSync(keep, { recursive: true, force: true })
  }
}

async function main () {
  const [modeA = 'http-bare', modeB = 'http-guarded'] = process.argv.slice(2)
  const A = await profile(modeA)
  const B = await profile(modeB)
  const total = (m) => m.get('PROGRAM TOTALS') ?? 0
  console.log(`instructions per request: ${modeA} ${Math.round(total(A))}, ${modeB} ${Math.round(total(B))} (${Math.round(total(B) - total(A))} more)`)
  const rows = [...new Set([...A.keys(), ...B.keys()])].filter((n) => n !== 'PROGRAM TOTALS')
    .map((n) => [Math.round((B.get(n) ?? 0) - (A.get(n) ?? 0)), Math.round(B.get(n) ?? 0), n])
    .filter((r) => r[0] !== 0).sort((x, y) => y[0] - x[0])
  console.log(`\n${'more'.padStart(6)} ${'B'.padStart(6)}  function (self instructions per request, ${modeB} minus ${modeA})`)
  const line = ([d, b, n]) => `${String(d).padStart(6)} ${String(b).padStart(6)}  ${n.slice(0, 110)}`
  console.log([...rows.slice(0, 40).map(line), '   ...', ...rows.slice(-10).map(line)].join('\n'))
}

if (require.main === module) main().catch((err) => { console.error(err); process.exit(1) })

module.exports = { SETTINGS, perfMap }
