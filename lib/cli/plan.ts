/**
 * `hangup-guard plan`: the plan with its reasons, and the settings ready to paste: node:http,
 * the fastify() factory, and the Kubernetes probes, preStop and grace period.
 */
import { type PlanOptions, type TimeoutPlan, planTimeouts } from '../core/plan'
import { fastifyServerOptions } from '../fastify/options'
import { toMs, formatMs } from '../core/duration'
import { HG_ERR_OPT_RANGE } from '../core/errors'
import type { PresetName } from '../core/presets'

/** Seconds added to drain.timeout (+ preStop) for terminationGracePeriodSeconds. */
export const GRACE_SPARE_S = 5
/** Drain defaults, as in the guard's options (docs/api.md#drain). */
const DRAIN_DELAY_MS = 5_000
const DRAIN_TIMEOUT_MS = 30_000

export interface PlanCommandInput {
  upstream?: string
  upstreamIdleTimeout?: string
  upstreamResponseTimeout?: string
  upstreamKind?: string
  handlerTimeout?: string
  keepAliveTimeout?: string
  headersTimeout?: string
  requestTimeout?: string
  timeout?: string
  margin?: string
  connectionsCheckingInterval?: string
  drainDelay?: string
  drainTimeout?: string
  preStop?: string
  port?: string
}

export interface PlanCommandResult {
  /** The options handed to planTimeouts / configureServerTimeouts. */
  readonly options: Record<string, unknown>
  readonly plan: TimeoutPlan
  readonly drain: { readonly delayMs: number, readonly timeoutMs: number, readonly preStopMs: number }
  readonly snippets: { readonly nodeHttp: string, readonly fastify: string, readonly kubernetes: string }
}

const MS_KEYS = ['keepAliveTimeout', 'headersTimeout', 'requestTimeout', 'timeout', 'margin', 'connectionsCheckingInterval'] as const

/** Reads a duration flag: '30s', '500ms', or plain milliseconds ('1500'). */
function duration (value: string): number | string {
  return /^\d+$/.test(value) ? Number(value) : value
}

export function runPlan (input: PlanCommandInput): PlanCommandResult {
  const options: Record<string, unknown> = {}
  if (input.upstreamIdleTimeout !== undefined) {
    const spec: Record<string, unknown> = { name: input.upstream ?? 'upstream', kind: input.upstreamKind ?? 'proxy', idleTimeout: duration(input.upstreamIdleTimeout) }
    if (input.upstreamResponseTimeout !== undefined) spec.responseTimeout = duration(input.upstreamResponseTimeout)
    options.upstream = spec
  } else if (input.upstream !== undefined) {
    options.upstream = input.upstream
  }
  if (input.handlerTimeout !== undefined) options.handlerTimeout = input.handlerTimeout === 'false' || input.handlerTimeout === 'off' ? false : duration(input.handlerTimeout)
  for (const k of MS_KEYS) if (input[k] !== undefined) options[k] = duration(input[k])
  const plan = planTimeouts(options as PlanOptions)
  const delayMs = input.drainDelay === undefined ? DRAIN_DELAY_MS : toMs('drain-delay', duration(input.drainDelay))
  const timeoutMs = input.drainTimeout === undefined ? Math.max(DRAIN_TIMEOUT_MS, delayMs) : toMs('drain-timeout', duration(input.drainTimeout))
  if (timeoutMs < delayMs) throw new HG_ERR_OPT_RANGE('drain-timeout', input.drainTimeout, `>= drain-delay (${delayMs} ms): the hard deadline counts from the start of the drain`)
  const preStopMs = input.preStop === undefined ? 0 : toMs('pre-stop', duration(input.preStop))
  const port = input.port === undefined ? 3000 : Number(input.port)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new HG_ERR_OPT_RANGE('port', input.port, 'a TCP port, 1 to 65535')
  const drain = { delayMs, timeoutMs, preStopMs }
  return Object.freeze({ options, plan, drain, snippets: snippets(options, plan, drain, port) })
}

