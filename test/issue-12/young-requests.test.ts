/**
 * Requests are watched from the sampler's first tick after their admission, not from admission
 * (issue 12): a request that ends before that tick never gets a 'close' listener, and is settled
 * at the next admission, at the tick, or when the counters are read. The accounting stays exact,
 * through both doors: a finished request is out of `inFlight` as soon as anyone looks, a client
 * that leaves a young request is counted and its handler's signal aborts, and a pipelined
 * request queued on a connection that closes before the tick is settled.
 */
import t from 'tap'
import net from 'node:net'
import { deadlineOf } from '../../lib/core/pending'
import type { Guard } from '../../lib/core/guard'
import { kPending } from '../../lib/core/symbols'
import { get, until } from '../helpers/net'
import { DOOR_NAMES, type Handler, guardedDoor } from '../helpers/doors'

for (const name of DOOR_NAMES) {
  t.test(`${name}: no 'close' listener during the handler; a finished request is out of inFlight at once`, async (t) => {
    const listeners: number[] = []
    const d = await guardedDoor(t, name, (req, res) => {
      listeners.push(res.listenerCount('close'))
      res.end('ok')
    })
    for (let i = 0; i < 3; i++) {
      t.equal((await get(d.port, `/${i}`)).status, 200)
      const s = d.stats()
      t.equal(s.inFlight, 0, `request ${i}: settled when the counters are read`)
      t.equal(s.requests, i + 1)
    }
    t.same(listeners, [0, 0, 0], 'the guard adds no listener to a response at admission')
    t.equal(d.stats().clientGone.count, 0)
  })

  t.test(`${name}: a client that leaves a young request is counted, and the handler's signal aborts`, async (t) => {
    let signal: AbortSignal | null = null
    const d = await guardedDoor(t, name, (req) => { signal = deadlineOf(req)!.signal })
    const socket = net.connect(d.port, '127.0.0.1')
    socket.on('error', () => {})
    socket.write('GET /leave HTTP/1.1\r\nHost: x\r\n\r\n')
    await until(() => signal !== null)
    socket.destroy() // well within the request's first tick, most of the time: either way it is counted
    await until(() => (signal as AbortSignal | null)?.aborted === true)
    t.equal(((signal as unknown as AbortSignal).reason as { code?: string }).code, 'HG_ERR_CLIENT_GONE')
    await until(() => d.stats().clientGone.count === 1)
    t.equal(d.stats().inFlight, 0)
  })

  t.test(`${name}: a pipelined request queued on a connection that closes at once is settled`, async (t) => {
    let first = false
    const d = await guardedDoor(t, name, (req, res) => {
      if (req.url === '/first') first = true // never answers: the second stays queued behind it
      else res.end('second')
    })
    const socket = net.connect(d.port, '127.0.0.1')
    socket.on('error', () => {})
    socket.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n')
    await until(() => first && d.stats().requests === 2)
    socket.destroy()
    await until(() => d.stats().inFlight === 0)
    t.equal(d.stats().clientGone.count, 2, 'both requests: the handler that never answered, and the queued response')
  })
}

for (const name of DOOR_NAMES) {
  t.test(`${name}: a request whose connection is already gone when it is admitted runs no handler and is counted`, async (t) => {
    const ran: string[] = []
    const d = await guardedDoor(t, name, (req) => {
      ran.push(req.url as string)
      req.socket.destroy() // the next pipelined request, parsed from the same read, finds its socket destroyed
    })
    const socket = net.connect(d.port, '127.0.0.1')
    socket.on('error', () => {})
    socket.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n')
    await until(() => d.stats().requests === 2)
    t.same(ran, ['/first'], 'no handler for the second request')
    await until(() => d.stats().clientGone.count === 2 && d.stats().inFlight === 0)
  })
}

// One request at a time (a keep-alive client, a proxy's connection): each is admitted into an empty
// in-flight list, and is young as its head. The guard keeps one pointer to it (the list's tail):
// storing a new request in a long-lived object costs V8 a write barrier (~50 instructions) each time.
for (const name of DOOR_NAMES) {
  t.test(`${name}: a request admitted into an empty in-flight list is young as its head, with one pointer to it`, async (t) => {
    const seen: Array<{ young: unknown, second: unknown, head: boolean }> = []
    let guard: Guard | null = null
    const handler: Handler = (req, res) => {
      const g = guard as unknown as { young: unknown, inHead: unknown, head: () => unknown }
      seen.push({ young: g.young, second: g.inHead, head: g.head() === (req as unknown as Record<symbol, unknown>)[kPending] })
      res.end('ok')
    }
    const { port, guard: bound } = await guardedDoor(t, name, handler)
    guard = bound
    for (let i = 0; i < 5; i++) t.equal((await get(port, `/${i}`)).status, 200)
    t.equal(seen.length, 5)
    t.ok(seen.every((s) => s.head), 'each request is the head of the in-flight list')
    t.ok(seen.every((s) => s.young === null), 'and the guard stores no pointer to it as the first young one')
    t.ok(seen.every((s) => s.second === null), 'nor as the head of a list of one (inTail is both ends)')
    t.equal(guard.stats.requests, 5)
  })
}

// The same traffic: at each admission the one request before it has finished, and it is settled
// inline (settleOnly), never through the general settle() with its rarer branches (a call that
// cost ~100 instructions per request). A tick between two requests settles it instead: counted apart.
for (const name of DOOR_NAMES) {
  t.test(`${name}: one request at a time, the finished one is settled at the next admission without settle()`, async (t) => {
    const { port, guard } = await guardedDoor(t, name, (req, res) => { res.end('ok') })
    const g = guard as unknown as Record<'admit' | 'settle' | 'settleOnly', (...args: unknown[]) => unknown>
    let admitting = false
    const calls = { settleInAdmission: 0, settleOnly: 0 }
    for (const key of ['admit', 'settle', 'settleOnly'] as const) {
      const original = g[key]
      t.type(original, 'function', key)
      g[key] = function (this: unknown, ...args: unknown[]) {
        if (key === 'settle' && admitting) calls.settleInAdmission++
        if (key === 'settleOnly') calls.settleOnly++
        if (key !== 'admit') return original.apply(this, args)
        admitting = true
        try { return original.apply(this, args) } finally { admitting = false }
      }
    }
    for (let i = 0; i < 10; i++) t.equal((await get(port, `/${i}`)).status, 200)
    t.equal(calls.settleInAdmission, 0, 'no settle() call at admission')
    t.ok(calls.settleOnly >= 1, `settled inline at admission ${calls.settleOnly} times (the others at a tick)`)
    t.equal(guard.stats.requests, 10)
    t.equal(guard.snapshot().inFlight, 0)
  })
}
