import t from 'tap'
import { planTimeouts, PLAN_KEYS, PRESET_NAMES, EXPLAIN_WIDTH } from '../lib/index'

const longest = (text: string): number => Math.max(...text.split('\n').map((l) => l.length))

t.test('explain() fits 100 columns for every preset, reasons wrapped under their column', async (t) => {
  t.equal(EXPLAIN_WIDTH, 100)
  for (const upstream of ['none', ...PRESET_NAMES] as const) {
    const text = planTimeouts({ upstream }).explain()
    t.ok(longest(text) <= 100, `${upstream}: longest line ${longest(text)} <= 100`)
    for (const k of PLAN_KEYS) t.match(text, new RegExp(`^${k}\\s`, 'm'), `${upstream}: a row for ${k}`)
  }
  const alb = planTimeouts({ upstream: 'aws-alb' }).explain()
  const reasonColumn = alb.split('\n')[2]!.indexOf('reason')
  const continued = alb.split('\n').filter((l) => l.startsWith(' '.repeat(reasonColumn)))
  t.ok(continued.length > 0, 'some reasons continue on the next line, aligned under "reason"')
  t.notMatch(alb, /\d\n\s+(ms|s|min)\b/, 'a number is never separated from its unit')
})

t.test('explain({ width }) narrows; below the room for a reason column, reasons go under each row', async (t) => {
  const plan = planTimeouts({ upstream: 'cloudflare' })
  const narrow = plan.explain({ width: 60 })
  t.ok(longest(narrow) <= 60, `longest ${longest(narrow)}`)
  t.match(narrow, /^handlerTimeout\s+30 s\s+default\n {4}Default budget/m)
  t.throws(() => plan.explain({ width: 10 }), { code: 'HG_ERR_OPT_RANGE' })
})

t.test('describe(): one short string per setting for structured logs; JSON of a plan unchanged', async (t) => {
  const plan = planTimeouts({ upstream: 'aws-alb', handlerTimeout: '20s' })
  const d = plan.describe()
  t.equal(d.upstream, 'aws-alb: AWS Application Load Balancer, L7 proxy, idle 60 s, response timeout 60 s')
  t.same(Object.keys(d.settings), [...PLAN_KEYS])
  t.match(d.settings.handlerTimeout, /^20 s \(explicit\) Set explicitly/)
  t.match(d.settings.keepAliveTimeout, /^65 s \(derived\) Longer than/)
  for (const v of Object.values(d.settings)) t.notMatch(v, /\n/, 'no line breaks inside a setting')
  t.notOk(Object.keys(plan).includes('describe'), 'describe is not enumerable')
  t.same(JSON.parse(JSON.stringify(plan)).keepAliveTimeout, { value: 65000, source: 'derived', reason: plan.keepAliveTimeout.reason })
})

t.test('through pino, describe() is logged as an object with one field per setting', async (t) => {
  const { default: pino } = await import('pino')
  const lines: string[] = []
  const log = pino({ base: null, timestamp: false }, { write: (s: string) => { lines.push(s) } })
  log.info({ plan: planTimeouts({ upstream: 'nginx' }).describe() }, 'hangup-guard timeout plan')
  const entry = JSON.parse(lines[0]!)
  t.equal(entry.msg, 'hangup-guard timeout plan')
  t.match(entry.plan.settings.keepAliveTimeout, /^\d+ s \(derived\)/)
  t.equal(entry.plan.upstream.split(':')[0], 'nginx')
})
