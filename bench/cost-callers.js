'use strict'
// Who calls V8's generic handlers (megamorphic inline caches, calls with spread arguments) in one
// server, per request: node bench/cost-callers.js [mode=fastify-guard] [pattern]
// The same run as bench/cost-profile.js (one process under callgrind, JIT code named through
// node's --perf-basic-prof map); callgrind_annotate --tree=caller gives each callee's callers.
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { measureServer, SERVER_OPTIONS } = require('./cost')
const { SETTINGS, perfMap } = require('./cost-profile')

function callerCosts (file, nameOf, pattern) {
  const text = execFileSync('callgrind_annotate', ['--threshold=100', '--inclusive=yes', '--tree=caller', file], { encoding: 'latin1', maxBuffer: 256 << 20 })
  const out = new Map()
  let callers = []
  const nameIn = (raw) => {
    const jit = /^\?\?\?:0x([0-9a-f]+)/.exec(raw)
    return jit !== null ? nameOf(parseInt(jit[1], 16)) : raw.replace(/ \[[^\]]*\].*$/, '')
  }
  for (const line of text.split('\n')) {
    // A caller line: `cost (pct)  < file:function (Nx) [object]`.
    const c = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+<\s+(.*)$/.exec(line)
    if (c !== null) {
      const calls = /\(([\d,]+)x\)/.exec(c[2])
      callers.push([nameIn(c[2].replace(/ \([\d,]+x\)/, '')), Number(c[1].replace(/,/g, '')), calls === null ? 0 : Number(calls[1].replace(/,/g, ''))])
      continue
    }
    const f = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+\*\s+(.*)$/.exec(line)
    if (f !== null) {
      const callee = nameIn(f[2])
      if (pattern.test(callee)) {
        for (const [caller, cost, calls] of callers) {
          const key = `${callee} <- ${caller}`
          const prev = out.get(key) ?? [0, 0]
          out.set(key, [prev[0] + cost, prev[1] + calls])
        }
      }
      callers = []
      continue
    }
    if (line.trim() === '') callers = []
  }
  return out
}

async function main () {
  const [mode = 'fastify-guard', pat = 'Megamorphic|CallWithArrayLike|CallVarargs|Builtins_StoreIC$|Builtins_KeyedStoreIC$'] = process.argv.slice(2)
  const pattern = new RegExp(pat)
  const keep = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-cost-callers-'))
  try {
    const r = await measureServer(mode, SETTINGS, () => {}, SERVER_OPTIONS, { nodeFlags: ['--perf-basic-prof'], keep })
    const nameOf = perfMap(r.pid)
    const a = callerCosts(path.join(keep, `p1-n${SETTINGS.n1}-r0`), nameOf, pattern)
    const b = callerCosts(path.join(keep, `p1-n${SETTINGS.n2}-r0`), nameOf, pattern)
    const dn = SETTINGS.n2 - SETTINGS.n1
    const rows = [...new Set([...a.keys(), ...b.keys()])].map((k) => {
      const [ca, na] = a.get(k) ?? [0, 0]
      const [cb, nb] = b.get(k) ?? [0, 0]
      return [Math.round((cb - ca) / dn), ((nb - na) / dn).toFixed(2), k]
    }).filter((r) => r[0] > 5).sort((x, y) => y[0] - x[0])
    console.log(`${mode}: instructions per request (inclusive) and calls per request, callee <- caller`)
    for (const [cost, calls, k] of rows.slice(0, 40)) console.log(`${String(cost).padStart(6)} ${calls.padStart(6)}  ${k.slice(0, 140)}`)
  } finally {
    fs.rmSync(keep, { recursive: true, force: true })
  }
}

main().catch((err) => { console.error(err); process.exit(1) })
