'use strict'
// Child of bench/stall.js: a guarded hello world whose loop blocks on command. Times are
// performance.timeOrigin + performance.now() (epoch ms, sub-ms) of this process.
const http = require('node:http')
const { configureServerTimeouts } = require('../dist/index.js')

const now = () => performance.timeOrigin + performance.now()
let handled = 0
let first503At = null
let resumedAt = null
const server = http.createServer((req, res) => { handled++; res.end('ok') })
configureServerTimeouts(server, {
  handlerTimeout: Number(process.argv[2] ?? 300),
  watchdog: false,
  onIncident (incident) {
    if (incident.kind === 'answered' && incident.cause === 'stall' && first503At === null) first503At = now()
  }
})
process.on('message', (msg) => {
  if (msg.block !== undefined) {
    handled = 0
    first503At = null
    setTimeout(() => {
      process.send({ blocking: true })
      const end = performance.now() + msg.block
      while (performance.now() < end) { /* a CPU-bound handler, or CFS throttling */ }
      resumedAt = now() // the moment the blocking call returns
    }, 1)
  } else if (msg.report === true) {
    process.send({ handled, resumeToFirst503Ms: first503At === null ? null : first503At - resumedAt })
  }
})
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
process.on('disconnect', () => process.exit(0))
