/**
 * Issue 11, item 2: one resolver. 10,000 random option objects (nested ones included, with hostile
 * values: BigInt, Symbol, Proxy, throwing getters, huge strings, `__proto__` keys) through
 * configureServerTimeouts, and a few hundred through the Fastify plugin: each gives either a
 * guarded server or an error with a string `code`, never anything else, and leaves no timer,
 * worker, listener or signal handler behind.
 */
import t from 'tap'
import http from 'node:http'
import Fastify from 'fastify'
import { configureServerTimeouts } from '../../lib/index'
import hangupGuard from '../../lib/fastify'
import { acquireSampler } from '../../lib/core/sampler'
import { acquireWatchdog } from '../../lib/core/watchdog'
import { PRESET_NAMES } from '../../lib/core/presets'

/** mulberry32: a seeded generator, so a failure is reproducible from its index. */
function rng (seed: number): () => number {
  let a = seed
  return () => {
    a |= 0; a = a + 0x6D2B79F5 | 0
    let r = Math.imul(a ^ a >>> 15, 1 | a)
    r = r + Math.imul(r ^ r >>> 7, 61 | r) ^ r
    return ((r ^ r >>> 14) >>> 0) / 4294967296
  }
}

const HUGE = 'x'.repeat(200_000)
const revoked = Proxy.revocable({}, {})
revoked.revoke()

function hostile (r: () => number): unknown {
  const pick = Math.floor(r() * 22)
  switch (pick) {
    case 0: return 10n ** 30n
    case 1: return Symbol('s')
    case 2: return NaN
    case 3: return -1
    case 4: return Infinity
    case 5: return 2 ** 40
    case 6: return HUGE
    case 7: return '600h'
    case 8: return new Proxy({}, { ownKeys () { throw new Error('trap') } })
    case 9: return revoked.proxy
    case 10: return Object.defineProperty({}, 'idleTimeout', { enumerable: true, get () { throw new Error('getter') } })
    case 11: return JSON.parse('{"__proto__": {"polluted": true}}') as unknown
    case 12: return { toJSON () { throw new Error('toJSON') } }
    case 13: return () => true
    case 14: return [1, 2]
    case 15: return null
    case 16: return { [Symbol('k')]: 1 }
    case 17: return new Date()
    case 18: return /re/
    case 19: return 'aws-abl'
    case 20: return { idleTimeout: '60s', kind: 'l7' }
    default: return Object.create({ inherited: 1 }) as unknown
  }
}

const DURATIONS = [0, 1, 50, 1000, '30s', '2m', '1.5h', '500ms', false]
const NESTED: Record<string, string[]> = {
  upstream: ['name', 'kind', 'idleTimeout', 'responseTimeout', 'deadlineHeader', 'idletimeout'],
  health: ['livenessPath', 'readinessPath', 'details', 'livenes'],
  drain: ['delay', 'timeout', 'grace'],
  pressure: ['maxEventLoopDelay', 'maxEventLoopUtilization', 'maxHeapUsedBytes', 'maxRssBytes', 'maxThrottledRatio', 'healthCheck', 'healthCheckInterval', 'maxEventLoopDelai'],
  watchdog: ['logAfter', 'onStall', 'logafter']
}
const TOP = ['upstream', 'handlerTimeout', 'margin', 'timeout', 'keepAliveTimeout', 'headersTimeout', 'requestTimeout', 'connectionsCheckingInterval',
  'timeoutStatus', 'exclude', 'deadlineHeader', 'deadlineMargin', 'retryAfter', 'onIncident', 'incidentQuery', 'catchRejections', 'health', 'drain',
  'handleSignals', 'pressure', 'watchdog', 'handlerTimout', '__proto__']

