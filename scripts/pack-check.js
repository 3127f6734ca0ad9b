#!/usr/bin/env node
'use strict'
/**
 * npm run pack-check: what a user installs, checked from the outside.
 *
 * 1. `npm pack` (prepack rebuilds dist/), then the tarball's file list: LICENSE, README,
 *    CHANGELOG, docs, dist with types; nothing from the repository's tooling; every package.json
 *    entry point and every link of the shipped Markdown resolves to a shipped file (relative
 *    links, and unpkg links pinned to this version); dist's own imports resolve.
 * 2. Fresh projects in a temp dir install the tarball (npm, --prefer-offline):
 *    - plain http (ESM): the tarball alone; one copy of fastify-plugin in its tree;
 *    - TypeScript (nodenext, strict): the README's examples compile, then run;
 *    - ESM (JavaScript): the compiled examples run against its own install;
 *    - CommonJS: require() of the three entry points, the quickstart, and the bin.
 *    Examples run with test/fixtures/docs-preload.cjs (outgoing calls go to a local upstream,
 *    listen(3000) gets an ephemeral port), against 127.0.0.1 only.
 * Bounded: every npm command has a time limit; the whole check takes about a minute with a warm
 * npm cache. Exit status 0 when every check passed.
 */
const { execFileSync, fork } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const { once } = require('node:events')

const ROOT = path.join(__dirname, '..')
const PRELOAD = path.join(ROOT, 'test', 'fixtures', 'docs-preload.cjs')
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
const NPM_TIMEOUT_MS = 180_000
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hangup-guard-pack-'))
let failures = 0

function ok (cond, what, detail = '') {
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}${!cond && detail ? `\n     ${detail}` : ''}`)
  if (!cond) failures++
  return cond
}

function sh (cmd, args, cwd) {
  const t0 = Date.now()
  const out = execFileSync(cmd, args, { cwd, encoding: 'utf8', timeout: NPM_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] })
  console.log(`     $ ${cmd} ${args.join(' ')}  (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
  return out
}

function section (title) { console.log(`\n== ${title}`) }

// 1. The tarball.
section('npm pack')
const packed = sh('npm', ['pack', '--json', '--pack-destination', tmp], ROOT)
const info = JSON.parse(packed.slice(packed.search(/^\[/m)))[0]
const tarball = path.join(tmp, info.filename)
const files = new Set(info.files.map((f) => f.path))
console.log(`     ${info.filename}: ${info.files.length} files, ${(info.size / 1024).toFixed(1)} kB packed, ${(info.unpackedSize / 1024).toFixed(1)} kB unpacked`)
for (const f of ['LICENSE', 'README.md', 'CHANGELOG.md', 'package.json', 'docs/api.md', 'docs/recipes.md', 'dist/index.js', 'dist/index.d.ts', 'dist/fastify/index.js', 'dist/fastify/index.d.ts', 'dist/prometheus/index.js', 'dist/prometheus/index.d.ts', 'dist/cli/index.js']) {
  ok(files.has(f), `contains ${f}`)
}
const stray = [...files].filter((f) => !/^(dist\/|docs\/|README\.md$|LICENSE$|CHANGELOG\.md$|package\.json$)/.test(f))
ok(stray.length === 0, 'nothing else (no lib/, test/, bench/, demo/, .ci/, scripts/)', stray.join(', '))

const targets = [pkg.main, pkg.types, ...Object.values(pkg.bin), ...Object.values(pkg.exports).flatMap((e) => typeof e === 'string' ? [e] : Object.values(e))]
for (const target of targets) ok(files.has(target.replace(/^\.\//, '')), `package.json points at a shipped file: ${target}`)

const missing = []
for (const md of [...files].filter((f) => f.endsWith('.md'))) {
  const text = fs.readFileSync(path.join(ROOT, md), 'utf8')
  for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const unpkg = /^https:\/\/unpkg\.com\/hangup-guard@([^/]+)\/([^#]+)/.exec(target)
    if (unpkg !== null) {
      if (unpkg[1] !== pkg.version || !files.has(unpkg[2])) missing.push(`${md}: ${target}`)
    } else if (!/^[a-z]+:/.test(target) && !target.startsWith('#')) {
      const file = path.posix.normalize(path.posix.join(path.posix.dirname(md), target.split('#')[0]))
      if (!files.has(file)) missing.push(`${md}: ${target}`)
    }
  }
}
ok(missing.length === 0, 'every link in the shipped Markdown resolves to a shipped file (unpkg links at this version)', missing.join('\n     '))
const unresolved = []
for (const f of [...files].filter((x) => /^dist\/.*\.(js|d\.ts)$/.test(x))) {
  const text = fs.readFileSync(path.join(ROOT, f), 'utf8')
  for (const [, spec] of text.matchAll(/(?:require\(|from |import\()["'](\.{1,2}\/[^"']+)["']/g)) {
    const base = path.posix.normalize(path.posix.join(path.posix.dirname(f), spec))
    const candidates = f.endsWith('.d.ts') ? [`${base}.d.ts`, `${base}/index.d.ts`, base] : [`${base}.js`, `${base}/index.js`, base]
    if (!candidates.some((c) => files.has(c) || (base === 'package.json'))) unresolved.push(`${f}: ${spec}`)
  }
}
ok(unresolved.length === 0, "dist's relative imports resolve inside the tarball", unresolved.join(', '))
ok(fs.readFileSync(path.join(ROOT, 'dist', 'cli', 'index.js'), 'utf8').startsWith('#!/usr/bin/env node\n'), 'the bin starts with a shebang')

// 2. Fresh projects.
function project (name, type, deps) {
  const dir = path.join(tmp, name)
  fs.mkdirSync(dir)
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `pack-check-${name}`, version: '1.0.0', private: true, type }, null, 2))
  sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball, ...deps], dir)
  return dir
}

/** The README's examples, with what they need around them to run (and a short budget). */
function readmeExamples () {
  const text = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const out = {}
  for (const [, id, code] of text.matchAll(/<!-- example: ([\w-]+) -->\n```ts\n([\s\S]*?)```/g)) out[id] = code
  return {
    'readme-http': out['readme-http'].replace("handlerTimeout: '30s'", "handlerTimeout: '300ms'"),
    'readme-fastify': `${out['readme-fastify']}await app.listen({ port: 3000 })\n`,
    'readme-prometheus': out['readme-prometheus'],
    'readme-handle-signals': `import http from 'node:http'\nconst server = http.createServer((req, res) => { res.end('ok') })\n${out['readme-handle-signals']}server.listen(3000)\n`
  }
}

const upstream = { slow: false }
const upstreamServer = http.createServer((req, res) => {
  if (!upstream.slow) res.end('{"from":"upstream"}')
  else setTimeout(() => res.end('late'), 5_000).unref()
})

function get (port, p) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c) => { body += c }).on('end', () => resolve({ status: res.statusCode, body }))
    }).on('error', reject)
  })
}

