/** Issue 11, item 2: one resolver, every value checked and shown, nothing acquired before the check passes. */
import t from 'tap'
import http from 'node:http'
import Fastify from 'fastify'
import { configureServerTimeouts } from '../../lib/index'
import hangupGuard from '../../lib/fastify'
import { acquireSampler } from '../../lib/core/sampler'

const server = (): http.Server => http.createServer()

t.test('unknown keys inside nested options are refused with a did-you-mean, as top-level ones are', async (t) => {
  const cases: Array<[object, RegExp]> = [
    [{ pressure: { maxEventLoopDelai: 100 } }, /'pressure\.maxEventLoopDelai'; did you mean 'maxEventLoopDelay'\?/],
    [{ drain: { grace: '5s' } }, /'drain\.grace'/],
    [{ health: { livenes: '/l' } }, /'health\.livenes'; did you mean 'livenessPath'\?/],
    [{ watchdog: { logafter: '1s' } }, /'watchdog\.logafter'; did you mean 'logAfter'\?/],
    [{ upstream: { idletimeout: '60s' } }, /'upstream\.idletimeout'; did you mean 'idleTimeout'\?/]
  ]
  for (const [options, message] of cases) t.throws(() => configureServerTimeouts(server(), options), { code: 'HG_ERR_OPT_UNKNOWN', message })
  const app = Fastify()
  await t.rejects(async () => { await app.register(hangupGuard, { pressure: { maxEventLoopDelai: 100 } } as object) }, { code: 'HG_ERR_OPT_UNKNOWN' }, 'the Fastify door too')
  await app.close()
})

t.test("every duration is at most Node's timer limit (2^31 - 1 ms)", async (t) => {
  t.throws(() => configureServerTimeouts(server(), { drain: { timeout: '600h' } }), { code: 'HG_ERR_OPT_RANGE', message: /drain\.timeout.*"600h".*2147483647 ms/ })
  t.throws(() => configureServerTimeouts(server(), { handlerTimeout: '600h' }), { code: 'HG_ERR_OPT_RANGE', message: /handlerTimeout/ })
  t.throws(() => configureServerTimeouts(server(), { handlerTimeout: 2 ** 31 }), { code: 'HG_ERR_OPT_RANGE' })
  const ok = configureServerTimeouts(server(), { handlerTimeout: '500h', watchdog: false })
  ok.close()
})

t.test('every bad value gets a coded error that shows the value', async (t) => {
  const cases: Array<[object, RegExp]> = [
    [{ handlerTimeout: 10n }, /got 10n/],
    [{ handlerTimeout: NaN }, /got NaN/],
    [{ handlerTimeout: Symbol('later') }, /got Symbol\(later\)/],
    [{ retryAfter: { toJSON () { throw new Error('no') } } }, /retryAfter.*toJSON/],
    [{ timeoutStatus: 'x'.repeat(10_000) }, /"x{20,}…/]
  ]
  for (const [options, message] of cases) {
    t.throws(() => configureServerTimeouts(server(), options as object), { code: /^HG_ERR_OPT_/, message })
  }
  const getter = Object.defineProperty({}, 'handlerTimeout', { enumerable: true, get () { throw new Error('boom') } })
  t.throws(() => configureServerTimeouts(server(), getter), { code: 'HG_ERR_OPT_TYPE', message: /handlerTimeout/ })
})

t.test('a refused call acquires nothing: no health check runs, no sampler ref, no listener', async (t) => {
  let runs = 0
  const s = server()
  t.throws(() => configureServerTimeouts(s, { pressure: { healthCheck: () => { runs++; return true } }, watchdog: { logAfter: 'soon' } } as object), { code: 'HG_ERR_OPT_DURATION' })
  t.equal(runs, 0, 'the health check never ran')
  t.equal(s.listenerCount('timeout') + s.listenerCount('clientError'), 0)
  const sampler = acquireSampler() as unknown as { refs: number, release (): void }
  t.equal(sampler.refs, 1, 'no sampler reference left')
  sampler.release()
})
