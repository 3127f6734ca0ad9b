import t from 'tap'
import { planTimeouts, NODE_DEFAULTS, KEEP_ALIVE_CEILING_MS, PLAN_KEYS, type TimeoutPlan } from '../lib/core/plan'
import { PRESETS, PRESET_NAMES } from '../lib/core/presets'
import { toMs, formatMs } from '../lib/core/duration'

/** Every rule of docs/timeouts.md, checked on a finished plan. Returns the broken rules. */
function brokenRules (plan: TimeoutPlan): string[] {
  const broken: string[] = []
  const up = plan.upstream
  const h = plan.handlerTimeout.value
  const ka = plan.keepAliveTimeout.value
  if (up.kind === 'proxy' && ka <= (up.idleTimeout as number) && ka < KEEP_ALIVE_CEILING_MS) broken.push('R1 keepAlive > proxy idle')
  if (up.kind === 'l4' && ka + NODE_DEFAULTS.keepAliveTimeoutBuffer >= (up.idleTimeout as number)) broken.push('R2 keepAlive + buffer < l4 idle')
  if (h > 0 && plan.timeout.value !== 0 && plan.timeout.value <= h) broken.push('R3 timeout > handler')
  if (plan.requestTimeout.value !== 0 && plan.headersTimeout.value > plan.requestTimeout.value) broken.push('R4 headers <= request')
  if (h > 0 && up.responseTimeout !== null && h >= up.responseTimeout) broken.push('R6 handler < upstream response')
  const smallest = Math.min(plan.headersTimeout.value || Infinity, plan.requestTimeout.value || Infinity)
  if (smallest !== Infinity && plan.connectionsCheckingInterval.value > smallest / 2) broken.push('R7 interval <= smallest / 2')
  for (const k of PLAN_KEYS) {
    if (!Number.isInteger(plan[k].value) || plan[k].value < 0) broken.push(`${k} is a whole ms >= 0`)
    if (plan[k].reason.length < 10) broken.push(`${k} has a reason`)
  }
  return broken
}

t.test('no options: direct clients, documented defaults, every value explained', async (t) => {
  const plan = planTimeouts()
  t.equal(plan.upstream.kind, 'none')
  t.equal(plan.handlerTimeout.value, 30_000)
  t.equal(plan.handlerTimeout.source, 'default')
  t.equal(plan.keepAliveTimeout.value, NODE_DEFAULTS.keepAliveTimeout)
  t.equal(plan.headersTimeout.value, 60_000)
  t.equal(plan.requestTimeout.value, 300_000)
  t.equal(plan.timeout.value, 0, 'no inactivity timer: the deadline answers first (and costs no per-read timer refresh)')
  t.equal(plan.timeout.source, 'derived')
  t.same(brokenRules(plan), [])
  t.ok(Object.isFrozen(plan) && Object.isFrozen(plan.keepAliveTimeout) && Object.isFrozen(plan.advice))
  const text = plan.explain()
  for (const k of PLAN_KEYS) t.match(text, new RegExp(`^${k}\\s`, 'm'), `explain() has a row for ${k}`)
  t.notOk(Object.keys(plan).includes('explain'), 'explain is not enumerable (JSON of a plan is data)')
  t.same(JSON.parse(JSON.stringify(plan)).keepAliveTimeout, { value: 5000, source: 'default', reason: plan.keepAliveTimeout.reason })
})

t.test('aws-alb: keepAliveTimeout above the 60 s idle timeout, handler below the ALB response limit', async (t) => {
  const plan = planTimeouts({ upstream: 'aws-alb' })
  t.ok(plan.keepAliveTimeout.value > 60_000)
  t.equal(plan.keepAliveTimeout.value, 65_000)
  t.equal(plan.keepAliveTimeout.source, 'derived')
  t.ok(plan.handlerTimeout.value < 60_000)
  t.same(brokenRules(plan), [])
})

t.test('l4 balancers: the server closes idle flows first', async (t) => {
  for (const name of ['aws-nlb', 'azure-lb'] as const) {
    const plan = planTimeouts({ upstream: name })
    t.ok(plan.keepAliveTimeout.value + 1000 < PRESETS[name].idleTimeout, `${name}: ${plan.keepAliveTimeout.value}`)
  }
})

t.test('presets with a response timeout derive a handler budget below it', async (t) => {
  t.equal(planTimeouts({ upstream: 'envoy' }).handlerTimeout.value, 13_500)
  t.equal(planTimeouts({ upstream: 'envoy' }).handlerTimeout.source, 'derived')
  t.ok(planTimeouts({ upstream: 'gcp-https-lb' }).handlerTimeout.value < 30_000)
  t.equal(planTimeouts({ upstream: 'cloudflare' }).handlerTimeout.value, 30_000, 'the default budget already sits below 100 s')
})