function value (r: () => number, key: string): unknown {
  const roll = r()
  if (roll < 0.25) return hostile(r)
  if (key in NESTED) {
    if (roll < 0.35) return false
    const o: Record<string, unknown> = {}
    for (const k of NESTED[key]!) if (r() < 0.3) o[k] = r() < 0.5 ? hostile(r) : DURATIONS[Math.floor(r() * DURATIONS.length)]
    if (key === 'upstream' && r() < 0.5) return PRESET_NAMES[Math.floor(r() * PRESET_NAMES.length)]
    if (key === 'pressure' && r() < 0.3) o.healthCheck = () => true
    return o
  }
  if (key === 'exclude') return r() < 0.5 ? ['/sse/*', /x/] : ['no-slash']
  if (key === 'onIncident') return () => {}
  if (key === 'timeoutStatus') return r() < 0.5 ? 504 : 500
  if (key === 'handleSignals' || key === 'incidentQuery' || key === 'catchRejections') return r() < 0.7
  if (key === 'retryAfter') return Math.floor(r() * 10) - 2
  if (key === 'deadlineHeader') return r() < 0.5 ? 'x-deadline' : 'bad header'
  return DURATIONS[Math.floor(r() * DURATIONS.length)]
}

function optionsFor (i: number): unknown {
  const r = rng(i + 1)
  if (r() < 0.03) return hostile(r)
  const o: Record<string, unknown> = {}
  for (const key of TOP) {
    if (r() >= 0.2) continue
    if (key === '__proto__') Object.defineProperty(o, '__proto__', { value: {}, enumerable: true })
    else o[key] = value(r, key)
  }
  return o
}

function leftovers (): string {
  const s = acquireSampler() as unknown as { refs: number, listeners: Set<unknown>, release (): void }
  const w = acquireWatchdog({}) as unknown as { core: { leases: Set<unknown> }, release (): void }
  const state = `sampler refs ${s.refs}, sampler listeners ${s.listeners.size}, watchdog leases ${w.core.leases.size}, SIGTERM ${process.listenerCount('SIGTERM')}, SIGINT ${process.listenerCount('SIGINT')}`
  w.release()
  s.release()
  return state
}

t.test('10,000 random option objects: a guarded server or a coded error, and nothing left behind', async (t) => {
  // Held for the whole run, so each configuration joins the sampler and watchdog instead of starting a thread.
  const heldSampler = acquireSampler()
  const heldWatchdog = acquireWatchdog({})
  const before = leftovers()
  let accepted = 0
  const codes = new Map<string, number>()
  const uncoded: string[] = []
  for (let i = 0; i < 10_000; i++) {
    const server = http.createServer()
    const listeners = ['request', 'timeout', 'clientError', 'listening'].map((e) => server.listenerCount(e))
    try {
      const guard = configureServerTimeouts(server, optionsFor(i) as object)
      accepted++
      guard.close()
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code
      if (typeof code !== 'string') uncoded.push(`#${i}: ${String(err)}`)
      else codes.set(code, (codes.get(code) ?? 0) + 1)
    }
    const after = ['request', 'timeout', 'clientError', 'listening'].map((e) => server.listenerCount(e))
    if (after.join() !== listeners.join() || Object.hasOwn(server, 'emit')) uncoded.push(`#${i}: listeners left on the server`)
  }
  t.same(uncoded.slice(0, 5), [], 'every refusal has a string code, and no server keeps a listener')
  t.ok(accepted > 300, `${accepted} accepted`)
  t.ok(codes.size >= 6, `codes seen: ${[...codes].map(([c, n]) => `${c} ${n}`).join(', ')}`)
  t.equal(leftovers(), before, 'no sampler ref, sampler listener, watchdog lease or signal handler left')
  heldWatchdog.release()
  heldSampler.release()
})

t.test('the Fastify plugin: 300 random option objects, the same contract', async (t) => {
  const heldSampler = acquireSampler()
  const heldWatchdog = acquireWatchdog({})
  const before = leftovers()
  const uncoded: string[] = []
  for (let i = 0; i < 300; i++) {
    const app = Fastify()
    try {
      await app.register(hangupGuard, optionsFor(50_000 + i) as object)
      await app.ready()
    } catch (err) {
      if (typeof (err as { code?: unknown } | null)?.code !== 'string') uncoded.push(`#${i}: ${String(err)}`)
    }
    await app.close().catch(() => {})
  }
  t.same(uncoded.slice(0, 5), [])
  t.equal(leftovers(), before)
  heldWatchdog.release()
  heldSampler.release()
})
