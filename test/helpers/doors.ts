/**
 * One server behind each door with the same handler, for tests of behaviour both doors share.
 * The Fastify door hands the raw request and response to the handler (reply.hijack()), so the
 * handler is the same function behind both.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type net from 'node:net'
import Fastify from 'fastify'
import { configureServerTimeouts } from '../../lib/http'
import hangupGuard from '../../lib/fastify'
import type { HangupGuardOptions } from '../../lib/core/bind'
import { bindingOf } from '../../lib/core/bind'
import type { Guard } from '../../lib/core/guard'
import type { StatsSnapshot } from '../../lib/core/stats'
import { listen, closeServer, QUIET } from './net'

export type DoorName = 'node:http door' | 'Fastify door'
export const DOOR_NAMES: readonly DoorName[] = ['node:http door', 'Fastify door']

interface Teardown { teardown: (fn: () => unknown) => void }
export type Handler = (req: IncomingMessage, res: ServerResponse) => void

export interface GuardedDoor {
  port: number
  /** The door's core Guard (tests of its internals). */
  guard: Guard
  /** The counters as the door's public API returns them. */
  stats: () => StatsSnapshot
}

/** A server listening on 127.0.0.1 behind `name`'s door, closed at the test's teardown. */
export async function guardedDoor (t: Teardown, name: DoorName, handler: Handler, options: HangupGuardOptions = QUIET): Promise<GuardedDoor> {
  if (name === 'node:http door') {
    const server = http.createServer(handler)
    const hg = configureServerTimeouts(server, options)
    const port = await listen(server)
    t.teardown(async () => { hg.close(); await closeServer(server) })
    return { port, guard: bindingOf(server)!.guard, stats: () => hg.stats() }
  }
  const app = Fastify()
  await app.register(hangupGuard, options)
  app.get('/*', (request, reply) => { reply.hijack(); handler(request.raw, reply.raw) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { port: (app.server.address() as net.AddressInfo).port, guard: bindingOf(app.server)!.guard, stats: () => app.hangupGuard.stats() }
}