t.test('envoy: idle timeout beyond the ceiling gives workable values and advice', async (t) => {
  const plan = planTimeouts({ upstream: 'envoy' })
  t.equal(plan.keepAliveTimeout.value, KEEP_ALIVE_CEILING_MS)
  t.equal(plan.advice.length, 1)
  t.match(plan.advice[0], /idle_timeout/)
  t.match(plan.explain(), /^advice: /m)
})

t.test('property: every preset, and random upstreams and budgets, satisfy every rule', async (t) => {
  let seed = 42
  const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
  let checked = 0
  for (const name of [...PRESET_NAMES, 'none' as const]) {
    for (let i = 0; i < 200; i++) {
      const responseTimeout = name === 'none' ? null : (PRESETS[name] as { responseTimeout?: number }).responseTimeout ?? null
      const ceiling = responseTimeout === null ? 600_000 : responseTimeout - Math.min(5000, Math.max(1000, responseTimeout / 10))
      const handlerTimeout = i === 0 ? undefined : Math.max(1, Math.floor(rand() * ceiling))
      const plan = planTimeouts({ upstream: name, handlerTimeout })
      const broken = brokenRules(plan)
      if (broken.length > 0) t.fail(`${name} handlerTimeout=${handlerTimeout}: ${broken.join(', ')}`)
      checked++
    }
  }
  for (let i = 0; i < 500; i++) {
    const kind = rand() < 0.5 ? 'proxy' as const : 'l4' as const
    const idleTimeout = 5000 + Math.floor(rand() * 4_000_000)
    const responseTimeout = rand() < 0.5 ? undefined : 5000 + Math.floor(rand() * 200_000)
    const margin = rand() < 0.5 ? undefined : Math.floor(rand() * 2000)
    const plan = planTimeouts({ upstream: { kind, idleTimeout, responseTimeout }, margin })
    const broken = brokenRules(plan)
    if (broken.length > 0) t.fail(`${kind} idle=${idleTimeout} response=${responseTimeout} margin=${margin}: ${broken.join(', ')}`)
    checked++
  }
  t.equal(checked, (PRESET_NAMES.length + 1) * 200 + 500)
})

t.test('explicit settings that break a rule are refused with a coded error naming option, value, rule and a suggestion', async (t) => {
  const cases: Array<[object, string, RegExp]> = [
    [{ upstream: 'aws-alb', keepAliveTimeout: '30s' }, 'HG_ERR_PLAN_KEEP_ALIVE_TOO_SHORT', /keepAliveTimeout 30000 ms.*60000 ms.*Use 65000 ms/],
    [{ upstream: 'aws-nlb', keepAliveTimeout: '350s' }, 'HG_ERR_PLAN_KEEP_ALIVE_TOO_LONG', /keepAliveTimeout 350000 ms.*Use 344000 ms or less/],
    [{ handlerTimeout: '10s', timeout: '5s' }, 'HG_ERR_PLAN_SOCKET_TIMEOUT_TOO_SHORT', /timeout \(socket inactivity\) 5000 ms.*10000 ms budget.*Use 11000 ms/],
    [{ headersTimeout: 90_000, requestTimeout: 60_000 }, 'HG_ERR_PLAN_HEADERS_AFTER_REQUEST', /headersTimeout 90000 ms.*requestTimeout 60000 ms/],
    [{ upstream: 'envoy', handlerTimeout: '15s' }, 'HG_ERR_PLAN_HANDLER_TOO_LONG', /handlerTimeout 15000 ms.*Envoy.*15000 ms.*Use 13500 ms/],
    [{ connectionsCheckingInterval: '40s' }, 'HG_ERR_PLAN_CHECK_INTERVAL_TOO_COARSE', /connectionsCheckingInterval 40000 ms.*60000 ms.*Use 15000 ms/]
  ]
  for (const [options, code, message] of cases) {
    t.throws(() => planTimeouts(options), { name: `RangeError [${code}]`, code, message }, code)
    try { planTimeouts(options) } catch (err) { t.ok(err instanceof RangeError, `${code} is a RangeError`) }
  }
})

t.test('issue 11: a requestTimeout shorter than the handler budget is coherent (it bounds the receipt only; R5 is retired)', async (t) => {
  const plan = planTimeouts({ headersTimeout: 300, requestTimeout: 1000, connectionsCheckingInterval: 100 })
  t.equal(plan.handlerTimeout.value, 30_000)
  t.equal(plan.requestTimeout.value, 1000)
  t.equal(plan.headersTimeout.value, 300)
  const derived = planTimeouts({ handlerTimeout: '10m' })
  t.equal(derived.requestTimeout.value, 300_000, 'a long budget no longer raises requestTimeout')
  t.equal(planTimeouts({ headersTimeout: '6m' }).requestTimeout.value, 360_000, 'raised to headersTimeout only')
})

