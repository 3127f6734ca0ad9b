/** Issue 11, item 3: messages that fit the door, and a did-you-mean wherever a name can be mistyped. */
import t from 'tap'
import http from 'node:http'
import Fastify from 'fastify'
import { configureServerTimeouts, deadlineOf, planTimeouts } from '../../lib/index'
import hangupGuard from '../../lib/fastify'
import { listen, closeServer, get, QUIET } from '../helpers/net'

t.test('the Fastify plugin registered twice: the message speaks of plugin registrations, not of a handle', async (t) => {
  const app = Fastify()
  await app.register(hangupGuard, QUIET)
  await t.rejects(async () => { await app.register(hangupGuard, QUIET) }, { code: 'HG_ERR_ALREADY_CONFIGURED', message: /register the plugin once per server/ })
  await app.close()
  const server = http.createServer()
  const guard = configureServerTimeouts(server, QUIET)
  t.throws(() => configureServerTimeouts(server, QUIET), { code: 'HG_ERR_ALREADY_CONFIGURED', message: /call close\(\) on the handle configureServerTimeouts\(\) returned/ })
  guard.close()
})

t.test('an Express-style app instead of its server: says what to pass', async (t) => {
  const app = Object.assign((req: http.IncomingMessage, res: http.ServerResponse) => { res.end() }, { use () {}, listen () {} })
  t.throws(() => configureServerTimeouts(app as unknown as http.Server), { code: 'HG_ERR_NOT_A_SERVER', message: /app\.listen\(3000\).*http\.createServer\(app\)/ })
})

t.test('deadline.extend() takes a duration string, as the message and the docs say', async (t) => {
  let remaining = 0
  const server = http.createServer((req, res) => {
    const deadline = deadlineOf(req)!
    deadline.extend('5s')
    remaining = deadline.remaining()
    t.throws(() => deadline.extend('soon' as '1s'), { code: 'HG_ERR_OPT_DURATION', message: /extend\(\)/ })
    res.end('ok')
  })
  const guard = configureServerTimeouts(server, { ...QUIET, handlerTimeout: 1000 })
  const port = await listen(server)
  t.teardown(async () => { guard.close(); await closeServer(server) })
  t.equal((await get(port, '/')).status, 200)
  t.ok(remaining > 5000 && remaining <= 6000, `1 s + 5 s (${Math.round(remaining)} ms left)`)
})

t.test("health('bogus') is refused, through both doors", async (t) => {
  const server = http.createServer()
  const guard = configureServerTimeouts(server, QUIET)
  t.throws(() => guard.health('bogus' as 'liveness'), { code: 'HG_ERR_OPT_RANGE', message: /health\(kind\).*'liveness' or 'readiness'/ })
  guard.close()
  const app = Fastify()
  await app.register(hangupGuard, QUIET)
  t.throws(() => app.hangupGuard.health('bogus' as 'liveness'), { code: 'HG_ERR_OPT_RANGE' })
  await app.close()
})

t.test('unknown preset names and nested keys get a did-you-mean', async (t) => {
  t.throws(() => planTimeouts({ upstream: 'aws-abl' as 'aws-alb' }), { code: 'HG_ERR_OPT_PRESET', message: /"aws-abl"; did you mean 'aws-alb'\?/ })
  t.throws(() => planTimeouts({ upstream: 'ingress' as 'aws-alb' }), { code: 'HG_ERR_OPT_PRESET', message: /did you mean 'ingress-nginx'\?/ })
  t.throws(() => configureServerTimeouts(http.createServer(), { health: { livenes: '/l' } as object }), { code: 'HG_ERR_OPT_UNKNOWN', message: /health\.livenes.*did you mean 'livenessPath'\?/ })
})
