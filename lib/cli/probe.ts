/**
 * `hangup-guard probe <url>`: measures a running server's timeouts from the outside, over raw
 * sockets, and compares them with what stands in front of it. It talks only to the URL given,
 * opens at most PROBE_CONNECTIONS connections at a time, and waits at most `maxWaitMs` per measure
 * (past it, a measure is a lower bound: "longer than 20 s").
 *
 * - idle close: one GET, then the connection is held idle until the server closes it. On Node
 *   that is keepAliveTimeout + the keep-alive buffer (1 s; `keepAliveTimeoutBuffer` on newer
 *   lines): the probe reports the close it measured, and keepAliveTimeout as that minus 1 s.
 * - headers timeout: a request line, then one header byte every `trickleMs`, until the server
 *   answers (Node: 408) or closes. Node checks every connectionsCheckingInterval, so the figure is
 *   headersTimeout plus up to that interval.
 * - request timeout: full headers with a Content-Length, then one body byte every `trickleMs`.
 *   A GET, so no handler acts on a body it never receives completely.
 */
import net from 'node:net'
import tls from 'node:tls'
import { performance } from 'node:perf_hooks'
import { HG_ERR_CLI_URL, HG_ERR_PROBE_CONNECT } from '../core/errors'
import { type ResolvedUpstream, planTimeouts, NODE_DEFAULTS, MIN_MARGIN_MS, MAX_MARGIN_MS } from '../core/plan'
import type { PresetName } from '../core/presets'
import { formatMs } from '../core/duration'

/** Default cap of each measure (ms). */
export const PROBE_MAX_WAIT_MS = 20_000 // 20 seconds
/** Default period of the slow sends (ms): 10 bytes a second, a few hundred bytes per measure. */
export const PROBE_TRICKLE_MS = 100
/** Connections the probe holds at most at once (one per measure). */
export const PROBE_CONNECTIONS = 3
const CONNECT_TIMEOUT_MS = 5_000

export interface ProbeOptions {
  /** What stands in front of the server, to compare with. @default 'none' */
  upstream?: PresetName | 'none'
  /** Longest wait per measure (ms). @default PROBE_MAX_WAIT_MS (20 s) */
  maxWaitMs?: number
  /** Period of the slow sends (ms). @default PROBE_TRICKLE_MS (100 ms) */
  trickleMs?: number
  /** https: accept a certificate that does not verify. @default false */
  insecure?: boolean
  /** Called when a measure starts, every second while it waits, and when it ends. */
  onProgress?: (progress: ProbeProgress) => void
}

export interface ProbeProgress {
  readonly measure: 'response' | 'idleClose' | 'headersTimeout' | 'requestTimeout'
  readonly state: 'start' | 'waiting' | 'done'
  readonly elapsedMs: number
  readonly maxWaitMs: number
}

/** A duration measured from the outside. */
export interface Measured {
  /** Milliseconds; with lowerBound, the cap that passed without an answer. null: not measured. */
  readonly ms: number | null
  /** true: the server did nothing within maxWaitMs, so the real value is longer than `ms`. */
  readonly lowerBound: boolean
  /** How the measure ended. */
  readonly end: 'closed' | 'reset' | 'answered' | 'cap' | 'not-applicable'
  /** Statuses the server sent on this connection, in order. */
  readonly statuses: readonly number[]
}

export interface ProbeRisk {
  /** Stable identifier, e.g. 'IDLE_CLOSE_BEFORE_UPSTREAM'. */
  readonly id: string
  readonly message: string
}

