/**
 * After a stall, the deadlines it let pass are answered oldest first, whatever their budgets, and
 * through both doors (one scheduler in lib/core/deadline.ts). The longer budget is admitted and
 * scheduled first, so its list comes first: answered list by list, its 504 went out first.
 */
import t from 'tap'
import http, { type Server } from 'node:http'
import { performance } from 'node:perf_hooks'
import Fastify from 'fastify'
import { configureServerTimeouts } from '../lib/http'
import hangupGuard from '../lib/fastify'
import { deadlineSchedulerState } from '../lib/core/deadline'
import type { Incident } from '../lib/core/stats'
import { QUIET, listen, closeServer, until } from './helpers/net'

/** Sends GET `path` and resolves with its status (the answer comes after the stall). */
function send (port: number, path: string, headers: Record<string, string> = {}): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode))
    }).on('error', reject)
  })
}

/** /long (300 ms) admitted and scheduled, then /short (120 ms), then a 450 ms stall: both spent at once. */
async function stallPastBoth (port: number, shortHeaders: Record<string, string>, answered: string[]): Promise<number[]> {
  const base = deadlineSchedulerState().scheduled
  const long = send(port, '/long')
  await until(() => deadlineSchedulerState().scheduled === base + 1)
  const short = send(port, '/short', shortHeaders)
  await until(() => deadlineSchedulerState().scheduled === base + 2)
  const end = performance.now() + 450
  while (performance.now() < end) { /* the stall */ }
  await until(() => answered.length === 2)
  return await Promise.all([short, long]) as number[]
}

t.test('node:http door: after a stall, the earlier deadline is answered first', async (t) => {
  const answered: string[] = []
  const server: Server = http.createServer(() => { /* never answers: the guard does */ })
  configureServerTimeouts(server, {
    ...QUIET,
    handlerTimeout: 300,
    deadlineHeader: 'x-budget-ms',
    deadlineMargin: 0,
    onIncident: (i: Incident) => { if (i.kind === 'answered') answered.push(i.route) }
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  t.same(await stallPastBoth(port, { 'x-budget-ms': '120' }, answered), [504, 504], 'both answered 504')
  t.same(answered, ['/short', '/long'], 'oldest deadline first')
})

t.test('Fastify plugin: after a stall, the earlier deadline is answered first', async (t) => {
  const answered: string[] = []
  const app = Fastify()
  await app.register(hangupGuard, { ...QUIET, onIncident: (i: Incident) => { if (i.kind === 'answered') answered.push(i.route) } })
  const never = async (): Promise<never> => await new Promise<never>(() => {})
  app.get('/long', { config: { hangupGuard: { timeout: 300 } } }, never)
  app.get('/short', { config: { hangupGuard: { timeout: 120 } } }, never)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  t.same(await stallPastBoth(port, {}, answered), [504, 504], 'both answered 504')
  t.same(answered, ['/short', '/long'], 'oldest deadline first')
})
