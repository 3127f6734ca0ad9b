/** Real sockets for tests: listen on an ephemeral 127.0.0.1 port, send with real clients. */
import http, { type Server } from 'node:http'
import net from 'node:net'
import { once } from 'node:events'

export async function listen (server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as net.AddressInfo).port
}

export async function closeServer (server: Server): Promise<void> {
  if (!server.listening) return
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

export interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
  ms: number
}

/** One request with node:http; resolves with the answer or rejects with the socket error (e.g. ECONNRESET). */
export function get (port: number, path: string, opts: { agent?: http.Agent, headers?: Record<string, string>, method?: string, body?: string } = {}): Promise<Answer> {
  const t0 = performance.now()
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', agent: opts.agent ?? false, headers: opts.headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: performance.now() - t0 }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

/**
 * A raw keep-alive connection that behaves like a pooling proxy: it ignores the server's
 * `Keep-Alive: timeout=` hint and does not notice the server's FIN on an idle connection
 * (allowHalfOpen), so it reuses the connection until its own idle timeout, as load balancers do.
 * `send()` resolves with the raw response, or rejects with the reset / hang up it met.
 */
export class RawConnection {
  readonly socket: net.Socket
  private buf = ''
  private waiter: { resolve: (s: string) => void, reject: (e: Error) => void } | null = null
  private lastError: Error | null = null
  private ended = false

  constructor (port: number) {
    this.socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    this.socket.setEncoding('latin1')
    this.socket.on('data', (d: string) => { this.buf += d; this.check() })
    this.socket.on('error', (err) => { this.lastError = err; this.fail(err) })
    this.socket.on('end', () => { this.ended = true; this.fail(hangUp()) })
    this.socket.on('close', () => this.fail(this.lastError ?? hangUp()))
  }

  async ready (): Promise<void> {
    if (this.socket.readyState === 'opening') await once(this.socket, 'connect')
  }

  private fail (err: Error): void {
    const w = this.waiter
    this.waiter = null
    if (w !== null) w.reject(err)
  }

  private check (): void {
    if (this.waiter === null) return
    const end = this.buf.indexOf('\r\n\r\n')
    if (end === -1) return
    const head = this.buf.slice(0, end)
    const m = /content-length:\s*(\d+)/i.exec(head)
    const len = m === null ? 0 : Number(m[1])
    if (this.buf.length < end + 4 + len) return
    const msg = this.buf.slice(0, end + 4 + len)
    this.buf = this.buf.slice(end + 4 + len)
    const w = this.waiter
    this.waiter = null
    w.resolve(msg)
  }

  send (path: string, extra = ''): Promise<string> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed) { reject(this.lastError ?? hangUp()); return }
      this.waiter = { resolve, reject }
      // When the server's FIN already came in, no answer can follow: the request went into a
      // connection the server closed, which a proxy reports as 502 and a client as a hang up.
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`, (err) => {
        if (err != null) this.fail(err)
        else if (this.ended) this.fail(hangUp())
      })
    })
  }

  destroy (): void { this.socket.destroy() }
}

function hangUp (): Error {
  return Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
}

export function statusOf (raw: string): number {
  return Number(raw.slice(9, 12))
}

/**
 * Options for tests about deadlines and timeouts, not about load: no shedding on event-loop
 * delay (a loaded CI machine must not turn an expected 504 into a 503) and no watchdog thread.
 */
export const QUIET = { pressure: false, watchdog: false } as const

/** Resolves once `check()` holds, looking every few ms; rejects after `ms` (a bounded wait on a state, not a sleep). */
export async function until (check: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const end = performance.now() + ms
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`condition not met within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