function literal (options: Record<string, unknown>, drain: { delayMs: number, timeoutMs: number }): string {
  const parts = Object.entries(options).map(([k, v]) => `${k}: ${typeof v === 'string' ? `'${v}'` : v !== null && typeof v === 'object' ? `{ ${Object.entries(v).map(([a, b]) => `${a}: ${typeof b === 'string' ? `'${b}'` : String(b)}`).join(', ')} }` : String(v)}`)
  parts.push('handleSignals: true', `drain: { delay: '${formatMs(drain.delayMs).replace(' ', '')}', timeout: '${formatMs(drain.timeoutMs).replace(' ', '')}' }`)
  return `{ ${parts.join(', ')} }`
}

function snippets (options: Record<string, unknown>, plan: TimeoutPlan, drain: PlanCommandResult['drain'], port: number): PlanCommandResult['snippets'] {
  const opts = literal(options, drain)
  const nodeHttp = [
    "import http from 'node:http'",
    "import { configureServerTimeouts } from 'hangup-guard'",
    '',
    'const server = http.createServer(handler)',
    `configureServerTimeouts(server, ${opts})`,
    '',
    '// or the same timeouts without hangup-guard (no 504 deadline, no drain, no health):',
    `// const server = http.createServer({ headersTimeout: ${plan.headersTimeout.value}, requestTimeout: ${plan.requestTimeout.value}, connectionsCheckingInterval: ${plan.connectionsCheckingInterval.value} }, handler)`,
    `// server.keepAliveTimeout = ${plan.keepAliveTimeout.value}`,
    `// server.timeout = ${plan.timeout.value}`
  ].join('\n')
  const f = fastifyServerOptions(plan)
  const fastify = [
    "import Fastify from 'fastify'",
    "import hangupGuard, { fastifyServerOptions } from 'hangup-guard/fastify'",
    '',
    `const options = ${opts} as const`,
    'const app = Fastify({ ...fastifyServerOptions(options), logger: true })',
    `// fastifyServerOptions(options) = { connectionTimeout: ${f.connectionTimeout}, keepAliveTimeout: ${f.keepAliveTimeout}, requestTimeout: ${f.requestTimeout},`,
    `//   http: { headersTimeout: ${f.http.headersTimeout}, connectionsCheckingInterval: ${f.http.connectionsCheckingInterval} } }`,
    'await app.register(hangupGuard, options)'
  ].join('\n')
  const graceS = Math.ceil((drain.preStopMs + drain.timeoutMs) / 1000) + GRACE_SPARE_S
  const k8s = [
    '# in the Deployment\'s pod template (spec.template.spec)',
    `terminationGracePeriodSeconds: ${graceS}     # ${drain.preStopMs > 0 ? `${formatMs(drain.preStopMs)} preStop + ` : ''}${formatMs(drain.timeoutMs)} drain.timeout + ${GRACE_SPARE_S} s`,
    'containers:',
    '  - name: app',
    '    ports:',
    `      - containerPort: ${port}`,
    ...(drain.preStopMs > 0
      ? ['    lifecycle:', '      preStop:', `        sleep: { seconds: ${Math.ceil(drain.preStopMs / 1000)} }   # Kubernetes 1.30+; shorten drain.delay by as much`]
      : ['    # no preStop sleep: drain.delay (' + formatMs(drain.delayMs) + ') keeps serving, with Connection: close, while endpoints are removed']),
    '    readinessProbe:',
    `      httpGet: { path: /readyz, port: ${port} }`,
    '      periodSeconds: 5',
    '      timeoutSeconds: 2',
    '      failureThreshold: 2',
    '    livenessProbe:',
    `      httpGet: { path: /livez, port: ${port} }`,
    '      initialDelaySeconds: 10',
    '      periodSeconds: 10',
    '      timeoutSeconds: 5',
    '      failureThreshold: 6            # about a minute before a restart'
  ].join('\n')
  return Object.freeze({ nodeHttp, fastify, kubernetes: k8s })
}

export function formatPlan (r: PlanCommandResult, width: number): string {
  return [
    r.plan.explain({ width }),
    '',
    '== node:http',
    r.snippets.nodeHttp,
    '',
    '== Fastify (factory options via fastifyServerOptions)',
    r.snippets.fastify,
    '',
    '== Kubernetes (probes, preStop, terminationGracePeriodSeconds)',
    r.snippets.kubernetes,
    ''
  ].join('\n')
}

export type { PresetName }
