/**
 * The built package (npm test builds dist/ first): `hangup-guard/fastify` from CommonJS and ESM,
 * and the main entry loading nothing of Fastify. Each case runs in a fresh process, so
 * require.cache shows only what that entry loaded.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { planTimeouts } from '../lib/core/plan'

const run = promisify(execFile)
const root = path.resolve(__dirname, '..')

async function node (args: string[]): Promise<unknown> {
  const { stdout } = await run(process.execPath, args, { cwd: root, timeout: 30_000 })
  return JSON.parse(stdout.trim().split('\n').pop() as string)
}

// A 100 ms route budget, a handler that answers after 300 ms: the answer must be the guard's 504.
// pressure: false: a CPU-starved child under a parallel test run looks stalled for more than the
// budget, and would rightly be answered 503 HG_ERR_STALLED.
const SERVE = `
  const app = Fastify()
  await app.register(plugin, { handlerTimeout: 100, margin: 50, pressure: false })
  app.get('/', (req, reply) => { setTimeout(() => reply.send('late'), 300) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  // node:http, not fetch: loading undici on first use is synchronous work in this same process,
  // which the stall detector would see; with a 100 ms budget that request would get 503 HG_ERR_STALLED.
  await new Promise((resolve) => setTimeout(resolve, 100))
  const res = await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: app.server.address().port, path: '/', agent: false }, (r) => {
      let text = ''
      r.setEncoding('utf8').on('data', (c) => { text += c }).on('end', () => resolve({ status: r.statusCode, text }))
    }).on('error', reject)
  })
  const body = JSON.parse(res.text)
  await app.close()
`

t.before(() => {
  if (!existsSync(path.join(root, 'dist', 'fastify', 'index.js'))) throw new Error('dist/fastify/index.js is missing: run npm run build (npm test does)')
})

t.test("CommonJS: require('hangup-guard/fastify') is the plugin itself, with .default and named exports", async (t) => {
  const out = await node(['-e', `
    const http = require('node:http')
    const Fastify = require('fastify')
    const plugin = require('hangup-guard/fastify')
    ;(async () => {
      ${SERVE}
      console.log(JSON.stringify({
        type: typeof plugin,
        same: require('./dist/fastify/index.js') === plugin,
        default: plugin.default === plugin,
        named: plugin.hangupGuard === plugin,
        helper: typeof plugin.fastifyServerOptions,
        meta: plugin[Symbol.for('plugin-meta')],
        status: res.status,
        code: body.code
      }))
    })()
  `])
  t.same(out, { type: 'function', same: true, default: true, named: true, helper: 'function', meta: { fastify: '5.x', name: 'hangup-guard' }, status: 504, code: 'HG_ERR_DEADLINE' })
})

t.test("ESM: import('hangup-guard/fastify') gives the plugin as default, and named exports", async (t) => {
  const out = await node(['--input-type=module', '-e', `
    import http from 'node:http'
    import Fastify from 'fastify'
    import plugin, { hangupGuard, fastifyServerOptions } from 'hangup-guard/fastify'
    const dynamic = await import('hangup-guard/fastify')
    ${SERVE}
    console.log(JSON.stringify({
      type: typeof plugin,
      named: hangupGuard === plugin,
      dynamic: dynamic.default === plugin,
      helper: fastifyServerOptions({ upstream: 'nginx' }).keepAliveTimeout,
      status: res.status,
      code: body.code
    }))
  `])
  t.same(out, { type: 'function', named: true, dynamic: true, helper: planTimeouts({ upstream: 'nginx' }).keepAliveTimeout.value, status: 504, code: 'HG_ERR_DEADLINE' })
})

t.test('the main entry loads no Fastify module (fastify, fastify-plugin, @fastify/*, the fastify door)', async (t) => {
  const out = await node(['-e', `
    const main = require('hangup-guard')
    const loaded = Object.keys(require.cache).filter((k) => /[\\\\/]node_modules[\\\\/](fastify|fastify-plugin|@fastify)[\\\\/]|[\\\\/]dist[\\\\/]fastify/.test(k))
    console.log(JSON.stringify({ loaded, api: typeof main.configureServerTimeouts, modules: Object.keys(require.cache).length }))
  `]) as { loaded: string[], api: string, modules: number }
  t.same(out.loaded, [])
  t.equal(out.api, 'function')
  t.ok(out.modules > 3, 'the entry was loaded')
})
