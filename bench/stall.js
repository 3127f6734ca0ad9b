'use strict'
// Stall reaction: a guarded server (handlerTimeout 300 ms) blocks its loop for 800 ms while a burst
// of requests queues in the kernel. Of those, how many are shed with 503 (HG_ERR_STALLED) instead
// of being processed after their budget was gone, and how long after the loop resumes the first
// 503 leaves. Repeated STALLS times; the server runs in its own process.
const { fork } = require('node:child_process')
const { once } = require('node:events')
const http = require('node:http')
const path = require('node:path')
const { sleep, table, fmt, median } = require('./lib')

const BLOCK_MS = 800
const BURST = 40

function request (port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode))
    })
    req.on('error', (err) => resolve(err.code ?? 'error'))
    req.setTimeout(10_000, () => req.destroy())
  })
}

function next (child, pick) {
  return new Promise((resolve) => {
    const on = (m) => { if (pick(m)) { child.off('message', on); resolve(m) } }
    child.on('message', on)
  })
}

async function run (args) {
  const stalls = args.quick ? 3 : 5
  const child = fork(path.join(__dirname, 'stall-server.js'), ['300'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const [{ port }] = await once(child, 'message')
  const rows = [['stall', 'queued', 'shed 503', 'processed', 'hang ups', 'resume → first 503 (ms)']]
  let queued = 0; let shed = 0; let hangups = 0
  const firsts = []
  try {
    for (let i = 0; i <= stalls; i++) { // stall 0 warms the refusal path up and is not counted
      child.send({ block: BLOCK_MS })
      await next(child, (m) => m.blocking === true)
      await sleep(100) // the loop is blocked: this burst waits in the kernel
      const statuses = await Promise.all(Array.from({ length: BURST }, () => request(port)))
      child.send({ report: true })
      const report = await next(child, (m) => m.handled !== undefined)
      const s503 = statuses.filter((s) => s === 503).length
      const errors = statuses.filter((s) => typeof s !== 'number').length
      if (i === 0) { await sleep(300); continue }
      queued += BURST; shed += s503; hangups += errors
      if (report.resumeToFirst503Ms !== null) firsts.push(report.resumeToFirst503Ms)
      rows.push([String(i), String(BURST), String(s503), String(report.handled), String(errors), report.resumeToFirst503Ms === null ? '-' : fmt(report.resumeToFirst503Ms, 2)])
      await sleep(300)
    }
  } finally {
    child.disconnect()
    if (child.exitCode === null) await once(child, 'exit')
  }
  table(rows, 'lrrrrr')
  const share = shed / queued
  const worst = firsts.length === 0 ? Infinity : Math.max(...firsts)
  console.log(`\nshed ${shed}/${queued} (${(share * 100).toFixed(1)}%), hang ups ${hangups}; resume → first 503: median ${fmt(median(firsts), 2)} ms, worst ${fmt(worst, 2)} ms`)
  return [
    { section: 'stall', metric: 'queued during a stall, shed with 503', value: `${(share * 100).toFixed(1)}%`, target: '>= 95%', ok: share >= 0.95 },
    { section: 'stall', metric: 'hang ups among queued requests', value: String(hangups), target: '0', ok: hangups === 0, hard: true },
    { section: 'stall', metric: 'resume → first 503, worst of stalls', value: `${fmt(worst, 2)} ms`, target: '<= 5 ms', ok: worst <= 5 }
  ]
}

module.exports = { run }
