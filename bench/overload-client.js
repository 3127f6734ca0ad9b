'use strict'
// The load generator of the overload section, forked by bench/overload.js (outside any cgroup, in
// a process of its own). It receives jobs over IPC ({ id, job }) and answers { id, result }.
// Every request goes to 127.0.0.1, carries x-sent-at / x-give-up-ms / x-phase, and is destroyed
// by its client when it has no complete answer within job.timeoutMs, as a real client does.
// job: { port, phase, timeoutMs, connection: 'new'|'keep-alive', durationMs,
//        closed: { clients } | open: { rate }, stall?: { atMs, ms }, records? }
// Both loops are bounded in time (durationMs, then at most timeoutMs for the last answers) and count.
const http = require('node:http')
const { performance, monitorEventLoopDelay } = require('node:perf_hooks')

const MAX_REQUESTS = 100_000
const HANG_UP = new Set(['ECONNRESET', 'EPIPE'])

/**
 * One request; `done(outcome, ms, sentAt, code)` exactly once. outcome: a status, 'timeout', or an
 * error code; code: the `code` of a problem+json answer when job.records asks for records.
 */
function send (job, agent, path, timeoutMs, done) {
  const sentAt = Date.now()
  const t0 = performance.now()
  let settled = false
  let body = ''
  const finish = (outcome) => {
    if (settled) return
    settled = true
    clearTimeout(timer)
    const ms = performance.now() - t0
    // An answer that completed after the timeout (this loop was late to fire the timer) is one the
    // client would not have waited for.
    done(typeof outcome === 'number' && ms > timeoutMs ? 'timeout' : outcome, ms, sentAt, body === '' ? undefined : problemCode(body))
  }
  const req = http.request({
    host: '127.0.0.1',
    port: job.port,
    path,
    agent,
    headers: { 'x-sent-at': String(sentAt), 'x-give-up-ms': String(timeoutMs), 'x-phase': job.phase }
  })
  const timer = setTimeout(() => { finish('timeout'); req.destroy() }, timeoutMs)
  req.on('response', (res) => {
    res.on('error', (err) => finish(err.code ?? err.message))
    res.on('aborted', () => finish('ECONNRESET'))
    res.on('end', () => finish(res.statusCode))
    if (job.records && res.statusCode >= 300 && res.headers['content-type']?.includes('json')) {
      res.setEncoding('utf8')
      res.on('data', (chunk) => { if (body.length < 4096) body += chunk })
    } else {
      res.resume()
    }
  })
  req.on('error', (err) => finish(err.code ?? err.message))
  req.end()
}

function problemCode (body) {
  try {
    return JSON.parse(body).code
  } catch {
    return undefined
  }
}

function percentile (sorted, p) {
  return sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

async function runJob (job) {
  const agent = job.connection === 'new' ? false : new http.Agent({ keepAlive: true, maxSockets: job.closed?.clients ?? 2048 })
  const counts = { offered: 0, served: 0, shed503: 0, timeouts: 0, hangUps: 0, otherStatus: 0, errors: {} }
  const servedMs = []
  const perSecond = [] // by the second the request was sent in: { offered, servedMs: [] }
  const records = []
  // The generator's own health: its loop delay (late timeouts, late sends) and, open loop, how late
  // requests left compared with their schedule.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  loopDelay.enable()
  let maxSendLagMs = 0
  const t0 = Date.now()
  const endAt = t0 + job.durationMs
  // second: of the schedule (open loop: a late send still belongs to its second), or of sentAt.
  const record = (outcome, ms, sentAt, code, scheduledSecond) => {
    const second = scheduledSecond ?? Math.floor((sentAt - t0) / 1000)
    perSecond[second] ??= { offered: 0, servedMs: [] }
    perSecond[second].offered++
    if (job.records && records.length < MAX_REQUESTS) records.push([sentAt, outcome, Math.round(ms), code])
    if (typeof outcome === 'number') {
      if (outcome >= 200 && outcome < 300) {
        counts.served++
        servedMs.push(ms)
        perSecond[second].servedMs.push(ms)
      } else if (outcome === 503) counts.shed503++
      else counts.otherStatus++
    } else if (outcome === 'timeout') counts.timeouts++
    else if (HANG_UP.has(outcome)) counts.hangUps++
    else counts.errors[outcome] = (counts.errors[outcome] ?? 0) + 1
  }
  const one = (scheduledSecond) => new Promise((resolve) => {
    counts.offered++
    send(job, agent, '/', job.timeoutMs, (outcome, ms, sentAt, code) => { record(outcome, ms, sentAt, code, scheduledSecond); resolve() })
  })

  let stallRequest = null
  if (job.stall !== undefined) {
    // Sent on its own connection; not counted among the requests of the table.
    stallRequest = new Promise((resolve) => setTimeout(() => {
      send(job, false, `/stall?ms=${job.stall.ms}`, job.stall.ms + 10_000, (outcome) => resolve(outcome))
    }, job.stall.atMs))
  }
  if (job.closed !== undefined) {
    const worker = async () => {
      while (Date.now() < endAt && counts.offered < MAX_REQUESTS) await one()
    }
    await Promise.all(Array.from({ length: job.closed.clients }, worker))
  } else {
    // Open loop: requests leave on a schedule (job.open.rate per second), whatever the answers.
    const total = Math.min(MAX_REQUESTS, Math.round(job.open.rate * job.durationMs / 1000))
    const inFlight = []
    await new Promise((resolve) => {
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor((Date.now() - t0) * job.open.rate / 1000))
        if (counts.offered < due) maxSendLagMs = Math.max(maxSendLagMs, Date.now() - (t0 + counts.offered * 1000 / job.open.rate))
        while (counts.offered < due) inFlight.push(one(Math.floor(counts.offered / job.open.rate)))
        if (counts.offered >= total || Date.now() >= endAt + 1000) { clearInterval(tick); resolve() }
      }, 1)
    })
    await Promise.all(inFlight)
  }
  const stallOutcome = stallRequest === null ? null : await stallRequest
  if (agent !== false) agent.destroy()
  loopDelay.disable()
  const sorted = servedMs.sort((a, b) => a - b)
  return {
    ...counts,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    perSecond: perSecond.map((s) => ({ offered: s?.offered ?? 0, served: s?.servedMs.length ?? 0, p99: percentile((s?.servedMs ?? []).sort((a, b) => a - b), 99) })),
    records: job.records ? records : undefined,
    stallOutcome,
    t0,
    generator: { loopDelayP99Ms: loopDelay.percentile(99) / 1e6, loopDelayMaxMs: loopDelay.max / 1e6, maxSendLagMs: job.open === undefined ? null : maxSendLagMs }
  }
}

process.on('message', async ({ id, job }) => {
  const result = await runJob(job)
  process.send({ id, result })
})
process.on('disconnect', () => process.exit(0))
process.send('ready')
