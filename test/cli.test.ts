/**
 * The `hangup-guard` command, run as users run it: node on the compiled dist/cli/index.js (npm test
 * builds first), against real servers on 127.0.0.1 with millisecond timeouts.
 */
import t from 'tap'
import http from 'node:http'
import https from 'node:https'
import os from 'node:os'
import path from 'node:path'
import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { listen, closeServer } from './helpers/net'
import { configureServerTimeouts } from '../lib/index'

const CLI = path.join(__dirname, '..', 'dist', 'cli', 'index.js')

interface Run { status: number, stdout: string, stderr: string }

function run (...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const status = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1
      resolve({ status, stdout, stderr })
    })
  })
}

t.test('the bin is dist/cli/index.js with a shebang', async (t) => {
  const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'))
  t.equal(pkg.bin['hangup-guard'], './dist/cli/index.js')
  t.match(readFileSync(CLI, 'utf8'), /^#!\/usr\/bin\/env node\n/)
})

t.test('--help on every command exits 0; no command exits 2 with the help', async (t) => {
  for (const args of [['--help'], ['plan', '--help'], ['probe', '--help'], ['plan', '-h']]) {
    const r = await run(...args)
    t.equal(r.status, 0, args.join(' '))
    t.match(r.stdout, /^Usage: hangup-guard/, args.join(' '))
  }
  t.match((await run('probe', '--help')).stdout, /keepAliveTimeout \+ its keep-alive buffer/)
  const none = await run()
  t.equal(none.status, 2)
  t.match(none.stdout, /Commands:/)
  const v = await run('--version')
  t.equal(v.stdout.trim(), JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version)
})

t.test('plan --upstream aws-alb --handler-timeout 30s: the plan with reasons, then the snippets', async (t) => {
  const r = await run('plan', '--upstream', 'aws-alb', '--handler-timeout', '30s')
  t.equal(r.status, 0)
  const [table] = r.stdout.split('\n== ')
  for (const line of table!.split('\n')) t.ok(line.length <= 100, `table line within 100 columns: ${line.length}`)
  t.match(table, /^keepAliveTimeout\s+65 s\s+derived\s+Longer than AWS Application Load Balancer's 60 s idle/m)
  t.match(table, /^handlerTimeout\s+30 s\s+explicit/m)
  t.match(r.stdout, /== node:http\n[\s\S]*configureServerTimeouts\(server, \{ upstream: 'aws-alb', handlerTimeout: '30s', handleSignals: true, drain: \{ delay: '5s', timeout: '30s' \} \}\)/)
  t.match(r.stdout, /server\.keepAliveTimeout = 65000/)
  t.match(r.stdout, /== Fastify[\s\S]*Fastify\(\{ \.\.\.fastifyServerOptions\(options\), logger: true \}\)[\s\S]*keepAliveTimeout: 65000/)
  t.match(r.stdout, /terminationGracePeriodSeconds: 35 /)
  t.match(r.stdout, /readinessProbe:\n\s+httpGet: \{ path: \/readyz, port: 3000 \}/)
  t.match(r.stdout, /livenessProbe:\n\s+httpGet: \{ path: \/livez, port: 3000 \}/)
})

t.test('plan --json: options, plan entries, drain and snippets; a preStop counts in the grace period', async (t) => {
  const r = await run('plan', '--upstream', 'nginx', '--pre-stop', '10s', '--drain-timeout', '25s', '--port', '8080', '--json')
  t.equal(r.status, 0)
  const doc = JSON.parse(r.stdout)
  t.same(Object.keys(doc), ['options', 'plan', 'drain', 'snippets'])
  t.same(doc.options, { upstream: 'nginx' })
  t.same(Object.keys(doc.plan.keepAliveTimeout), ['value', 'source', 'reason'])
  t.equal(doc.plan.upstream.name, 'nginx')
  t.same(doc.drain, { delayMs: 5000, timeoutMs: 25000, preStopMs: 10000 })
  t.match(doc.snippets.kubernetes, /terminationGracePeriodSeconds: 40 .*10 s preStop \+ 25 s drain\.timeout \+ 5 s/)
  t.match(doc.snippets.kubernetes, /preStop:\n\s+sleep: \{ seconds: 10 \}/)
  t.match(doc.snippets.kubernetes, /port: 8080/)
  t.type(doc.snippets.nodeHttp, 'string')
  t.type(doc.snippets.fastify, 'string')

  const custom = JSON.parse((await run('plan', '--upstream', 'corp-proxy', '--upstream-idle-timeout', '120s', '--upstream-response-timeout', '45s', '--json')).stdout)
  t.same(custom.options, { upstream: { name: 'corp-proxy', kind: 'proxy', idleTimeout: '120s', responseTimeout: '45s' } })
  t.equal(custom.plan.keepAliveTimeout.value, 125000, 'idle 120 s + 5 s margin')
  t.match(custom.plan.handlerTimeout, { value: 30000, source: 'default', reason: /below corp-proxy's 45 s response timeout/ })
  t.match(custom.snippets.nodeHttp, /upstream: \{ name: 'corp-proxy', kind: 'proxy', idleTimeout: '120s', responseTimeout: '45s' \}/)
})

t.test('plan: bad options exit 2 with the coded error, as text or as JSON', async (t) => {
  const preset = await run('plan', '--upstream', 'nope', '--json')
  t.equal(preset.status, 2)
  t.equal(JSON.parse(preset.stdout).error.code, 'HG_ERR_OPT_PRESET')
  const rule = await run('plan', '--upstream', 'aws-alb', '--keep-alive-timeout', '30s')
  t.equal(rule.status, 2)
  t.match(rule.stderr, /^hangup-guard: keepAliveTimeout 30000 ms is too short.*\[HG_ERR_PLAN_KEEP_ALIVE_TOO_SHORT\]$/m)
  const flag = await run('plan', '--upstrem', 'aws-alb')
  t.equal(flag.status, 2)
  t.match(flag.stderr, /Unknown option '--upstrem'; see 'hangup-guard plan --help' \[HG_ERR_CLI_USAGE\]/)
  const duration = await run('plan', '--handler-timeout', 'soon', '--json')
  t.equal(duration.status, 2)
  t.equal(JSON.parse(duration.stdout).error.code, 'HG_ERR_OPT_DURATION')
  const command = await run('deploy')
  t.equal(command.status, 2)
  t.match(command.stderr, /unknown command 'deploy'.*\[HG_ERR_CLI_USAGE\]/)
})

t.test('probe refuses non-HTTP URLs and missing URLs (exit 2, HG_ERR_CLI_URL / HG_ERR_CLI_USAGE)', async (t) => {
  for (const url of ['ftp://127.0.0.1/', 'ws://127.0.0.1:3000/', 'file:///etc/passwd', '127.0.0.1:3000', 'not a url']) {
    const r = await run('probe', url, '--json')
    t.equal(r.status, 2, url)
    t.equal(JSON.parse(r.stdout).error.code, 'HG_ERR_CLI_URL', url)
  }
  const none = await run('probe')
  t.equal(none.status, 2)
  t.match(none.stderr, /probe needs a URL.*\[HG_ERR_CLI_USAGE\]/)
  const upstream = await run('probe', 'http://127.0.0.1:1/', '--upstream', 'nope', '--json')
  t.equal(JSON.parse(upstream.stdout).error.code, 'HG_ERR_CLI_USAGE')
})

t.test('probe: nothing listening exits 3 with HG_ERR_PROBE_CONNECT', async (t) => {
  const server = http.createServer()
  const port = await listen(server)
  await closeServer(server)
  const r = await run('probe', `http://127.0.0.1:${port}/`, '--json', '--quiet')
  t.equal(r.status, 3)
  t.equal(JSON.parse(r.stdout).error.code, 'HG_ERR_PROBE_CONNECT')
})

// Tolerances: Node checks headersTimeout/requestTimeout every connectionsCheckingInterval (50 ms
// here), the probe sends a byte every 100 ms, and a loaded 2-core machine adds its own lag; the
// lower bounds are exact (a timeout never fires early), the upper ones generous.
t.test('probe measures a bare server (keepAliveTimeout 300 ms, headersTimeout 400 ms, requestTimeout 800 ms) and reports the ALB risk', async (t) => {
  const server = http.createServer({ headersTimeout: 400, requestTimeout: 800, connectionsCheckingInterval: 50 }, (req, res) => { res.end('ok') })
  server.keepAliveTimeout = 300
  let connections = 0
  server.on('connection', () => { connections++ })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  const r = await run('probe', `http://127.0.0.1:${port}/`, '--upstream', 'aws-alb', '--max-wait', '3s', '--json')
  t.equal(r.status, 1, 'exit 1: risks found')
  t.equal(connections, 3, 'three connections, one per measure')
  const doc = JSON.parse(r.stdout)
  t.same(Object.keys(doc), ['url', 'upstream', 'maxWaitMs', 'response', 'idleClose', 'headersTimeout', 'requestTimeout', 'risks', 'notes'])
  t.same(doc.upstream, { name: 'aws-alb', kind: 'proxy', idleTimeoutMs: 60000, responseTimeoutMs: 60000 })
  t.match(doc.response, { status: 200, keepAlive: true, keepAliveHintSeconds: 0 })
  t.ok(doc.idleClose.ms >= 1250 && doc.idleClose.ms < 2500, `idle close ${doc.idleClose.ms} ms = 300 ms + Node's 1 s buffer`)
  t.match(doc.idleClose, { lowerBound: false, end: 'closed' })
  t.ok(doc.idleClose.keepAliveTimeoutEstimateMs >= 250 && doc.idleClose.keepAliveTimeoutEstimateMs < 1500, `keepAliveTimeout estimate ${doc.idleClose.keepAliveTimeoutEstimateMs}`)
  t.ok(doc.headersTimeout.ms >= 390 && doc.headersTimeout.ms < 1500, `headers timeout ${doc.headersTimeout.ms} ms`)
  t.same(doc.headersTimeout.statuses, [408])
  t.ok(doc.requestTimeout.ms >= 790 && doc.requestTimeout.ms < 2000, `request timeout ${doc.requestTimeout.ms} ms`)
  t.ok(doc.requestTimeout.statuses.includes(408))
  const ids = doc.risks.map((x: { id: string }) => x.id)
  t.same(ids, ['IDLE_CLOSE_BEFORE_UPSTREAM'])
  t.match(doc.risks[0].message, /before AWS Application Load Balancer does \(60 s\).*502.*Set keepAliveTimeout to 65 s or more/)

  const text = await run('probe', `http://127.0.0.1:${port}/`, '--upstream', 'aws-alb', '--max-wait', '3s')
  t.equal(text.status, 1)
  t.match(text.stdout, /^idle close\s+1\.\d+ s \(closed; answered 200\)$/m)
  t.match(text.stdout, /= keepAliveTimeout \+ Node's ~1 s buffer/)
  t.match(text.stdout, /^RISK IDLE_CLOSE_BEFORE_UPSTREAM: /m)
  t.match(text.stderr, /probe: idle close \(holding an idle connection\): up to 3 s/, 'progress on stderr')
  for (const line of text.stdout.split('\n')) t.ok(line.length <= 100, `probe output within 100 columns: ${line.length}`)
})

t.test('probe: a guarded server with coherent timeouts has no risk (exit 0); the cap gives lower bounds', async (t) => {
  const server = http.createServer((req, res) => { res.end('ok') })
  const guard = configureServerTimeouts(server, { keepAliveTimeout: 300, headersTimeout: 400, handlerTimeout: 500, requestTimeout: 1600, pressure: false, watchdog: false })
  t.teardown(() => guard.close())
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  const ok = await run('probe', `http://127.0.0.1:${port}/livez`, '--max-wait', '3s', '--json', '--quiet')
  t.equal(ok.status, 0, ok.stderr)
  const doc = JSON.parse(ok.stdout)
  t.same(doc.risks, [])
  t.same(doc.headersTimeout.statuses, [408])
  t.equal(ok.stderr, '', '--quiet: no progress')

  const capped = await run('probe', `http://127.0.0.1:${port}/livez`, '--max-wait', '500ms', '--json', '--quiet')
  const c = JSON.parse(capped.stdout)
  t.match(c.idleClose, { ms: 500, lowerBound: true, end: 'cap', keepAliveTimeoutEstimateMs: null })
  t.match(c.requestTimeout, { ms: 500, lowerBound: true })
  const text = await run('probe', `http://127.0.0.1:${port}/livez`, '--max-wait', '500ms', '--quiet')
  t.match(text.stdout, /^idle close\s+longer than 500 ms \(lower bound: the cap passed\)$/m)
})

t.test('probe: a server that drops slow headers without an answer is a risk', async (t) => {
  const server = http.createServer((req, res) => { res.end('ok') })
  // An application-level "slowloris" guard that destroys sockets instead of answering 408.
  server.on('connection', (socket) => {
    const timer = setTimeout(() => { if (socket.bytesWritten === 0) socket.destroy() }, 300)
    socket.on('close', () => clearTimeout(timer))
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  const r = await run('probe', `http://127.0.0.1:${port}/`, '--max-wait', '2s', '--json', '--quiet')
  t.equal(r.status, 1)
  const doc = JSON.parse(r.stdout)
  t.ok(doc.risks.some((x: { id: string, message: string }) => x.id === 'CLOSED_WITHOUT_ANSWER' && /^Headers sent slowly/.test(x.message)), JSON.stringify(doc.risks))
})

t.test('probe over https: an unverifiable certificate exits 3 unless --insecure', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hg-probe-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' })
  } catch {
    t.pass('skipped: openssl is not available to make a certificate')
    return
  }
  const server = https.createServer({ key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) }, (req, res) => { res.end('ok') })
  server.keepAliveTimeout = 300
  const port = await listen(server as unknown as http.Server)
  t.teardown(() => closeServer(server as unknown as http.Server))
  const refused = await run('probe', `https://127.0.0.1:${port}/`, '--json', '--quiet', '--max-wait', '2s')
  t.equal(refused.status, 3)
  t.equal(JSON.parse(refused.stdout).error.code, 'HG_ERR_PROBE_CONNECT')
  const r = await run('probe', `https://127.0.0.1:${port}/`, '--insecure', '--json', '--quiet', '--max-wait', '3s')
  t.equal(r.status, 0, r.stdout)
  const doc = JSON.parse(r.stdout)
  t.ok(doc.idleClose.ms >= 1250 && doc.idleClose.ms < 2500, `idle close over TLS ${doc.idleClose.ms} ms`)
})
