/**
 * Depth of a listening socket's accept queue, read from /proc/net/tcp{,6} (Linux). For a LISTEN
 * row, `rx_queue` is the kernel's sk_ack_backlog: connections the kernel completed that the
 * process has not accepted yet. libuv accepts one connection per loop iteration, so under
 * overload this is where requests wait, invisible to any per-request timing in JavaScript.
 *
 * Cost: the kernel lists listening sockets before established and TIME_WAIT ones, so the reader
 * stops at the first row that is not LISTEN (state 0A): it pays for the listeners, not for the
 * whole socket table (loopback load fills it with thousands of TIME_WAIT rows; a full read then
 * costs milliseconds). One preallocated buffer, no per-read allocation beyond the file handle.
 */
import { openSync, readSync, closeSync } from 'node:fs'

/** Bytes per read(): one page, ~27 rows of 150 bytes. */
const CHUNK = 4096

export interface AcceptQueueReader {
  /** Connections waiting in the accept queue now; null when unreadable (not Linux, no row). */
  depth (): number | null
  /** Reads done, and their total CPU cost (ms of process CPU time during the synchronous reads). */
  readonly reads: number
  readonly costMs: number
}

const buffer = Buffer.allocUnsafe(CHUNK * 4)

/**
 * A reader for the listening socket on `port` (family 4 or 6, as server.address() says). Returns
 * null on platforms without /proc/net/tcp (the controller then works from the other signals).
 */
export function acceptQueueReader (port: number, family: 4 | 6, root = '/proc/net'): AcceptQueueReader | null {
  const path = `${root}/${family === 6 ? 'tcp6' : 'tcp'}`
  try {
    closeSync(openSync(path, 'r'))
  } catch {
    return null
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  const reader = {
    reads: 0,
    costMs: 0,
    depth (): number | null {
      // CPU time, not wall time: under a CPU quota a read can be throttled half-way.
      const t0 = process.cpuUsage()
      const value = readDepth(path, hexPort)
      const spent = process.cpuUsage(t0)
      reader.reads++
      reader.costMs += (spent.user + spent.system) / 1000
      return value
    }
  }
  return reader
}

/** Scans LISTEN rows only; returns the rx_queue of the first row listening on the port. */
export function readDepth (path: string, hexPort: string): number | null {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch {
    return null
  }
  try {
    let carry = 0 // bytes of an incomplete row kept at the start of the buffer
    let header = true
    for (;;) {
      // One page at a time: the kernel formats only the rows it hands out.
      const n = readSync(fd, buffer, carry, Math.min(CHUNK, buffer.length - carry), null)
      if (n === 0) return null
      const end = carry + n
      let start = 0
      for (;;) {
        const nl = buffer.indexOf(10, start)
        if (nl === -1 || nl >= end) break
        if (header) header = false
        else {
          const row = parseRow(buffer, start, nl, hexPort)
          if (row === -2) return null // past the listeners: no row for this port
          if (row >= 0) return row
        }
        start = nl + 1
      }
      carry = end - start
      if (carry > 0) buffer.copy(buffer, 0, start, end)
      if (carry === buffer.length) return null
    }
  } finally {
    closeSync(fd)
  }
}

/**
 * A row: "  sl  local_address rem_address   st tx_queue:rx_queue ...". Returns the depth for our
 * port's LISTEN row, -1 for another LISTEN row, -2 for the first non-LISTEN row.
 */
function parseRow (b: Buffer, start: number, end: number, hexPort: string): number {
  // Fields are separated by spaces; local_address is the 2nd, st the 4th, tx:rx the 5th.
  let field = 0
  let i = start
  let local = -1
  let st = -1
  let queues = -1
  while (i < end && field < 5) {
    while (i < end && b[i] === 32) i++
    const f = i
    while (i < end && b[i] !== 32) i++
    field++
    if (field === 2) local = f
    else if (field === 4) st = f
    else if (field === 5) queues = f
  }
  if (queues === -1) return -1
  if (b[st] !== 0x30 || b[st + 1] !== 0x41) return -2 // "0A": TCP_LISTEN
  // local_address "0100007F:1F90" (tcp) or 32 hex digits + ":PORT" (tcp6): port after the colon.
  const colon = b.indexOf(58, local)
  if (colon === -1 || colon > st) return -1
  for (let k = 0; k < 4; k++) if (b[colon + 1 + k] !== hexPort.charCodeAt(k)) return -1
  const rx = b.indexOf(58, queues) + 1
  let depth = 0
  for (let k = rx; k < rx + 8; k++) {
    const c = b[k] as number
    depth = depth * 16 + (c <= 57 ? c - 48 : (c | 32) - 87)
  }
  return depth
}