export interface ProbeResult {
  readonly url: string
  readonly upstream: { readonly name: string, readonly kind: string, readonly idleTimeoutMs: number | null, readonly responseTimeoutMs: number | null }
  readonly maxWaitMs: number
  readonly response: {
    readonly status: number
    readonly ms: number
    /** The server keeps the connection open after the response. */
    readonly keepAlive: boolean
    /** `Keep-Alive: timeout=N` as advertised (seconds), null when absent. */
    readonly keepAliveHintSeconds: number | null
  }
  /** When the server closed the idle connection: on Node, keepAliveTimeout + its ~1 s buffer. */
  readonly idleClose: Measured & {
    /** keepAliveTimeout if the server is Node: the idle close minus NODE_DEFAULTS.keepAliveTimeoutBuffer. */
    readonly keepAliveTimeoutEstimateMs: number | null
  }
  readonly headersTimeout: Measured
  readonly requestTimeout: Measured
  readonly risks: readonly ProbeRisk[]
  /** What the probe could not settle, and how to settle it. */
  readonly notes: readonly string[]
}

interface Target { url: URL, host: string, port: number, path: string, hostHeader: string, secure: boolean }

/** Refuses anything but http(s) URLs, with a coded error. */
export function parseProbeUrl (input: unknown): Target {
  if (typeof input !== 'string' || input === '') throw new HG_ERR_CLI_URL(input, 'no URL given')
  let url: URL
  try {
    url = new URL(input)
  } catch {
    throw new HG_ERR_CLI_URL(input, 'not a URL (write it in full, such as http://127.0.0.1:3000/livez)')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new HG_ERR_CLI_URL(input, `the ${url.protocol} scheme is not HTTP; the probe measures HTTP/1.1 servers only`)
  if (url.username !== '' || url.password !== '') throw new HG_ERR_CLI_URL(input, 'credentials in the URL are not sent; remove them')
  const secure = url.protocol === 'https:'
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  return { url, host, port: url.port === '' ? (secure ? 443 : 80) : Number(url.port), path: `${url.pathname}${url.search}`, hostHeader: url.host, secure }
}

/** An HTTP/1.1 response reader over one raw socket: statuses, heads, close. */
class Conn {
  readonly socket: net.Socket
  readonly statuses: number[] = []
  readonly heads: Array<{ status: number, headers: Map<string, string>, at: number }> = []
  closedAt = -1
  reset = false
  private buf = Buffer.alloc(0)
  private waiters: Array<() => void> = []

  constructor (socket: net.Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk])
      this.parse()
      this.wake()
    })
    socket.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'ECONNRESET' || err.code === 'EPIPE') this.reset = true })
    socket.on('close', () => {
      this.closedAt = performance.now()
      this.parse() // a body delimited by the close is complete now
      this.wake()
    })
  }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const fn of w) fn()
  }

  /** Resolves on the next data or close, or after ms. */
  next (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, ms))
      this.waiters.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  /** Complete responses are consumed from the buffer (bodies skipped). */
  private parse (): void {
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n')
      if (end === -1) return
      const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n')
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0)
      const headers = new Map<string, string>()
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':')
        if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim())
      }
      let rest = this.buf.subarray(end + 4)
      if (status >= 100 && status < 200) {
        this.buf = rest
        continue
      }
      const length = headers.get('content-length')
      if (status === 204 || status === 304 || status === 0) {
        // no body
      } else if (length !== undefined) {
        if (rest.length < Number(length)) return
        rest = rest.subarray(Number(length))
      } else if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
        const done = chunkedEnd(rest)
        if (done === -1) return
        rest = rest.subarray(done)
      } else {
        // Body until close: complete only when the server closes.
        if (this.closedAt === -1) return
        rest = Buffer.alloc(0)
      }
      this.buf = rest
      this.statuses.push(status)
      this.heads.push({ status, headers, at: performance.now() })
    }
  }
}

/** Offset after a complete chunked body in `b`, or -1. */
function chunkedEnd (b: Buffer): number {
  let at = 0
  for (;;) {
    const eol = b.indexOf('\r\n', at)
    if (eol === -1) return -1
    const size = parseInt(b.subarray(at, eol).toString('latin1'), 16)
    if (Number.isNaN(size)) return -1
    if (size === 0) {
      const trailerEnd = b.indexOf('\r\n\r\n', eol)
      return trailerEnd === -1 ? (b.length >= eol + 4 && b.subarray(eol, eol + 4).toString() === '\r\n\r\n' ? eol + 4 : -1) : trailerEnd + 4
    }
    at = eol + 2 + size + 2
    if (at > b.length) return -1
  }
}

