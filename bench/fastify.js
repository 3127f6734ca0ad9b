'use strict'
// (d) Fastify: plain fastify vs fastify + hangup-guard (../dist/fastify/index.js) vs fastify +
// @fastify/under-pressure, plus a second plain process for the A/A ratio. Same autocannon
// rounds as the throughput section, at pipelining 1 and 10. Skipped with a message while dist/fastify/index.js does not exist.
const fs = require('node:fs')
const path = require('node:path')
const { abRounds, report, PIPELININGS } = require('./throughput')

async function run ({ quick }) {
  const plugin = path.join(__dirname, '..', 'dist', 'fastify', 'index.js')
  if (!fs.existsSync(plugin)) {
    console.log('SKIPPED: dist/fastify/index.js does not exist yet (lib/fastify/index.ts not written or not built).')
    return [{ section: 'fastify', metric: 'skipped', value: 'no dist/fastify/index.js', target: '', ok: null }]
  }
  const opts = quick ? { rounds: 1, seconds: 1, warmup: 0.5 } : { rounds: 4, seconds: 2.5, warmup: 1.5 }
  const rows = []
  for (const pipelining of PIPELININGS) {
    console.log(`autocannon: 50 connections, pipelining ${pipelining}, ${opts.seconds} s per run, ${opts.rounds} round(s), order rotated each round`)
    let results
    try {
      results = await abRounds({
        'plain A': 'fastify-plain',
        'hangup-guard': 'fastify-guard',
        'under-pressure': 'fastify-under-pressure',
        'plain B': 'fastify-plain'
      }, { ...opts, pipelining })
    } catch (err) {
      if (!err.skip) throw err
      console.log(`SKIPPED: ${err.message}`)
      return [{ section: 'fastify', metric: 'skipped', value: err.message, target: '', ok: null }]
    }
    console.log('')
    rows.push(...report('fastify', results, {
      'hangup-guard/plain': ['hangup-guard', ['plain A', 'plain B'], 0.97],
      'under-pressure/plain': ['under-pressure', ['plain A', 'plain B']],
      'hangup-guard/under-pressure': ['hangup-guard', ['under-pressure']],
      'A/A (plain B/plain A)': ['plain B', ['plain A']]
    }, `p=${pipelining} `))
    console.log('')
  }
  return rows
}

module.exports = { run }
