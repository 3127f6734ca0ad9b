'use strict'
// (e) Pipelining on closing connections (issue 10): connections that each send 10 pipelined
// requests (the first one slow) and close after 30 ms, before the queued answers went out. On
// Node 20 and 22 Node emits no 'close' for the queued responses; the guard must still settle
// them. Reports the heap growth after forced GC next to bare node:http, and what stays in flight.
const net = require('node:net')
const { once } = require('node:events')
const { startServer, sleep, fmt, table } = require('./lib')

const REQUEST = (path) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`
const BATCH = REQUEST('/slow') + Array.from({ length: 9 }, (_, i) => REQUEST(`/q${i}`)).join('')

async function drive (server, connections) {
  const port = server.port
  const clients = []
  for (let c = 0; c < connections; c++) {
    clients.push((async () => {
      const socket = net.connect({ port, host: '127.0.0.1' })
      socket.on('error', () => {})
      await once(socket, 'connect')
      socket.write(BATCH)
      setTimeout(() => socket.destroy(), 30)
      await once(socket, 'close')
    })())
  }
  await Promise.all(clients)
  // The server accepts one connection per event-loop iteration: it may still be working through
  // them. Wait until every handler is done and every connection closed (bounded).
  const end = Date.now() + 30_000
  for (;;) {
    const state = await server.call('busy')
    if ((state.busy === 0 && state.connections === 0) || Date.now() > end) break
    await sleep(50)
  }
}

async function measureMode (mode, connections) {
  const server = await startServer(mode, {}, ['--expose-gc'])
  try {
    await drive(server, 50) // warm-up
    const before = await server.call('measure')
    await drive(server, connections)
    const after = await server.call('measure')
    return { growthMb: (after.heapUsed - before.heapUsed) / 1048576, inFlight: after.stats?.inFlight ?? null, requests: after.stats === null ? null : after.stats.requests - before.stats.requests }
  } finally {
    await server.stop()
  }
}

async function run ({ quick }) {
  const connections = quick ? 100 : 200
  console.log(`${connections} connections x 10 pipelined requests (the first answers after 100 ms), each closed by the client after 30 ms; heap after forced GC, after a warm-up of 50 connections`)
  const bare = await measureMode('pipeline-bare', connections)
  const guarded = await measureMode('pipeline-guarded', connections)
  const delta = guarded.growthMb - bare.growthMb
  table([['server', 'heap growth', 'requests seen', 'inFlight after'],
    ['bare node:http', `${fmt(bare.growthMb)} MB`, '-', '-'],
    ['hangup-guard (node:http door)', `${fmt(guarded.growthMb)} MB`, String(guarded.requests), String(guarded.inFlight)]], 'lrrr')
  return [
    { section: 'pipelining', metric: 'stats().inFlight after closing pipelined connections', value: String(guarded.inFlight), target: '0', ok: guarded.inFlight === 0, hard: true },
    { section: 'pipelining', metric: 'heap growth, guarded - bare', value: `${fmt(delta)} MB`, target: '< 1 MB', ok: delta < 1 }
  ]
}

module.exports = { run }
