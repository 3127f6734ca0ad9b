/**
 * The watchdog's worker thread starts only when it has work: a `logAfter` line or an `onStall`
 * callback (issue 12: a worker in the process cost every request of a guarded hello world ~600
 * instructions, for nothing the defaults read). Through both doors; threads counted in /proc
 * (new Worker() creates its thread synchronously: no wait before counting).
 */
import t from 'tap'
import fs from 'node:fs'
import http from 'node:http'
import Fastify from 'fastify'
import { configureServerTimeouts, type HangupGuardOptions } from '../../lib/http'
import hangupGuard from '../../lib/fastify'
import { until } from '../helpers/net'

const threads = (): number => fs.readdirSync('/proc/self/task').length

const skip = fs.existsSync('/proc/self/task') ? false : 'no /proc/self/task here (not Linux): threads cannot be counted'
{
  const cases: Array<[string, HangupGuardOptions, boolean]> = [
    ['defaults', {}, false],
    ['watchdog: {}', { watchdog: {} }, false],
    ['logAfter', { watchdog: { logAfter: '5s' } }, true],
    ['onStall', { watchdog: { onStall: () => {} } }, true]
  ]
  for (const [name, options, starts] of cases) {
    t.test(`node:http door, ${name}: ${starts ? 'a worker thread starts' : 'no worker thread'}`, { skip }, async (t) => {
      const before = threads()
      const server = http.createServer((req, res) => res.end('ok'))
      const guard = configureServerTimeouts(server, { pressure: false, ...options })
      // new Worker() starts its thread synchronously: the count is final once configured.
      t.equal(threads() > before, starts, `threads: ${before} before, ${threads()} after`)
      guard.close()
      await until(() => threads() === before)
    })
    t.test(`Fastify door, ${name}: ${starts ? 'a worker thread starts' : 'no worker thread'}`, { skip }, async (t) => {
      const before = threads()
      const app = Fastify()
      await app.register(hangupGuard, { pressure: false, ...options })
      await app.ready()
      // new Worker() starts its thread synchronously: the count is final once configured.
      t.equal(threads() > before, starts, `threads: ${before} before, ${threads()} after`)
      await app.close()
      await until(() => threads() === before)
    })
  }
}
