/**
 * bench/cost.js's warm-up (issue 12): before its one measured connection, connections come and go
 * (raw-client.js churn()), so that V8 has seen connection set-up and tear-down in every server, as
 * a production server's JIT has. Without it, whether Node's listener bookkeeping was compiled for
 * a few shapes or for many depended on the order of one process's start-up (bench/ic-states.js);
 * with it, it is compiled for many in every server.
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

t.test('after connections that come and go, Node\'s listener bookkeeping is compiled for many shapes', async (t) => {
  // The bench counts every server in the state production reaches. Without the churn, whether a
  // server got there came down to its start-up order (narrow in a plain process on Node 20, wide
  // under a test runner: not asserted, it is the luck the churn removes).
  const sites = ic.icStates(await ic.logIcs('http-bare', { churnConnections: 30, requests: 3000 }))
  // The loads of an emitter's `_events` (the log does not always name their code): the widest is
  // _addListener's, which every Readable.on and addListener goes through.
  const loads = [...sites].filter(([site, s]) => site.endsWith(' LoadIC') && s.keys.has('_events'))
  if (loads.length === 0) {
    t.pass('the log holds no load of _events', { skip: `node ${process.version}: --log-ic logged none` })
    return
  }
  const [site, widest] = loads.reduce((a, b) => (b[1].maps.size > a[1].maps.size ? b : a))
  t.equal(widest.state, 'N', `${site}: megamorphic after ${widest.maps.size} shapes`)
  t.ok(widest.maps.size > 4, 'more shapes than a polymorphic cache holds')
})
