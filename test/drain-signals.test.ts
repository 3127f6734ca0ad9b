/**
 * `handleSignals: true`, from forked children (test/fixtures/drain/signals.js) that receive real
 * signals: the first drains, the next forces, the library never exits the process, and its
 * listeners leave once the drain is over.
 */
import t, { type Test } from 'tap'
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import { get } from './helpers/drain'

const FIXTURE = require.resolve('./fixtures/drain/signals.js')
// Each child spends seconds loading the TypeScript sources; run them side by side.
t.jobs = 4

interface Child {
  child: ChildProcess
  port: number
  /** Resolves with the next message that has this key. */
  message (key: string): Promise<Record<string, unknown>>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null, at: number }>
}

async function start (t: Test, mode: string, env: Record<string, string>): Promise<Child> {
  const child = fork(FIXTURE, [mode], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null, at: Date.now() }))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const messages: Array<Record<string, unknown>> = []
  const waiters: Array<{ key: string, resolve: (m: Record<string, unknown>) => void }> = []
  child.on('message', (m: Record<string, unknown>) => {
    const i = waiters.findIndex((w) => w.key in m)
    if (i === -1) messages.push(m)
    else waiters.splice(i, 1)[0]!.resolve(m)
  })
  function message (key: string): Promise<Record<string, unknown>> {
    const i = messages.findIndex((m) => key in m)
    if (i !== -1) return Promise.resolve(messages.splice(i, 1)[0]!)
    return new Promise((resolve) => waiters.push({ key, resolve }))
  }
  const ready = await Promise.race([message('port'), exited.then((e) => { throw new Error(`fixture exited early: ${JSON.stringify(e)}`) })])
  t.same([ready.sigterm, ready.sigint], [mode === 'own-handler' ? 2 : 1, 1], 'the library installed one listener per signal')
  return { child, port: ready.port as number, message, exited }
}

t.test('SIGTERM drains and the process exits by itself with code 0', async (t) => {
  const c = await start(t, 'plain', { DRAIN_DELAY: '300', DRAIN_TIMEOUT: '30000' })
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  t.equal((await get(c.port, '/', agent)).headers.connection, 'keep-alive', 'an idle keep-alive connection is open')
  const sentAt = Date.now()
  c.child.kill('SIGTERM')
  // The signal is handled on the child's loop; a request during the delay shows it.
  let during = await get(c.port, '/', agent)
  for (let i = 0; i < 50 && during.headers.connection !== 'close'; i++) during = await get(c.port, '/', agent)
  t.equal(during.status, 200, 'served during the delay')
  t.equal(during.headers.connection, 'close', 'with Connection: close')
  const { drained } = await c.message('drained')
  t.match(drained, { timedOut: false, forced: false, cut: 0, openConnections: 0 }, 'the drain closed everything before its deadline')
  t.comment(`drain in the child: ${JSON.stringify(drained)}`)
  const exit = await c.exited
  t.same([exit.code, exit.signal], [0, null], 'exit code 0, not killed by the signal')
  const elapsed = exit.at - sentAt
  // Upper bound: far below the deadline, with room for a slow process exit on a loaded machine.
  t.ok(elapsed >= 290 && elapsed < 15_000, `exited ${elapsed} ms after SIGTERM (delay 300 ms, deadline 30 s)`)
})

t.test('a second signal forces: the handler still running is answered 503, the process exits 0 long before the deadline', async (t) => {
  const c = await start(t, 'plain', { DRAIN_DELAY: '10000', DRAIN_TIMEOUT: '30000' })
  const hung = get(c.port, '/hang') // admitted before or during the delay: either way in flight
  c.child.kill('SIGTERM')
  let during = await get(c.port, '/')
  for (let i = 0; i < 50 && during.headers.connection !== 'close'; i++) during = await get(c.port, '/')
  t.equal(during.headers.connection, 'close', 'draining (first signal handled)')
  const sentAt = Date.now()
  c.child.kill('SIGINT')
  const answer = await hung
  t.equal(answer.status, 503)
  t.equal(answer.code, 'HG_ERR_SHUTDOWN')
  const exit = await c.exited
  t.same([exit.code, exit.signal], [0, null])
  t.ok(exit.at - sentAt < 15_000, `exited ${exit.at - sentAt} ms after the second signal (the delay alone was 10 s, the deadline 30 s)`)
})

t.test('the listeners leave once the drain is over: a later signal gets Node\'s default', async (t) => {
  const c = await start(t, 'keep-open', { DRAIN_DELAY: '0', DRAIN_TIMEOUT: '5000' })
  c.child.kill('SIGTERM')
  const drained = await c.message('drained')
  t.same([drained.sigterm, drained.sigint], [0, 0], 'the drain is over and its listeners are gone; the application still holds a timer, so the process lives on')
  c.child.kill('SIGTERM')
  const exit = await c.exited
  t.equal(exit.signal, 'SIGTERM', 'terminated by the signal, as without hangup-guard')
})

t.test("next to the application's own handler: both run, and it can wait for the same drain", async (t) => {
  const c = await start(t, 'own-handler', { DRAIN_DELAY: '100', DRAIN_TIMEOUT: '5000' })
  c.child.kill('SIGTERM')
  const own = await c.message('ownHandler')
  t.match(own.ownHandler, { timedOut: false, forced: false }, "the application's handler got the drain's result")
  const exit = await c.exited
  t.same([exit.code, exit.signal], [0, null], 'exits 0 once the application closed its own handle')
})