function connect (t: Target, insecure: boolean): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = t.secure
      ? tls.connect({ host: t.host, port: t.port, servername: net.isIP(t.host) === 0 ? t.host : undefined, rejectUnauthorized: !insecure, ALPNProtocols: ['http/1.1'] })
      : net.connect({ host: t.host, port: t.port })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new HG_ERR_PROBE_CONNECT(t.url.href, `no connection within ${formatMs(CONNECT_TIMEOUT_MS)}`))
    }, CONNECT_TIMEOUT_MS)
    const onError = (err: Error): void => {
      clearTimeout(timer)
      reject(new HG_ERR_PROBE_CONNECT(t.url.href, err.message))
    }
    socket.once('error', onError)
    socket.once(t.secure ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer)
      socket.removeListener('error', onError)
      socket.setNoDelay(true)
      resolve(new Conn(socket))
    })
  })
}

type Progress = (state: ProbeProgress['state'], elapsedMs: number) => void

/** Waits until `done()` or the cap, calling `tick` every trickleMs and progress every second. */
async function waitFor (conn: Conn, from: number, capMs: number, trickleMs: number, done: () => boolean, tick: (() => void) | null, progress: Progress): Promise<boolean> {
  let nextTick = from + trickleMs
  let nextProgress = from + 1000
  for (;;) {
    if (done()) return true
    const now = performance.now()
    if (now - from >= capMs) return false
    if (tick !== null && now >= nextTick) {
      tick()
      nextTick += trickleMs
    }
    if (now >= nextProgress) {
      progress('waiting', now - from)
      nextProgress += 1000
    }
    await conn.next(Math.min(from + capMs, tick === null ? nextProgress : Math.min(nextTick, nextProgress)) - now)
  }
}

function measured (conn: Conn, from: number, answered: boolean, capMs: number): Measured {
  if (conn.closedAt !== -1) return { ms: Math.round(conn.closedAt - from), lowerBound: false, end: conn.reset ? 'reset' : 'closed', statuses: [...conn.statuses] }
  if (answered) return { ms: Math.round((conn.heads.at(-1)?.at ?? performance.now()) - from), lowerBound: false, end: 'answered', statuses: [...conn.statuses] }
  return { ms: capMs, lowerBound: true, end: 'cap', statuses: [...conn.statuses] }
}

function request (t: Target, extra = ''): string {
  return `GET ${t.path} HTTP/1.1\r\nHost: ${t.hostHeader}\r\nUser-Agent: hangup-guard-probe\r\nAccept: */*\r\n${extra}`
}

