import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PRESETS, PRESET_NAMES, type Preset } from '../lib/core/presets'

/**
 * docs/presets.md must list every preset exactly once, with the figures of lib/presets.ts:
 * the table whose header starts with "| Preset | What it is |", one row per preset, first cell
 * the name in backticks, idle timeout as "60 s", response timeout as "60 s" or "—".
 */
const DOC = join(__dirname, '..', 'docs', 'presets.md')

interface Row {
  readonly line: number
  readonly name: string
  readonly cells: readonly string[]
}

function tableRows (text: string): Row[] {
  const lines = text.split('\n')
  const header = lines.findIndex((l) => /^\|\s*Preset\s*\|\s*What it is\s*\|/.test(l))
  if (header === -1) throw new Error('docs/presets.md: no table with a "| Preset | What it is |" header')
  const rows: Row[] = []
  // header + separator line, then rows until the first line that is not a table row
  for (let i = header + 2; i < lines.length && lines[i]!.startsWith('|'); i++) {
    const cells = lines[i]!.split('|').slice(1, -1).map((c) => c.trim())
    const m = /^`([^`]+)`$/.exec(cells[0] ?? '')
    rows.push({ line: i + 1, name: m === null ? (cells[0] ?? '') : m[1]!, cells })
  }
  return rows
}

/** "60 s" → 60000; anything else → NaN. */
function seconds (cell: string): number {
  const m = /^(\d+(?:\.\d+)?) s$/.exec(cell)
  return m === null ? Number.NaN : Math.round(Number(m[1]) * 1000)
}

const rows = tableRows(readFileSync(DOC, 'utf8'))

t.test('the table has the eight documented columns on every row', async (t) => {
  t.ok(rows.length > 0, 'the table has rows')
  for (const row of rows) t.equal(row.cells.length, 8, `line ${row.line}: 8 cells`)
})

t.test('every preset appears exactly once, and nothing else', async (t) => {
  for (const name of PRESET_NAMES) {
    t.equal(rows.filter((r) => r.name === name).length, 1, `${name}: one row`)
  }
  for (const row of rows) {
    t.ok(Object.hasOwn(PRESETS, row.name), `line ${row.line}: "${row.name}" is a preset name in backticks`)
  }
})

t.test('each row matches lib/presets.ts', async (t) => {
  for (const name of PRESET_NAMES) {
    const row = rows.find((r) => r.name === name)
    if (row === undefined) continue // reported above
    const p: Preset = PRESETS[name]
    const [, , kind = '', idle = '', response = '', header = '', , source = ''] = row.cells
    t.equal(kind, p.kind, `${name}: kind`)
    t.equal(seconds(idle), p.idleTimeout, `${name}: idle timeout "${idle}" is ${p.idleTimeout / 1000} s`)
    if (p.responseTimeout === undefined) {
      t.equal(response, '—', `${name}: no response timeout`)
    } else {
      t.equal(seconds(response), p.responseTimeout, `${name}: response timeout "${response}" is ${p.responseTimeout / 1000} s`)
    }
    if (p.deadlineHeader === undefined) {
      t.equal(header, '—', `${name}: no deadline header`)
    } else {
      t.equal(header, `\`${p.deadlineHeader}\``, `${name}: deadline header`)
    }
    const link = /\]\((https:\/\/[^)\s]+)\)/.exec(source)
    t.equal(link?.[1], p.source, `${name}: the row links the preset's source`)
  }
})

t.test('every source is an https URL', async (t) => {
  for (const name of PRESET_NAMES) {
    const source = PRESETS[name].source
    let url: URL | null = null
    try { url = new URL(source) } catch { url = null }
    t.ok(url !== null && url.protocol === 'https:' && url.hostname.includes('.'), `${name}: ${source}`)
  }
})
