'use strict'
// A small keep-alive HTTP/1.1 load client on raw sockets, for bench/cost.js: it opens its
// connections once and keeps them, so a measured run holds requests only (no connection set-up or
// tear-down), sends exactly the number of requests asked for, `pipelining` at a time per connection
// in one write, the next batch once the whole batch is answered: each server read then holds the
// same batch whatever the timing, which makes instruction counts repeat (a sliding window, as
// autocannon's, lets the batches vary with scheduling on a busy machine).
// Every response must be a 200, with a Content-Length or chunked.
const net = require('node:net')

/** End offset of a chunked body starting at `at`, or -1 when it has not all arrived. */
function chunkedEnd (buffer, at) {
  for (;;) {
    const eol = buffer.indexOf('\r\n', at)
    if (eol === -1) return -1
    const size = parseInt(buffer.slice(at, eol), 16)
    if (size === 0) return buffer.startsWith('\r\n', eol + 2) ? eol + 4 : -1 // no trailers from the bench servers
    at = eol + 2 + size + 2
    if (at > buffer.length) return -1
  }
}

class Connection {
  constructor (client, socket) {
    this.client = client
    this.socket = socket
    this.buffer = ''
    this.inFlight = 0
    socket.setNoDelay(true)
    socket.setEncoding('latin1')
    socket.on('data', (chunk) => this.onData(chunk))
    socket.on('error', (err) => client.fail(err))
    socket.on('close', () => { if (!client.closing) client.fail(new Error('the server closed a connection')) })
  }

  onData (chunk) {
    this.buffer += chunk
    let responses = 0
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n')
      if (end === -1) break
      const head = this.buffer.slice(0, end)
      if (!head.startsWith('HTTP/1.1 200 ')) {
        if (!this.client.tolerant) {
          this.client.fail(new Error(`unexpected response: ${JSON.stringify(this.buffer.slice(0, 600))}`))
          return
        }
        this.client.refused++
      }
      const length = /\r\ncontent-length: *(\d+)/i.exec(head)
      const total = length !== null ? end + 4 + Number(length[1]) : chunkedEnd(this.buffer, end + 4)
      if (total === -1 || this.buffer.length < total) break
      this.buffer = this.buffer.slice(total)
      responses++
    }
    if (responses === 0) return
    this.inFlight -= responses
    this.client.received(responses)
    if (this.inFlight === 0) this.send()
  }

  /** Sends the next batch in one write: `pipelining` requests, or what the run still has to issue. */
  send () {
    const c = this.client
    const room = Math.min(c.pipelining, c.toIssue)
    if (room <= 0) return
    c.toIssue -= room
    this.inFlight += room
    this.socket.write(room === 1 ? c.request : c.request.repeat(room))
  }
}

class RawClient {
  /**
   * @param {number} port 127.0.0.1 port
   * @param {{ connections: number, path?: string, headers?: Record<string, string> }} options
   */
  constructor (port, { connections, path = '/', headers = {} }) {
    this.port = port
    this.connectionCount = connections
    this.request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`
    this.connections = []
    this.closing = false
    this.pipelining = 1
    this.toIssue = 0
    this.pending = 0
    this.done = null
    /** Warm-up: count answers other than 200 (`refused`) instead of failing on them. */
    this.tolerant = false
    this.refused = 0
  }

  async open () {
    for (let i = 0; i < this.connectionCount; i++) {
      const socket = net.connect(this.port, '127.0.0.1')
      await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
      this.connections.push(new Connection(this, socket))
    }
  }

  /** Sends exactly `total` requests, `pipelining` in flight per connection; resolves when all are answered. */
  run (total, pipelining, timeoutMs) {
    if (this.done !== null) throw new Error('a run is already in progress')
    this.pipelining = pipelining
    this.toIssue = total
    this.pending = total
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`${this.pending} of ${total} requests unanswered after ${timeoutMs / 1000} s`)), timeoutMs)
      this.done = (err) => { clearTimeout(timer); this.done = null; if (err) reject(err); else resolve() }
      for (const c of this.connections) c.send()
    })
  }

  received (n) {
    this.pending -= n
    if (this.pending === 0) this.done?.()
  }

  fail (err) {
    if (this.done !== null) this.done(err)
    else this.error ??= err
  }

  close () {
    this.closing = true
    for (const c of this.connections) c.socket.destroy()
  }
}

/**
 * Opens `connections` connections one after another, sends `requests` requests on each and closes
 * it: connection set-up and tear-down for a server's JIT to see (bench/cost.js). Returns how many
 * answers were not 200 (a guard may shed while valgrind translates new code).
 */
async function churn (port, connections, requests, timeoutMs) {
  let refused = 0
  for (let i = 0; i < connections; i++) {
    const client = new RawClient(port, { connections: 1 })
    client.tolerant = true
    await client.open()
    try {
      await client.run(requests, 1, timeoutMs)
    } finally {
      client.close()
    }
    refused += client.refused
  }
  return refused
}

module.exports = { RawClient, churn }
