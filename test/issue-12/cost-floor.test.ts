/**
 * bench/cost-floor.js (issue 12) measures the Fastify plugin next to its floor: an empty hook, the
 * least per-request deadline, and the plugin cut down in copies of dist/. Each cut is a text
 * replacement in the build: when the source it replaces changes, the script skips that row, so
 * this test says so first. Every server the script counts must answer the same hello world, and
 * each cut must do what its row says (the plugin's hook admits nothing / still admits).
 */
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import http from 'node:http'

type Cut = [file: string, from: string, to: string]
interface BenchServer { port: number, call: (cmd: string) => Promise<{ stats: { requests: number, inFlight: number } | null }> }

const root = path.join(__dirname, '..', '..')
const floor = require(path.join(root, 'bench', 'cost-floor.js')) as {
  CUTS: Record<string, Cut[]>
  cutBuild: (name: string, cuts: Cut[], under?: string) => string
}
const bench = require(path.join(root, 'bench', 'lib.js')) as {
  startServer: (mode: string, options?: object, execArgv?: string[], launch?: object) => Promise<BenchServer>
  stopAllChildren: () => Promise<unknown>
}

function get (port: number): Promise<{ status: number | undefined, body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode, body }))
    }).on('error', reject)
  })
}

async function start (mode: string, dist?: string): Promise<BenchServer> {
  const env = { ...process.env }
  if (dist === undefined) delete env.HG_BENCH_DIST
  else env.HG_BENCH_DIST = dist
  return await bench.startServer(mode, {}, [], { env, stdout: 'ignore' })
}

t.teardown(() => bench.stopAllChildren())

t.test('the floor servers answer the hello world every counted server answers', async (t) => {
  for (const mode of ['fastify-plain', 'fastify-empty-hook', 'fastify-deadline-floor']) {
    const server = await start(mode)
    for (let i = 0; i < 3; i++) t.same(await get(server.port), { status: 200, body: 'hello world' }, `${mode}, request ${i + 1}`)
  }
})

t.test('each cut still applies to dist/, and its build answers and admits as its row says', async (t) => {
  fs.mkdirSync(path.join(root, '.bench-dist'), { recursive: true })
  const under = fs.mkdtempSync(path.join(root, '.bench-dist', 'test-'))
  t.teardown(() => fs.rmSync(under, { recursive: true, force: true }))
  // The whole plugin first: the count the cuts are read against.
  const expected: Record<string, number> = { 'whole plugin': 2, 'hook admits nothing': 0, 'admission without checks': 2 }
  t.same(Object.keys(floor.CUTS).sort(), Object.keys(expected).filter((k) => k !== 'whole plugin').sort(), 'the cuts this test knows')
  for (const name of Object.keys(expected)) {
    const cuts = floor.CUTS[name]
    let dist: string | undefined
    if (cuts !== undefined) {
      dist = floor.cutBuild(name, cuts, under) // throws when a cut's text is no longer in dist/
      for (const [file, , to] of cuts) t.ok(fs.readFileSync(path.join(dist, file), 'utf8').includes(to), `${name}: ${file} patched`)
    }
    const server = await start('fastify-guard', dist)
    for (let i = 0; i < 2; i++) t.same(await get(server.port), { status: 200, body: 'hello world' }, `${name}: request ${i + 1}`)
    const { stats } = await server.call('measure')
    t.equal(stats?.requests, expected[name], `${name}: requests admitted`)
    t.equal(stats?.inFlight, 0, `${name}: none left in flight`)
  }
})

t.test('a cut whose text is gone is skipped with the reason, never applied half-way', async (t) => {
  fs.mkdirSync(path.join(root, '.bench-dist'), { recursive: true })
  const under = fs.mkdtempSync(path.join(root, '.bench-dist', 'test-'))
  t.teardown(() => fs.rmSync(under, { recursive: true, force: true }))
  t.throws(() => floor.cutBuild('gone', [['fastify/index.js', 'text that is not in the build', '']], under),
    { skip: true, message: /no longer holds the text this cut replaces/ })
})
