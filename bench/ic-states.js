'use strict'
// Which of V8's inline caches end in another state in one server than in another, after the same
// warm-up as bench/cost.js (connections that come and go, then requests on one kept connection):
//   node bench/ic-states.js [modeA=fastify-plain] [modeB=fastify-guard] [--churn=100] [--requests=30000]
// (modes of bench/server.js; run `npm run build` first). Each server runs once, not under valgrind,
// with node's --log-ic; a cache's state is the one its last logged change left it in (0
// uninitialized, 1 monomorphic, P polymorphic, N megamorphic, X no feedback). A megamorphic load
// costs a stub-cache probe where a polymorphic one costs a few map checks, on every request that
// passes there: bench/cost.js's counts move with these states, which is why its warm-up churns.
// The code of a change is named from the log's code-creation events.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { startServer, lastAtOrBelow, plainEnv } = require('./lib')
const { RawClient, churn } = require('./raw-client')
const { SERVER_OPTIONS } = require('./cost')

const IC_EVENT = /^((?:Keyed)?(?:Load|Store|DefineNamedOwn|DefineKeyedOwn|LoadGlobal|StoreGlobal|StoreInArrayLiteral)IC),(0x[0-9a-f]+),(\d+),(\d+),(\d+),(.),(.),(0x[0-9a-f]*),([^,]*)/

/**
 * A --log-ic log as Map<site, { state, changes, maps: Set, keys: Set, names: Set }>, a site being
 * "<script> @<line>:<column> <IC kind>", and names the code its events came from (else '?').
 */
function icStates (text) {
  const code = [] // { start, end, time, name }
  const sfis = new Map() // shared function info address -> name
  const events = []
  for (const line of text.split('\n')) {
    if (line.startsWith('code-creation,')) {
      const f = line.split(',')
      const start = parseInt(f[4], 16)
      code.push({ start, end: start + Number(f[5]), time: Number(f[3]), name: f[6].trim() })
      if (f[1] === 'JS' && f[7] !== undefined) sfis.set(parseInt(f[7], 16), f[6].trim())
      continue
    }
    const m = IC_EVENT.exec(line)
    if (m !== null) events.push({ kind: m[1], pc: parseInt(m[2], 16), time: Number(m[3]), line: m[4], column: m[5], to: m[7], map: m[8], key: m[9] })
  }
  code.sort((a, b) => a.start - b.start)
  const sfiList = [...sfis].map(([start, name]) => ({ start, end: start + 0x10000, name: `${name} (by its bytecode)` })).sort((a, b) => a.start - b.start)
  const sites = new Map()
  for (const e of events) {
    // An interpreted frame's pc is in its bytecode, which lies next to the function's shared info
    // when both came from Node's snapshot: named by the nearest one below it.
    let name = functionAt(code, e.pc, e.time)
    if (name === '?') name = nearestBelow(sfiList, e.pc)
    // Keyed by script and position: the code holding an event's pc may be its function's or, when
    // it was inlined, a caller's (most often in the same script).
    const site = `${scriptOf(name)} @${e.line}:${e.column} ${e.kind}`
    const s = sites.get(site) ?? { state: '0', changes: 0, maps: new Set(), keys: new Set(), names: new Set() }
    s.names.add(name)
    s.state = e.to
    s.changes++
    s.maps.add(e.map)
    if (e.key !== '') s.keys.add(e.key)
    sites.set(site, s)
  }
  return sites
}

/** The name of the newest code object created before `time` that holds `pc`, else '?'. */
function functionAt (code, pc, time) {
  const last = lastAtOrBelow(code, pc)
  let best = null
  // Code objects are small and rarely overlap: a short walk back finds the ones that hold pc.
  for (let i = last; i >= 0 && i > last - 2000; i--) {
    const c = code[i]
    if (pc < c.end && c.time <= time && (best === null || c.time > best.time)) best = c
  }
  return best === null ? '?' : best.name
}

/** 'node:events' of '_addListener node:events:552:22 (by its bytecode)'. */
function scriptOf (name) {
  return /(\S+):\d+:\d+/.exec(name)?.[1] ?? '?'
}

function nearestBelow (list, pc) {
  const e = list[lastAtOrBelow(list, pc)]
  return e !== undefined && pc < e.end ? e.name : '?'
}

/** Runs `mode` with --log-ic through the warm-up; returns the log's text. */
async function logIcs (mode, { churnConnections, requests }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-ic-'))
  const file = path.join(dir, 'v8.log')
  let server = null
  let client = null
  try {
    server = await startServer(mode, SERVER_OPTIONS, ['--log-ic', `--logfile=${file}`, '--no-logfile-per-isolate'], { stdout: 'ignore', env: plainEnv() })
    await churn(server.port, churnConnections, 20, 60_000)
    client = new RawClient(server.port, { connections: 1 })
    client.tolerant = true
    await client.open()
    await client.run(requests, 1, 120_000)
    client.close()
    client = null
    await server.stop() // the log is complete once the process has exited
    server = null
    return fs.readFileSync(file, 'latin1')
  } finally {
    client?.close()
    await server?.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Sites whose final state differs between a and b (present in both, or megamorphic in one). */
function differences (a, b) {
  const rows = []
  for (const site of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(site)
    const y = b.get(site)
    const sx = x?.state ?? '-'
    const sy = y?.state ?? '-'
    if (sx === sy) continue
    if ((x === undefined || y === undefined) && sx !== 'N' && sy !== 'N') continue // startup code one of them never ran
    const names = [...new Set([...(x?.names ?? []), ...(y?.names ?? [])])].filter((n) => n !== '?')
    rows.push({ site: `${names.join(' | ') || '?'} ${site.slice(site.indexOf(' @') + 1)}`, a: sx, b: sy, mapsA: x?.maps.size ?? 0, mapsB: y?.maps.size ?? 0 })
  }
  return rows.sort((r, s) => r.site.localeCompare(s.site))
}

async function main () {
  const args = process.argv.slice(2)
  const flag = (name, dflt) => Number(args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt)
  const [modeA = 'fastify-plain', modeB = 'fastify-guard'] = args.filter((a) => !a.startsWith('--'))
  const settings = { churnConnections: flag('churn', 100), requests: flag('requests', 30_000) }
  console.log(`${process.version}; warm-up: ${settings.churnConnections} connections of 20 requests, then ${settings.requests} on one kept connection`)
  const a = icStates(await logIcs(modeA, settings))
  const b = icStates(await logIcs(modeB, settings))
  const rows = differences(a, b)
  console.log(`${rows.length} inline caches end in another state (${modeA} -> ${modeB}; maps seen):`)
  for (const r of rows) console.log(`  ${r.a} -> ${r.b}  (${r.mapsA}/${r.mapsB})  ${r.site}`)
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
}

module.exports = { icStates, logIcs, differences }
