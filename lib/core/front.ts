/**
 * The server-level front both doors install: one wrapper of one http.Server's `emit`, which sees
 * each request before any 'request' listener runs, whether it was added before or after (a
 * framework's included); the Fastify door wraps Fastify's own listener instead when it is the
 * only one (installProbeFront). Health probes are answered here, the same way behind both doors: not
 * admitted, not shed, not routed. The node:http door admits the other requests here too; the
 * Fastify door leaves them to Fastify (its onRequest hook admits them, with the route's budget).
 *
 * Why probes are not Fastify routes: two more routes cost a Fastify hello world 700-1,500
 * instructions on every request, though they are never called (measured with bench/cost.js:
 * plain Fastify 47,703 against 48,438 with two async GET routes; the plugin 51,550 against
 * 50,013 without its two). Here a probe costs other requests one string comparison.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Guard } from './guard'
import { kEmit, kFrontGuard } from './symbols'

/** A server whose emit is wrapped: the original emit and the guard, in slots the wrapper reads. */
export type FrontServer = Server & { [kEmit]: Server['emit'], [kFrontGuard]: Guard }

/** The wrapper a door installs as the server's emit. */
export type FrontEmit = (this: FrontServer, event: string | symbol, req?: unknown, res?: unknown) => boolean

/** Installs `emit` in front of `server`'s listeners; returns the function that takes it away. */
export function installFront (server: Server, guard: Guard, emit: FrontEmit): () => void {
  const target = server as FrontServer
  const hadOwnEmit = Object.hasOwn(server, 'emit')
  target[kEmit] = server.emit
  target[kFrontGuard] = guard
  server.emit = emit as Server['emit']
  return () => {
    if (hadOwnEmit) server.emit = target[kEmit]
    else delete (server as Partial<Server>).emit
    delete (target as Partial<FrontServer>)[kEmit]
    delete (target as Partial<FrontServer>)[kFrontGuard]
  }
}

/** Answers `req` when it is a health probe (GET or HEAD on a health path). True: answered. */
export function answerProbe (guard: Guard, req: IncomingMessage, res: ServerResponse): boolean {
  const kind = guard.healthKind(req)
  if (kind === null) return false
  const answer = guard.probe(kind)
  res.writeHead(answer.statusCode, { 'content-type': answer.contentType, 'content-length': Buffer.byteLength(answer.body), 'cache-control': 'no-store' })
  res.end(req.method === 'HEAD' ? undefined : answer.body)
  return true
}

type RequestListener = (this: Server, req: IncomingMessage, res: ServerResponse) => unknown

/**
 * The front of a server whose requests a framework admits (the Fastify door): probes only. When
 * the server has one 'request' listener (the one Fastify adds as it creates the server), that
 * listener is wrapped and `emit` stays Node's own: V8 then keeps inlining emit and the listener
 * bookkeeping into Node's parserOnIncoming, which a wrapped emit made it give up
 * (`npm run bench -- --only=cost --quick`: the plugin's median 49,695 -> 49,537 instructions per
 * request, with the health-path shortcut in guard.ts).
 * Otherwise (no listener yet, or several) the emit wrapper, which sees every listener.
 */
export function installProbeFront (server: Server, guard: Guard): () => void {
  const listeners = server.rawListeners('request') as RequestListener[]
  const inner = listeners[0]
  if (listeners.length !== 1 || inner === undefined) return installFront(server, guard, probeFront)
  const front = function hangupGuardProbes (this: Server, req: IncomingMessage, res: ServerResponse): unknown {
    if (answerProbe(guard, req, res)) return undefined
    return inner.call(this, req, res)
  }
  server.removeListener('request', inner)
  server.prependListener('request', front)
  return () => {
    server.removeListener('request', front)
    server.prependListener('request', inner)
  }
}

/** The emit-wrapping front of a server whose requests a framework admits: probes only. */
export const probeFront: FrontEmit = function probeFront (event, req, res) {
  if (event === 'request') {
    if (answerProbe(this[kFrontGuard], req as IncomingMessage, res as ServerResponse)) return true
    // Fixed arity on the hot path: no `arguments` object per request.
    return (this[kEmit] as (event: string, req: unknown, res: unknown) => boolean).call(this, event, req, res)
  }
  return this[kEmit].apply(this, arguments as unknown as Parameters<Server['emit']>)
}