/** Measures the server behind `url`; rejects with HG_ERR_CLI_URL or HG_ERR_PROBE_CONNECT. */
export async function probe (url: string, options: ProbeOptions = {}): Promise<ProbeResult> {
  const t = parseProbeUrl(url)
  const upstream = planTimeouts({ upstream: options.upstream ?? 'none' }).upstream
  const capMs = options.maxWaitMs ?? PROBE_MAX_WAIT_MS
  const trickleMs = options.trickleMs ?? PROBE_TRICKLE_MS
  const insecure = options.insecure === true
  const report = (measure: ProbeProgress['measure']): Progress => (state, elapsedMs) => options.onProgress?.({ measure, state, elapsedMs: Math.round(elapsedMs), maxWaitMs: capMs })

  // 1. One ordinary request, then the same connection held idle.
  const first = await connect(t, insecure)
  const conns = [first]
  try {
    const sentAt = performance.now()
    report('response')('start', 0)
    first.socket.write(request(t, '\r\n'))
    await waitFor(first, sentAt, capMs, trickleMs, () => first.heads.length > 0 || first.closedAt !== -1, null, report('response'))
    report('response')('done', performance.now() - sentAt)
    const head = first.heads[0]
    if (head === undefined) {
      throw new HG_ERR_PROBE_CONNECT(t.url.href, first.closedAt === -1
        ? `no HTTP response within ${formatMs(capMs)}`
        : `the server ${first.reset ? 'reset' : 'closed'} the connection without an HTTP/1.1 response`)
    }
    const keepAlive = !/close/i.test(head.headers.get('connection') ?? '') && first.closedAt === -1
    const hint = /timeout=(\d+)/i.exec(head.headers.get('keep-alive') ?? '')
    const response = { status: head.status, ms: Math.round(head.at - sentAt), keepAlive, keepAliveHintSeconds: hint === null ? null : Number(hint[1]) }

    const idle = async (): Promise<ProbeResult['idleClose']> => {
      if (!keepAlive) return { ms: null, lowerBound: false, end: 'not-applicable', statuses: [...first.statuses], keepAliveTimeoutEstimateMs: null }
      const from = head.at
      report('idleClose')('start', 0)
      await waitFor(first, from, capMs, trickleMs, () => first.closedAt !== -1, null, report('idleClose'))
      report('idleClose')('done', performance.now() - from)
      const m = measured(first, from, false, capMs)
      const estimate = m.lowerBound || m.ms === null ? null : Math.max(0, m.ms - NODE_DEFAULTS.keepAliveTimeoutBuffer)
      return { ...m, keepAliveTimeoutEstimateMs: estimate }
    }

    // 2 and 3: slow sends on their own connections, while the first one idles.
    const slow = async (measure: 'headersTimeout' | 'requestTimeout'): Promise<Measured> => {
      const conn = await connect(t, insecure)
      conns.push(conn)
      const from = performance.now()
      report(measure)('start', 0)
      let tick: () => void
      if (measure === 'headersTimeout') {
        conn.socket.write(request(t, 'X-Hangup-Guard-Probe: '))
        tick = () => { if (!conn.socket.destroyed) conn.socket.write('a') }
      } else {
        conn.socket.write(request(t, 'Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n'))
        tick = () => { if (!conn.socket.destroyed) conn.socket.write('a') }
      }
      // Headers: the first answer ends it. Body: only the close does (a handler may answer early).
      const done = measure === 'headersTimeout' ? () => conn.heads.length > 0 || conn.closedAt !== -1 : () => conn.closedAt !== -1
      await waitFor(conn, from, capMs, trickleMs, done, tick, report(measure))
      report(measure)('done', performance.now() - from)
      return measured(conn, from, measure === 'headersTimeout' && conn.heads.length > 0, capMs)
    }

    const [idleClose, headersTimeout, requestTimeout] = await Promise.all([idle(), slow('headersTimeout'), slow('requestTimeout')])
    const up = { name: upstream.name, kind: upstream.kind, idleTimeoutMs: upstream.idleTimeout, responseTimeoutMs: upstream.responseTimeout }
    const { risks, notes } = assess(upstream, capMs, response, idleClose, headersTimeout, requestTimeout)
    return { url: t.url.href, upstream: up, maxWaitMs: capMs, response, idleClose, headersTimeout, requestTimeout, risks, notes }
  } finally {
    for (const c of conns) c.socket.destroy()
  }
}

function marginFor (ms: number): number {
  return Math.min(MAX_MARGIN_MS, Math.max(MIN_MARGIN_MS, Math.round(ms / 10)))
}