t.test('coherent explicit settings are kept and marked explicit', async (t) => {
  const plan = planTimeouts({ upstream: 'aws-alb', keepAliveTimeout: '70s', handlerTimeout: '20s', timeout: 0, requestTimeout: 0, headersTimeout: '10s' })
  t.equal(plan.keepAliveTimeout.value, 70_000)
  t.equal(plan.keepAliveTimeout.source, 'explicit')
  t.equal(plan.timeout.value, 0)
  t.equal(plan.requestTimeout.value, 0)
  t.equal(plan.connectionsCheckingInterval.value, 2500, 'derived from the explicit 10 s headersTimeout')
  t.same(brokenRules(plan), [])
})

t.test('an explicit headersTimeout above the default requestTimeout raises the derived requestTimeout', async (t) => {
  const plan = planTimeouts({ headersTimeout: '6m' })
  t.equal(plan.requestTimeout.value, 360_000)
  t.equal(plan.requestTimeout.source, 'derived')
})

t.test('handlerTimeout false or 0 disables the deadline and the socket-timeout backstop', async (t) => {
  for (const handlerTimeout of [false, 0] as const) {
    const plan = planTimeouts({ handlerTimeout })
    t.equal(plan.handlerTimeout.value, 0)
    t.equal(plan.timeout.value, 0)
  }
})

t.test('malformed options get coded TypeErrors / RangeErrors', async (t) => {
  t.throws(() => planTimeouts({ upstream: 'nginx-plus' as 'nginx' }), { code: 'HG_ERR_OPT_PRESET', message: /"nginx-plus".*aws-alb/ })
  t.throws(() => planTimeouts({ upstream: 42 as unknown as 'nginx' }), { code: 'HG_ERR_OPT_TYPE', name: 'TypeError [HG_ERR_OPT_TYPE]' })
  t.throws(() => planTimeouts({ upstream: { idleTimeout: '1 minute' } }), { code: 'HG_ERR_OPT_DURATION', message: /'upstream.idleTimeout'.*"1 minute"/ })
  t.throws(() => planTimeouts({ upstream: { idleTimeout: 0 } }), { code: 'HG_ERR_OPT_RANGE' })
  t.throws(() => planTimeouts({ upstream: { idleTimeout: 1000, kind: 'l7' as 'proxy' } }), { code: 'HG_ERR_OPT_TYPE', message: "Option 'upstream.kind' got \"l7\"; it must be 'proxy' or 'l4'" })
  t.throws(() => planTimeouts({ upstream: { idleTimeout: 1000, idle: 5 } as unknown as { idleTimeout: number } }), { code: 'HG_ERR_OPT_UNKNOWN', message: /upstream\.idle'; did you mean 'idleTimeout'/ })
  t.throws(() => planTimeouts({ upstream: { kind: 'l4', idleTimeout: 1500 } }), { code: 'HG_ERR_OPT_RANGE', message: /upstream.idleTimeout/ })
  t.throws(() => planTimeouts({ handlerTimeout: -1 }), { code: 'HG_ERR_OPT_DURATION' })
  t.throws(() => planTimeouts({ keepAliveTimeout: NaN }), { code: 'HG_ERR_OPT_DURATION', message: /'keepAliveTimeout'/ })
  t.throws(() => planTimeouts(null as unknown as object), { code: 'HG_ERR_OPT_TYPE' })
})

t.test('custom upstream spec and margin scale down to milliseconds', async (t) => {
  const plan = planTimeouts({ upstream: { name: 'test-proxy', idleTimeout: 300, responseTimeout: 900 }, margin: 50 })
  t.equal(plan.keepAliveTimeout.value, 350)
  t.equal(plan.handlerTimeout.value, 850)
  t.equal(plan.timeout.value, 0)
  t.equal(plan.upstream.title, 'test-proxy')
  t.throws(() => planTimeouts({ upstream: { idleTimeout: 300 }, margin: 50, keepAliveTimeout: 320 }), { code: 'HG_ERR_PLAN_KEEP_ALIVE_TOO_SHORT', message: /Use 350 ms/ })
})

t.test('durations', async (t) => {
  t.equal(toMs('x', '250ms'), 250)
  t.equal(toMs('x', '1.5s'), 1500)
  t.equal(toMs('x', '2m'), 120_000)
  t.equal(toMs('x', '2min'), 120_000)
  t.equal(toMs('x', '1h'), 3_600_000)
  t.equal(toMs('x', 0.2), 1, 'rounded up: a timeout never fires earlier than asked')
  for (const bad of ['', '5', '5 sec', '-1s', 'Infinity', Infinity, NaN, -5, null, {}]) {
    t.throws(() => toMs('opt', bad), { code: 'HG_ERR_OPT_DURATION' }, JSON.stringify(bad) ?? String(bad))
  }
  t.equal(formatMs(0), 'off')
  t.equal(formatMs(250), '250 ms')
  t.equal(formatMs(65_000), '65 s')
  t.equal(formatMs(1_200_000), '20 min')
  t.equal(formatMs(3_600_000), '1 h')
})
