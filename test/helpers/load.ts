/**
 * A bounded load generator for drain tests, shared by the node:http and Fastify suites: `users`
 * loops each send one request at a time, through a keep-alive node:http Agent, an undici Pool or
 * a fresh connection per request (a balancer opening new connections), until stop() or
 * `maxRequests`. It counts what came back instead of throwing, so a test can assert "every request
 * got a 2xx or an explicit 503".
 */
import http from 'node:http'
import { Pool } from 'undici'

export type LoadClient = 'agent' | 'undici' | 'fresh'

export interface LoadOptions {
  port: number
  client: LoadClient
  /** Concurrent request loops. */
  users: number
  /** Stop after this many requests in all. */
  maxRequests: number
  /** Path of each request; a function gets the request number. @default '/' */
  path?: string | ((n: number) => string)
  /** Sockets of the Agent / connections of the Pool. @default users */
  connections?: number
}

export interface LoadCounts {
  sent: number
  /** 2xx answers. */
  ok: number
  /** 503 answers (explicit refusals), by `code` of the problem body. */
  unavailable: number
  unavailableCodes: Record<string, number>
  /** Any other status. */
  other: number
  /** Transport failures: socket hang up, ECONNRESET, ECONNREFUSED... by code. */
  errors: number
  errorCodes: Record<string, number>
  /** Answers that carried `Connection: close`. */
  connectionClose: number
}

export interface Load {
  readonly counts: LoadCounts
  /** Resolves once `n` requests have completed (any outcome). */
  completed (n: number): Promise<void>
  /** No new request after this; the ones in flight complete. */
  stop (): void
  /** Resolves with the counts when every loop has ended. */
  readonly done: Promise<LoadCounts>
}

interface Answer { status: number, close: boolean, code: string | null }

function problemCode (body: string): string | null {
  try {
    return (JSON.parse(body) as { code?: string }).code ?? null
  } catch {
    return null
  }
}

function viaNodeHttp (port: number, path: string, agent: http.Agent | false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, close: res.headers.connection === 'close', code: problemCode(body) }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

async function viaUndici (pool: Pool, path: string): Promise<Answer> {
  const res = await pool.request({ path, method: 'GET' })
  const body = await res.body.text()
  return { status: res.statusCode, close: res.headers.connection === 'close', code: problemCode(body) }
}

export function startLoad (options: LoadOptions): Load {
  const { port, client, users, maxRequests } = options
  const connections = options.connections ?? users
  const pathOf = typeof options.path === 'function' ? options.path : () => (options.path as string | undefined) ?? '/'
  const agent = client === 'agent' ? new http.Agent({ keepAlive: true, maxSockets: connections }) : null
  const pool = client === 'undici' ? new Pool(`http://127.0.0.1:${port}`, { connections }) : null
  const counts: LoadCounts = { sent: 0, ok: 0, unavailable: 0, unavailableCodes: {}, other: 0, errors: 0, errorCodes: {}, connectionClose: 0 }
  const state = { stopped: false }
  let finished = 0
  const waiters: Array<{ n: number, resolve: () => void }> = []

  function settled (): void {
    finished++
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (finished >= waiters[i]!.n) waiters.splice(i, 1)[0]!.resolve()
    }
  }

  async function user (): Promise<void> {
    while (!state.stopped && counts.sent < maxRequests) {
      const path = pathOf(counts.sent++)
      try {
        const a = pool !== null ? await viaUndici(pool, path) : await viaNodeHttp(port, path, agent ?? false)
        if (a.close) counts.connectionClose++
        if (a.status >= 200 && a.status < 300) counts.ok++
        else if (a.status === 503) {
          counts.unavailable++
          const code = a.code ?? 'none'
          counts.unavailableCodes[code] = (counts.unavailableCodes[code] ?? 0) + 1
        } else counts.other++
      } catch (err) {
        counts.errors++
        const code = (err as { code?: string }).code ?? (err as Error).message
        counts.errorCodes[code] = (counts.errorCodes[code] ?? 0) + 1
      }
      settled()
    }
  }

  const loops: Array<Promise<void>> = []
  for (let i = 0; i < users; i++) loops.push(user())
  const done = Promise.all(loops).then(async () => {
    agent?.destroy()
    if (pool !== null) await pool.close()
    for (const w of waiters.splice(0)) w.resolve()
    return counts
  })

  return {
    counts,
    completed (n: number): Promise<void> {
      if (finished >= n) return Promise.resolve()
      return new Promise((resolve) => waiters.push({ n, resolve }))
    },
    stop (): void { state.stopped = true },
    done
  }
}
