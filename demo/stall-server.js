'use strict'
// Helper of demo scenario (c): the app runs in its own process, as in production, so that its
// blocked event loop does not also freeze the demo's clients. Reports its port over IPC.
//   node demo/stall-server.js bare|guarded
const http = require('node:http')
const { configureServerTimeouts } = require('../dist/index.js')

const server = http.createServer((req, res) => {
  if (req.url === '/block') {
    const until = Date.now() + 600 // CPU-bound work: the event loop is blocked for 600 ms
    while (Date.now() < until);
  }
  res.end('ok')
})
if (process.argv[2] === 'guarded') configureServerTimeouts(server, { handlerTimeout: 400, margin: 100 })
server.listen(0, '127.0.0.1', () => process.send(server.address().port))
process.on('disconnect', () => process.exit(0))
