/**
 * Accept-queue depth from /proc/net/tcp{,6}: the parser on fixed rows, then the kernel's own
 * figure for a real listening socket whose loop is blocked while a child process connects.
 */
import t from 'tap'
import http from 'node:http'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { existsSync } from 'node:fs'
import { acceptQueueReader, readDepth } from '../lib/core/accept-queue'
import { listen, closeServer } from './helpers/net'

const FIXTURES = join(__dirname, 'fixtures', 'proc-net')

t.test('reads rx_queue of the LISTEN row for the port (hex), tcp and tcp6', async (t) => {
  t.equal(readDepth(join(FIXTURES, 'tcp'), '1F90'), 30, 'port 8080: 0x1E waiting')
  t.equal(readDepth(join(FIXTURES, 'tcp'), '07E8'), 0)
  t.equal(readDepth(join(FIXTURES, 'tcp6'), '0BB8'), 3, 'port 3000 on ::')
})

t.test('stops at the first row that is not LISTEN: established and TIME_WAIT rows are never scanned', async (t) => {
  t.equal(readDepth(join(FIXTURES, 'tcp'), '2382'), null, 'a LISTEN row after the listeners is not reached')
  t.equal(readDepth(join(FIXTURES, 'tcp'), '0050'), null, 'no listener on the port')
  t.equal(readDepth(join(FIXTURES, 'missing'), '0050'), null)
})

t.test('degrades cleanly where /proc/net is missing (not Linux)', async (t) => {
  t.equal(acceptQueueReader(8080, 4, join(FIXTURES, 'nowhere')), null)
  const r = acceptQueueReader(8080, 4, FIXTURES)!
  t.equal(r.depth(), 30)
  t.equal(r.reads, 1)
  t.ok(r.costMs >= 0)
})

t.test('on the real kernel: connections queued while the loop is blocked are counted, and gone once accepted', async (t) => {
  if (!existsSync('/proc/net/tcp')) return t.plan(0, 'no /proc/net/tcp (not Linux)')
  const server = http.createServer((req, res) => res.end('ok'))
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  const reader = acceptQueueReader(port, 4)!
  t.equal(reader.depth(), 0)
  const child = execFile(process.execPath, ['-e', `const net=require('net');for(let i=0;i<12;i++)net.connect(${port},'127.0.0.1').on('error',()=>{});setTimeout(()=>process.exit(0),5000)`])
  t.teardown(() => { child.kill() })
  let connected = 0
  // The loop stays blocked from here: the kernel completes the handshakes without the process.
  const until = performance.now() + 4000
  let depth = reader.depth() ?? 0
  while (depth < 12 && performance.now() < until) depth = reader.depth() ?? 0
  t.equal(depth, 12, 'twelve waiting in the accept queue')
  // libuv accepts in batches, one batch per loop iteration: wait for the twelfth (bounded), not a fixed pause.
  await new Promise<void>((resolve) => {
    const bound = setTimeout(resolve, 5000)
    server.on('connection', () => { if (++connected === 12) { clearTimeout(bound); resolve() } })
  })
  t.equal(connected, 12)
  t.equal(reader.depth(), 0, 'accepted: queue empty')
})