async function runServer (cwd, file, checks) {
  const child = fork(file, [], { cwd, execArgv: ['--require', PRELOAD], env: { ...process.env, HG_DOCS_UPSTREAM_PORT: String(upstreamServer.address().port) }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  let stderr = ''
  child.stderr.on('data', (c) => { stderr += c })
  child.stdout.resume()
  try {
    const [message] = await Promise.race([once(child, 'message'), once(child, 'exit').then(() => { throw new Error(`exited before listening: ${stderr}`) }), new Promise((resolve, reject) => setTimeout(() => reject(new Error('no listen within 15 s')), 15_000).unref())])
    for (const [p, slow, status, body] of checks) {
      upstream.slow = slow
      const r = await get(message.listening, p)
      ok(r.status === status && (body === undefined || body.test(r.body)), `${path.basename(cwd)}/${path.basename(file)}: GET ${p}${slow ? ' (upstream slower than the budget)' : ''} answers ${status}`, `got ${r.status} ${r.body.slice(0, 200)} ${stderr.slice(0, 400)}`)
    }
  } catch (err) {
    ok(false, `${path.basename(cwd)}/${path.basename(file)} runs`, err.message)
  } finally {
    child.kill('SIGKILL')
  }
}

const CHECKS = {
  'readme-http': [['/', false, 200, /upstream/], ['/', true, 504, /HG_ERR_DEADLINE/]],
  'readme-fastify': [['/report', false, 200, /upstream/]],
  'readme-prometheus': [['/', false, 200, /upstream/], ['/metrics', false, 200, /# TYPE hangup_guard_answers_total counter/]],
  'readme-handle-signals': [['/', false, 200, /^ok$/], ['/readyz', false, 200]]
}

async function main () {
  upstreamServer.listen(0, '127.0.0.1')
  await once(upstreamServer, 'listening')

  section('plain http project (ESM): the tarball alone')
  const plain = project('plain-http', 'module', [])
  const tree = sh('npm', ['ls', 'fastify-plugin', '--all', '--parseable'], plain).trim().split('\n').filter(Boolean)
  ok(tree.length === 1, `one copy of fastify-plugin (${tree.length})`, tree.join(', '))
  const fastifyLoaded = sh('node', ['--input-type=module', '-e', "import { configureServerTimeouts } from 'hangup-guard'; import { createRequire } from 'node:module'; const r = createRequire(import.meta.url); console.log(typeof configureServerTimeouts, Object.keys(r.cache).some((f) => f.includes('fastify')))"], plain).trim()
  ok(fastifyLoaded === 'function false', 'import { configureServerTimeouts } works and loads nothing of Fastify', fastifyLoaded)
  const planText = sh('npx', ['--no-install', 'hangup-guard', 'plan', '--upstream', 'nginx'], plain)
  ok(/^keepAliveTimeout\s+65 s/m.test(planText), 'npx hangup-guard plan runs without fastify or prom-client installed')

  section('TypeScript project (nodenext, strict)')
  const tsDir = project('typescript', 'module', ['fastify', 'prom-client', 'typescript@5.9', '@types/node@20'])
  fs.writeFileSync(path.join(tsDir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, outDir: 'out', types: ['node'], skipLibCheck: false, esModuleInterop: true }, include: ['src'] }, null, 2))
  fs.mkdirSync(path.join(tsDir, 'src'))
  const examples = readmeExamples()
  for (const [id, code] of Object.entries(examples)) fs.writeFileSync(path.join(tsDir, 'src', `${id}.mts`), code)
  let compiled = false
  try {
    sh('npx', ['--no-install', 'tsc', '-p', '.'], tsDir)
    compiled = true
  } catch (err) {
    ok(false, 'tsc compiles the README examples', `${err.stdout}${err.stderr}`)
  }
  if (compiled) {
    ok(true, `tsc compiles the README examples (skipLibCheck: false): ${Object.keys(examples).join(', ')}`)
    for (const id of Object.keys(examples)) await runServer(tsDir, path.join(tsDir, 'out', `${id}.mjs`), CHECKS[id])
  }

  section('ESM project (JavaScript)')
  const esm = project('esm', 'module', ['fastify', 'prom-client'])
  if (compiled) {
    for (const id of Object.keys(examples)) {
      fs.copyFileSync(path.join(tsDir, 'out', `${id}.mjs`), path.join(esm, `${id}.mjs`))
      await runServer(esm, path.join(esm, `${id}.mjs`), CHECKS[id])
    }
  }

  section('CommonJS project (with Express)')
  const cjs = project('cjs', 'commonjs', ['fastify', 'prom-client', 'express@4'])
  const recipes = fs.readFileSync(path.join(ROOT, 'docs', 'recipes.md'), 'utf8')
  const express = /<!-- example: express -->\n```js\n([\s\S]*?)```/.exec(recipes)[1]
  fs.writeFileSync(path.join(cjs, 'express.js'), express.replace("handlerTimeout: '20s'", "handlerTimeout: '300ms'"))
  await runServer(cjs, path.join(cjs, 'express.js'), [['/report', false, 200, /upstream/], ['/report', true, 504, /HG_ERR_DEADLINE/]])
  fs.writeFileSync(path.join(cjs, 'server.js'), `const http = require('node:http')
const { configureServerTimeouts, deadlineOf } = require('hangup-guard')
const hangupGuard = require('hangup-guard/fastify')
const { prometheusMetrics } = require('hangup-guard/prometheus')
if (typeof hangupGuard !== 'function' || typeof hangupGuard.fastifyServerOptions !== 'function' || typeof prometheusMetrics !== 'function') throw new Error('entry points')
const server = http.createServer(async (req, res) => {
  const { signal } = deadlineOf(req)
  const data = await fetch('http://127.0.0.1:9000/slow', { signal })
  res.end(await data.text())
})
const guard = configureServerTimeouts(server, { upstream: 'aws-alb', handlerTimeout: '300ms' })
prometheusMetrics(guard)
server.listen(3000)
`)
  await runServer(cjs, path.join(cjs, 'server.js'), CHECKS['readme-http'])
  const plan = JSON.parse(sh('npx', ['--no-install', 'hangup-guard', 'plan', '--upstream', 'aws-alb', '--handler-timeout', '30s', '--json'], cjs))
  ok(plan.plan.keepAliveTimeout.value === 65000 && typeof plan.snippets.kubernetes === 'string', 'npx hangup-guard plan --upstream aws-alb --handler-timeout 30s --json')
  const help = sh('npx', ['--no-install', 'hangup-guard', 'probe', '--help'], cjs)
  ok(help.startsWith('Usage: hangup-guard probe'), 'npx hangup-guard probe --help')

  upstreamServer.close()
  console.log(`\n${failures === 0 ? 'pack-check: every check passed' : `pack-check: ${failures} check(s) failed`} (work dir ${tmp})`)
  if (failures === 0) fs.rmSync(tmp, { recursive: true, force: true })
  process.exitCode = failures === 0 ? 0 : 1
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
