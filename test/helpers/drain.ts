/** Small helpers of the drain suites: a guarded server on an ephemeral port, and a GET that reports what came back. */
import http, { type IncomingMessage, type ServerResponse, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { configureServerTimeouts, type HangupGuardOptions, type ServerGuard } from '../../lib/http'
import { bindingOf } from '../../lib/core/bind'
import type { Guard } from '../../lib/core/guard'

export interface Served {
  server: http.Server
  handle: ServerGuard
  guard: Guard
  port: number
}

interface Teardown { teardown (fn: () => void | Promise<void>): void }

export async function serve (t: Teardown, handler: (req: IncomingMessage, res: ServerResponse) => void, options: HangupGuardOptions = {}): Promise<Served> {
  const server = http.createServer(handler)
  const handle = configureServerTimeouts(server, options)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    handle.close()
    server.closeAllConnections()
    if (server.listening) server.close()
  })
  return { server, handle, guard: bindingOf(server)!.guard, port: (server.address() as AddressInfo).port }
}

export interface Got {
  status: number
  headers: IncomingHttpHeaders
  body: string
  /** `code` of a problem body. */
  code: string | null
}

export function get (port: number, path: string, agent: http.Agent | false = false, onResponse?: (res: IncomingMessage) => void): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      onResponse?.(res)
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => {
        let code: string | null = null
        try { code = (JSON.parse(body) as { code?: string }).code ?? null } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, code })
      })
      res.on('error', reject)
      res.on('aborted', () => reject(Object.assign(new Error('response aborted'), { code: 'ABORTED' })))
    })
    req.on('error', reject)
  })
}

/** Number of connections the server still holds. */
export function connectionsOf (server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => err === null ? resolve(n) : reject(err)))
}

/** A promise with its resolve, for handlers that wait on the test. */
export function deferred<T = void> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let settle!: (value: T) => void
  const promise = new Promise<T>((resolve) => { settle = resolve })
  return { promise, resolve: settle }
}