function assess (up: ResolvedUpstream, capMs: number, response: ProbeResult['response'], idle: ProbeResult['idleClose'],
  headers: Measured, body: Measured): { risks: ProbeRisk[], notes: string[] } {
  const risks: ProbeRisk[] = []
  const notes: string[] = []
  const longer = `longer than ${formatMs(capMs)}`
  const raise = (ms: number): string => `run again with --max-wait ${Math.ceil((ms + 1000) / 1000)}s to settle it`
  if (up.kind === 'proxy' && idle.ms !== null) {
    const need = (up.idleTimeout as number) + marginFor(up.idleTimeout as number)
    if (!idle.lowerBound && idle.ms <= (up.idleTimeout as number)) {
      risks.push({ id: 'IDLE_CLOSE_BEFORE_UPSTREAM', message: `The server closes idle connections after ${formatMs(idle.ms)}, before ${up.title} does (${formatMs(up.idleTimeout as number)}): it may reuse a connection the server is closing, and the client gets a 502 / socket hang up. Set keepAliveTimeout to ${formatMs(need)} or more (hangup-guard plan --upstream ${up.name}).` })
    } else if (!idle.lowerBound && idle.ms < need) {
      risks.push({ id: 'IDLE_CLOSE_MARGIN_THIN', message: `The server closes idle connections after ${formatMs(idle.ms)}, less than ${formatMs(need - (up.idleTimeout as number))} after ${up.title}'s ${formatMs(up.idleTimeout as number)}: a reuse in flight can still meet the close. Set keepAliveTimeout to ${formatMs(need)} or more.` })
    } else if (idle.lowerBound && capMs < need) {
      notes.push(`Idle close ${longer}; ${up.title} keeps idle connections ${formatMs(up.idleTimeout as number)}: ${raise(need)}.`)
    }
  }
  if (up.kind === 'l4' && idle.ms !== null) {
    const max = (up.idleTimeout as number) - marginFor(up.idleTimeout as number)
    if (idle.lowerBound ? capMs >= max : idle.ms > max) {
      risks.push({ id: 'IDLE_CLOSE_AFTER_UPSTREAM', message: `The server keeps idle connections ${idle.lowerBound ? longer : formatMs(idle.ms)}, but ${up.title} drops idle flows after ${formatMs(up.idleTimeout as number)} without telling either side: the next request on such a connection gets ECONNRESET. The server must close first, by ${formatMs(max)}.` })
    } else if (idle.lowerBound) {
      notes.push(`Idle close ${longer}; ${up.title} drops idle flows after ${formatMs(up.idleTimeout as number)}: ${raise(max)}.`)
    }
  }
  if (idle.ms !== null && !idle.lowerBound && response.keepAliveHintSeconds !== null && response.keepAliveHintSeconds * 1000 >= idle.ms) {
    risks.push({ id: 'KEEP_ALIVE_HINT_TOO_LONG', message: `The server advertises Keep-Alive: timeout=${response.keepAliveHintSeconds} but closes idle connections after ${formatMs(idle.ms)}: clients that trust the hint reuse connections the server has closed (socket hang up).` })
  }
  if (response.keepAlive && response.keepAliveHintSeconds === null && up.kind === 'none') {
    notes.push('No Keep-Alive: timeout= hint: direct clients cannot learn when the server closes idle connections (Node\'s Agent and undici use it to stop reusing them in time).')
  }
  if (idle.end === 'reset') risks.push({ id: 'IDLE_RESET', message: 'The server reset the idle connection (RST) instead of closing it: a client reusing it gets ECONNRESET rather than a clean close.' })
  for (const [name, m] of [['headers', headers], ['request body', body]] as const) {
    if (!m.lowerBound && (m.end === 'closed' || m.end === 'reset') && m.statuses.length === 0) {
      risks.push({ id: 'CLOSED_WITHOUT_ANSWER', message: `${name === 'headers' ? 'Headers' : 'A request body'} sent slowly: the connection was ${m.end === 'reset' ? 'reset' : 'closed'} after ${formatMs(m.ms as number)} with no HTTP answer (socket hang up). Node answers 408 for headersTimeout/requestTimeout; something else (server.timeout, a proxy, a handler destroying the socket) dropped it.` })
    }
    if (m.lowerBound) notes.push(`${name === 'headers' ? 'Headers' : 'Request'} timeout ${longer} (Node's defaults: headersTimeout 60 s, requestTimeout 300 s).`)
  }
  if (up.responseTimeout !== null && !body.lowerBound && body.ms !== null && body.ms < up.responseTimeout && body.statuses.includes(408)) {
    notes.push(`requestTimeout (~${formatMs(body.ms)}) is shorter than ${up.title}'s ${formatMs(up.responseTimeout)} response timeout: slow uploads get 408 before the proxy would give up.`)
  }
  notes.push('Not measured from outside: the handler budget (the 504 deadline) needs a slow route; see hangup-guard plan.')
  return { risks, notes }
}
