/**
 * bench/cost.js's warm-up (issue 12): before its one measured connection, connections come and go
 * (raw-client.js churn()), so that V8 has seen connection set-up and tear-down in every server, as
 * a production server's JIT has. Without it, whether Node's listener bookkeeping was compiled for
 * a few shapes or for many depended on the order of one process's start-up (bench/ic-states.js).
 */
import t from 'tap'
import http from 'node:http'
import path from 'node:path'
import type { AddressInfo, Socket } from 'node:net'
import { once } from 'node:events'

interface Site { state: string, maps: Set<string>, keys: Set<string>, names: Set<string> }

const root = path.join(__dirname, '..', '..')
const client = require(path.join(root, 'bench', 'raw-client.js')) as {
  churn: (port: number, connections: number, requests: number, timeoutMs: number) => Promise<number>
}
const ic = require(path.join(root, 'bench', 'ic-states.js')) as {
  icStates: (text: string) => Map<string, Site>
  logIcs: (mode: string, settings: { churnConnections: number, requests: number }) => Promise<string>
}
const cost = require(path.join(root, 'bench', 'cost.js')) as {
  SETTINGS: Record<'full' | 'quick', { churn: { connections: number, requests: number } }>
}
const bench = require(path.join(root, 'bench', 'lib.js')) as { stopAllChildren: () => Promise<unknown> }

t.teardown(() => bench.stopAllChildren())

t.test('churn() opens, uses and closes its connections one after another, and counts what was not a 200', async (t) => {
  let requests = 0
  const sockets = new Set<Socket>()
  const order: number[] = [] // the connection each request came on
  const ids = new WeakMap<Socket, number>()
  let connections = 0
  const server = http.createServer((req, res) => {
    requests++
    order.push(ids.get(req.socket) ?? -1)
    res.statusCode = requests % 4 === 0 ? 503 : 200 // every fourth answer is not a 200
    res.end('x')
  })
  server.on('connection', (socket: Socket) => {
    ids.set(socket, connections++)
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const refused = await client.churn((server.address() as AddressInfo).port, 5, 4, 10_000)
  t.equal(connections, 5, 'five connections')
  t.equal(requests, 20, 'four requests on each')
  t.equal(refused, 5, 'the 503s counted, not thrown')
  const runs = order.filter((id, i) => i === 0 || id !== order[i - 1])
  t.equal(new Set(runs).size, 5, 'one at a time: each connection\'s requests in one run')
  while (sockets.size > 0) await once([...sockets][0] as Socket, 'close')
  t.pass('every connection closed')
})

t.test('the pinned settings churn before they measure', async (t) => {
  for (const name of ['full', 'quick'] as const) {
    t.ok(cost.SETTINGS[name].churn.connections >= 30, `${name}: connections come and go`)
    t.ok(cost.SETTINGS[name].churn.requests > 0, `${name}: each carries requests`)
  }
})

t.test('connections that come and go show V8 shapes one kept connection never does', async (t) => {
  // The sites that read an emitter's `_events` (Node's listener bookkeeping, on every request):
  // the most maps any of them saw, with and without the churn, on the same bare node:http server.
  const mostMaps = async (churnConnections: number): Promise<Map<string, number>> => {
    const sites = ic.icStates(await ic.logIcs('http-bare', { churnConnections, requests: 3000 }))
    const out = new Map<string, number>()
    for (const [site, s] of sites) if (s.keys.has('_events')) out.set(site, s.maps.size)
    return out
  }
  const kept = await mostMaps(0)
  const churned = await mostMaps(30)
  if (kept.size === 0 && churned.size === 0) {
    t.pass('the logs hold no load of _events', { skip: `node ${process.version}: --log-ic logged none` })
    return
  }
  const wider = [...churned].filter(([site, n]) => n > (kept.get(site) ?? 0))
  t.ok(wider.length > 0, `a site saw more maps with the churn: ${wider.map(([s, n]) => `${s} ${kept.get(s) ?? 0} -> ${n}`).join(', ')}`)
})
