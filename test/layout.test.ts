/**
 * Issue 11, item 6: the architecture as `ls lib/` shows it. The core imports no door, and no
 * module of lib/ takes part in an import cycle (type-only imports count too).
 */
import t from 'tap'
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs'
import path from 'node:path'

const LIB = path.resolve(__dirname, '..', 'lib')

function files (dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f)
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : []
  })
}

function imports (file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const out: string[] = []
  for (const m of text.matchAll(/(?:from|import|require)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
    const base = path.resolve(path.dirname(file), m[1]!)
    const target = [base + '.ts', path.join(base, 'index.ts')].find((c) => existsSync(c))
    if (target !== undefined) out.push(target)
  }
  return out
}

const graph = new Map(files(LIB).map((f) => [f, imports(f)]))
const rel = (f: string): string => path.relative(LIB, f)

t.test('lib/ has the core and one folder per door', async (t) => {
  for (const dir of ['core', 'http', 'fastify']) t.ok(statSync(path.join(LIB, dir)).isDirectory(), `lib/${dir}/`)
})

t.test('no core module imports a door', async (t) => {
  const bad: string[] = []
  for (const [file, deps] of graph) {
    if (!rel(file).startsWith('core/')) continue
    for (const d of deps) if (!rel(d).startsWith('core/')) bad.push(`${rel(file)} -> ${rel(d)}`)
  }
  t.same(bad, [])
})

t.test('no import cycles in lib/ (type-only imports included)', async (t) => {
  const cycles: string[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const stack: string[] = []
  const visit = (f: string): void => {
    state.set(f, 'visiting')
    stack.push(f)
    for (const d of graph.get(f) ?? []) {
      if (state.get(d) === 'visiting') cycles.push([...stack.slice(stack.indexOf(d)), d].map(rel).join(' -> '))
      else if (state.get(d) === undefined) visit(d)
    }
    stack.pop()
    state.set(f, 'done')
  }
  for (const f of graph.keys()) if (state.get(f) === undefined) visit(f)
  t.same(cycles, [])
})

t.test('the Guard is built whole: no module assigns into it', async (t) => {
  const bad: string[] = []
  for (const file of graph.keys()) {
    if (rel(file) === 'core/guard.ts') continue
    readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
      if (/\bguard\.[A-Za-z]+\s*=[^=]/.test(line)) bad.push(`${rel(file)}:${i + 1}: ${line.trim()}`)
    })
  }
  t.same(bad, [])
})
