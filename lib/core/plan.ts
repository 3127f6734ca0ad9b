/**
 * The timeout planner: pure, no I/O. From what stands in front of the server and the handler
 * budget it derives Node's own server settings, checks the rules between them (see
 * docs/timeouts.md, one rule per error code in lib/errors.ts) and explains every value.
 */
import { type Duration, toMs, formatMs } from './duration'
import { PRESETS, PRESET_NAMES, type PresetName, type UpstreamKind } from './presets'
import { hint } from './suggest'
import {
  HG_ERR_OPT_PRESET, HG_ERR_OPT_TYPE, HG_ERR_OPT_RANGE, HG_ERR_OPT_UNKNOWN,
  HG_ERR_PLAN_KEEP_ALIVE_TOO_SHORT, HG_ERR_PLAN_KEEP_ALIVE_TOO_LONG, HG_ERR_PLAN_SOCKET_TIMEOUT_TOO_SHORT,
  HG_ERR_PLAN_HEADERS_AFTER_REQUEST, HG_ERR_PLAN_HANDLER_TOO_LONG,
  HG_ERR_PLAN_CHECK_INTERVAL_TOO_COARSE
} from './errors'

/** Node's own defaults, identical on Node 20, 22, 24 and 26 (lib/_http_server.js, storeHTTPOptions). */
export const NODE_DEFAULTS = Object.freeze({
  timeout: 0,
  keepAliveTimeout: 5_000, // 5 seconds
  requestTimeout: 300_000, // 5 minutes
  headersTimeout: 60_000, // min(60 s, requestTimeout)
  connectionsCheckingInterval: 30_000, // 30 seconds
  /** Node closes an idle keep-alive socket this long after keepAliveTimeout (fixed on 20, `keepAliveTimeoutBuffer` on 22.23+/24/26). */
  keepAliveTimeoutBuffer: 1_000
})

/** Handler budget when nothing says otherwise. */
export const DEFAULT_HANDLER_TIMEOUT_MS = 30_000 // 30 seconds
/** Derived safety margins are 10% of what they protect, within these bounds. */
export const MIN_MARGIN_MS = 1_000
export const MAX_MARGIN_MS = 5_000
/** Longest keepAliveTimeout the planner derives; beyond it the upstream should change (advice). */
export const KEEP_ALIVE_CEILING_MS = 1_200_000 // 20 minutes

/** An upstream described by hand, when no preset fits. Durations in ms or strings such as '60s'. */
export interface UpstreamSpec {
  /** Shown in reasons and errors. @default 'upstream' */
  name?: string
  /** 'proxy': L7, pools and reuses idle connections. 'l4': pass-through, drops idle flows. @default 'proxy' */
  kind?: UpstreamKind
  /** How long the upstream keeps an idle connection to this server. */
  idleTimeout: Duration
  /** How long the upstream waits for a response before it answers with its own error. */
  responseTimeout?: Duration
  /** Header that carries the client's remaining time in ms (as Envoy's x-envoy-expected-rq-timeout-ms). */
  deadlineHeader?: string
}

export interface PlanOptions {
  /** What stands in front of the server: a preset name, an UpstreamSpec, or 'none' for direct clients. @default 'none' */
  upstream?: PresetName | 'none' | UpstreamSpec
  /** Budget of a request's handler; the guard answers 504 when it is spent. false: no budget. @default 30 s, or less when the upstream gives up sooner */
  handlerTimeout?: Duration | false
  /** Safety margin used by every rule. @default 10% of the protected value, within [1 s, 5 s] */
  margin?: Duration
  /** Socket inactivity timeout (`server.timeout`); if set, at least handlerTimeout + margin. @default 0 (off: the deadline answers first) */
  timeout?: Duration
  /** `server.keepAliveTimeout`. @default derived from the upstream (5 s with none) */
  keepAliveTimeout?: Duration
  /** `server.headersTimeout`. @default min(60 s, requestTimeout) */
  headersTimeout?: Duration
  /** `server.requestTimeout`: how long receiving a whole request may take (not its handler). @default 300 s (at least headersTimeout) */
  requestTimeout?: Duration
  /** `server.connectionsCheckingInterval`. @default a quarter of the smallest of headersTimeout/requestTimeout, at most 30 s */
  connectionsCheckingInterval?: Duration
}

export type PlanSource = 'derived' | 'explicit' | 'default'

export interface PlanEntry {
  /** Milliseconds; 0 means off. */
  readonly value: number
  readonly source: PlanSource
  /** One sentence: why this value. */
  readonly reason: string
}

export interface ResolvedUpstream {
  /** Preset key, 'none', or the spec's name. */
  readonly name: string
  readonly title: string
  readonly kind: UpstreamKind | 'none'
  readonly idleTimeout: number | null
  readonly responseTimeout: number | null
  readonly deadlineHeader: string | null
  readonly source: string | null
}

export const PLAN_KEYS = ['handlerTimeout', 'timeout', 'keepAliveTimeout', 'headersTimeout', 'requestTimeout', 'connectionsCheckingInterval'] as const
export type PlanKey = typeof PLAN_KEYS[number]

export interface TimeoutPlan extends Readonly<Record<PlanKey, PlanEntry>> {
  readonly upstream: ResolvedUpstream
  /** Margin used when a rule needs one explicitly given, else null (each rule derived its own). */
  readonly margin: number | null
  /** What should change outside the server. */
  readonly advice: readonly string[]
  /**
   * The plan as a text table for people: one row per setting, the reasons wrapped so that no line
   * is longer than `width` columns (a word longer than that stays whole).
   */
  explain (options?: ExplainOptions): string
  /**
   * The plan for structured logs (pino, JSON lines): one short string per setting, so that
   * `log.info({ plan: plan.describe() })` reads as one line per setting instead of one escaped table.
   */
  describe (): PlanDescription
}

export interface ExplainOptions {
  /** Longest line, in columns. @default 100 */
  width?: number
}

/** `plan.describe()`: every value as text, with its source and reason. */
export interface PlanDescription {
  /** e.g. 'aws-alb: AWS Application Load Balancer, L7 proxy, idle 60 s, response timeout 60 s' */
  readonly upstream: string
  /** One entry per setting, e.g. handlerTimeout: '30 s (explicit) Set explicitly: …' */
  readonly settings: Readonly<Record<PlanKey, string>>
  readonly advice: readonly string[]
}

/** Default width of explain() (columns). */
export const EXPLAIN_WIDTH = 100

const UPSTREAM_KEYS = new Set(['name', 'kind', 'idleTimeout', 'responseTimeout', 'deadlineHeader'])

function resolveUpstream (upstream: PlanOptions['upstream']): ResolvedUpstream {
  if (upstream === undefined || upstream === 'none') {
    return { name: 'none', title: 'direct clients', kind: 'none', idleTimeout: null, responseTimeout: null, deadlineHeader: null, source: null }
  }
  if (typeof upstream === 'string') {
    if (!Object.hasOwn(PRESETS, upstream)) throw new HG_ERR_OPT_PRESET(upstream, hint(upstream, PRESET_NAMES, 'presets'))
    const p = PRESETS[upstream as PresetName]
    return {
      name: upstream,
      title: p.title,
      kind: p.kind,
      idleTimeout: p.idleTimeout,
      responseTimeout: 'responseTimeout' in p ? p.responseTimeout : null,
      deadlineHeader: 'deadlineHeader' in p ? p.deadlineHeader : null,
      source: p.source
    }
  }
  if (upstream === null || typeof upstream !== 'object') {
    throw new HG_ERR_OPT_TYPE('upstream', upstream, `a preset name (${PRESET_NAMES.join(', ')}), 'none', or { kind, idleTimeout, responseTimeout }`)
  }
  for (const key of Object.keys(upstream)) {
    if (!UPSTREAM_KEYS.has(key)) throw new HG_ERR_OPT_UNKNOWN(`upstream.${key}`, hint(key, [...UPSTREAM_KEYS], 'options'))
  }
  const kind = upstream.kind ?? 'proxy'
  if (kind !== 'proxy' && kind !== 'l4') throw new HG_ERR_OPT_TYPE('upstream.kind', kind, "'proxy' or 'l4'")
  if (upstream.name !== undefined && typeof upstream.name !== 'string') throw new HG_ERR_OPT_TYPE('upstream.name', upstream.name, 'a string')
  if (upstream.deadlineHeader !== undefined && (typeof upstream.deadlineHeader !== 'string' || upstream.deadlineHeader === '')) {
    throw new HG_ERR_OPT_TYPE('upstream.deadlineHeader', upstream.deadlineHeader, 'a header name')
  }
  const idleTimeout = toMs('upstream.idleTimeout', upstream.idleTimeout)
  if (idleTimeout === 0) throw new HG_ERR_OPT_RANGE('upstream.idleTimeout', upstream.idleTimeout, 'a duration > 0')
  const responseTimeout = upstream.responseTimeout === undefined ? null : toMs('upstream.responseTimeout', upstream.responseTimeout)
  if (responseTimeout === 0) throw new HG_ERR_OPT_RANGE('upstream.responseTimeout', upstream.responseTimeout, 'a duration > 0 (omit it when the upstream has none)')
  const name = upstream.name ?? 'upstream'
  return {
    name,
    title: name,
    kind,
    idleTimeout,
    responseTimeout,
    deadlineHeader: upstream.deadlineHeader?.toLowerCase() ?? null,
    source: null
  }
}

function marginFor (explicit: number | null, protectedMs: number): number {
  if (explicit !== null) return explicit
  return Math.min(MAX_MARGIN_MS, Math.max(MIN_MARGIN_MS, Math.round(protectedMs / 10)))
}

function optionalMs (options: PlanOptions, key: Exclude<PlanKey, 'handlerTimeout'> | 'margin'): number | null {
  const value = options[key]
  return value === undefined ? null : toMs(key, value)
}

function entry (value: number, source: PlanSource, reason: string): PlanEntry {
  return Object.freeze({ value, source, reason })
}

/**
 * Plans the server's timeouts. Throws a coded TypeError/RangeError for malformed options and for
 * explicit settings that break a rule (the error names the option, the value, the rule and a
 * suggested value).
 */
export function planTimeouts (options: PlanOptions = {}): TimeoutPlan {
  if (options === null || typeof options !== 'object') throw new HG_ERR_OPT_TYPE('options', options, 'an object')
  const up = resolveUpstream(options.upstream)
  const explicitMargin = optionalMs(options, 'margin')
  const advice: string[] = []
  const upName = up.kind === 'none' ? '' : `${up.title} (${up.kind === 'l4' ? 'L4 pass-through' : 'L7 proxy'})`

  // handlerTimeout: the budget the guard enforces with a 504.
  let handler: PlanEntry
  if (options.handlerTimeout === false) {
    handler = entry(0, 'explicit', 'Disabled: no per-request deadline; the guard never answers 504 on its own.')
  } else if (options.handlerTimeout !== undefined) {
    const v = toMs('handlerTimeout', options.handlerTimeout)
    handler = entry(v, 'explicit', v === 0 ? 'Disabled (0): no per-request deadline.' : `Set explicitly: the guard answers 504 for a handler that has not answered after ${formatMs(v)} (a response already streaming is cut and counted).`)
  } else if (up.responseTimeout !== null && up.responseTimeout - marginFor(explicitMargin, up.responseTimeout) < DEFAULT_HANDLER_TIMEOUT_MS) {
    const v = up.responseTimeout - marginFor(explicitMargin, up.responseTimeout)
    if (v <= 0) throw new HG_ERR_OPT_RANGE('upstream.responseTimeout', up.responseTimeout, `a duration longer than the margin ${marginFor(explicitMargin, up.responseTimeout)} ms`)
    handler = entry(v, 'derived', `${up.title} gives up after ${formatMs(up.responseTimeout)}; the guard answers 504 first, a margin earlier.`)
  } else {
    handler = entry(DEFAULT_HANDLER_TIMEOUT_MS, 'default', up.responseTimeout === null
      ? 'Default budget: the guard answers 504 for a handler that has not answered after 30 s (a response already streaming is cut and counted).'
      : `Default budget, below ${up.title}'s ${formatMs(up.responseTimeout)} response timeout, so the server answers before the upstream gives up.`)
  }

  // keepAliveTimeout: who closes an idle connection first.
  let keepAlive: PlanEntry
  const explicitKeepAlive = optionalMs(options, 'keepAliveTimeout')
  if (explicitKeepAlive !== null) {
    keepAlive = entry(explicitKeepAlive, 'explicit', 'Set explicitly.')
  } else if (up.kind === 'proxy') {
    const idle = up.idleTimeout as number
    const wanted = idle + marginFor(explicitMargin, idle)
    if (wanted > KEEP_ALIVE_CEILING_MS) {
      keepAlive = entry(KEEP_ALIVE_CEILING_MS, 'derived', `${up.title} keeps idle connections ${formatMs(idle)}, too long to outlast sensibly; capped at ${formatMs(KEEP_ALIVE_CEILING_MS)}, see advice.`)
      const noteFrom = up.name in PRESETS ? (PRESETS[up.name as PresetName] as { note?: string }).note : undefined
      advice.push(`${noteFrom ?? `Set ${up.title}'s idle timeout for connections to this server below the server's keepAliveTimeout.`} Use at most ${formatMs(KEEP_ALIVE_CEILING_MS - marginFor(explicitMargin, KEEP_ALIVE_CEILING_MS))}; until then an idle connection the server closes may be reused by ${up.title} (502).`)
    } else {
      keepAlive = entry(wanted, 'derived', `Longer than ${up.title}'s ${formatMs(idle)} idle timeout, so the proxy always closes an idle connection first (no reuse race).`)
    }
  } else if (up.kind === 'l4') {
    const idle = up.idleTimeout as number
    const v = idle - marginFor(explicitMargin, idle) - NODE_DEFAULTS.keepAliveTimeoutBuffer
    if (v <= 0) throw new HG_ERR_OPT_RANGE('upstream.idleTimeout', idle, `a duration longer than margin + ${NODE_DEFAULTS.keepAliveTimeoutBuffer} ms (Node's keep-alive buffer)`)
    keepAlive = entry(v, 'derived', `Shorter than ${up.title}'s ${formatMs(idle)} idle timeout (Node closes 1 s after it), so the server closes idle flows first with a FIN instead of the balancer dropping them.`)
  } else {
    keepAlive = entry(NODE_DEFAULTS.keepAliveTimeout, 'default', "Node's default: no proxy pools connections; clients that honour the 'Keep-Alive: timeout=5' hint (Node's Agent, undici) close first.")
  }

  // requestTimeout, headersTimeout: how long receiving a request may take.
  let request: PlanEntry
  const explicitRequest = optionalMs(options, 'requestTimeout')
  const explicitHeaders = optionalMs(options, 'headersTimeout')
  if (explicitRequest !== null) {
    request = entry(explicitRequest, 'explicit', 'Set explicitly.')
  } else if (explicitHeaders !== null && explicitHeaders > NODE_DEFAULTS.requestTimeout) {
    request = entry(explicitHeaders, 'derived', 'Raised to headersTimeout: the headers are part of the request (Node refuses a headersTimeout above requestTimeout).')
  } else {
    request = entry(NODE_DEFAULTS.requestTimeout, 'default', "Node's default: receiving a whole request (headers and body) may take 5 min. It bounds the receipt only: a connection leaves Node's check once its request has arrived, so a slow handler is never cut by it (the guard answers a late body with a coded 408).")
  }
  let headers: PlanEntry
  if (explicitHeaders !== null) {
    headers = entry(explicitHeaders, 'explicit', 'Set explicitly.')
  } else {
    const v = request.value === 0 ? NODE_DEFAULTS.headersTimeout : Math.min(NODE_DEFAULTS.headersTimeout, request.value)
    headers = entry(v, 'default', "Node's default, min(60 s, requestTimeout): counts from a request's first byte, not idle keep-alive time, so it needs no relation to keepAliveTimeout on Node >= 18.")
  }

  // connectionsCheckingInterval: how late headersTimeout/requestTimeout may fire.
  let interval: PlanEntry
  const explicitInterval = optionalMs(options, 'connectionsCheckingInterval')
  const smallest = Math.min(headers.value || Infinity, request.value || Infinity)
  if (explicitInterval !== null) {
    interval = entry(explicitInterval, 'explicit', 'Set explicitly.')
  } else if (smallest === Infinity) {
    interval = entry(NODE_DEFAULTS.connectionsCheckingInterval, 'default', "Node's default; headersTimeout and requestTimeout are both off, so the check finds nothing.")
  } else {
    const v = Math.max(1, Math.min(NODE_DEFAULTS.connectionsCheckingInterval, Math.floor(smallest / 4)))
    interval = entry(v, 'derived', `A quarter of ${formatMs(smallest)}, so headersTimeout/requestTimeout fire at most 25% late (Node checks them only every interval).`)
  }

  // timeout: socket inactivity, a backstop behind the 504 deadline.
  let socket: PlanEntry
  const explicitSocket = optionalMs(options, 'timeout')
  if (explicitSocket !== null) {
    socket = entry(explicitSocket, 'explicit', 'Set explicitly.')
  } else if (handler.value > 0) {
    // Off, not handler + margin: the deadline already answers every request at its budget, and an
    // inactivity timer that Node re-arms on each request and refreshes on each read measured
    // ~4.6% of a hello world's instructions (valgrind, bench in docs/api.md) for nothing more.
    socket = entry(0, 'derived', 'Off: the 504 deadline answers every request at its budget, so no inactivity timer can destroy a socket under a handler; set it (>= handlerTimeout + margin) for 408/504 answers on sockets that go quiet.')
  } else {
    socket = entry(NODE_DEFAULTS.timeout, 'default', "Node's default (off): with no handler budget, no inactivity limit could be coherent with it.")
  }

  checkRules(up, upName, explicitMargin, { handler, keepAlive, headers, request, interval, socket })

  const plan = {
    upstream: Object.freeze(up),
    handlerTimeout: handler,
    timeout: socket,
    keepAliveTimeout: keepAlive,
    headersTimeout: headers,
    requestTimeout: request,
    connectionsCheckingInterval: interval,
    margin: explicitMargin,
    advice: Object.freeze(advice),
    explain (options?: ExplainOptions): string { return explainPlan(this as TimeoutPlan, options) },
    describe (): PlanDescription { return describePlan(this as TimeoutPlan) }
  }
  Object.defineProperty(plan, 'explain', { enumerable: false })
  Object.defineProperty(plan, 'describe', { enumerable: false })
  return Object.freeze(plan)
}

interface Entries { handler: PlanEntry, keepAlive: PlanEntry, headers: PlanEntry, request: PlanEntry, interval: PlanEntry, socket: PlanEntry }

function checkRules (up: ResolvedUpstream, upName: string, explicitMargin: number | null, e: Entries): void {
  const { handler, keepAlive, headers, request, interval, socket } = e
  if (up.kind === 'proxy' && keepAlive.source === 'explicit') {
    const idle = up.idleTimeout as number
    const min = idle + marginFor(explicitMargin, idle)
    if (keepAlive.value < min) throw new HG_ERR_PLAN_KEEP_ALIVE_TOO_SHORT(keepAlive.value, upName, idle, min)
  }
  if (up.kind === 'l4') {
    const idle = up.idleTimeout as number
    const max = idle - marginFor(explicitMargin, idle) - NODE_DEFAULTS.keepAliveTimeoutBuffer
    if (keepAlive.value === 0 || keepAlive.value > max) throw new HG_ERR_PLAN_KEEP_ALIVE_TOO_LONG(keepAlive.value, upName, idle, max)
  }
  if (handler.value > 0 && up.responseTimeout !== null) {
    const max = up.responseTimeout - marginFor(explicitMargin, up.responseTimeout)
    if (handler.value > max) throw new HG_ERR_PLAN_HANDLER_TOO_LONG(handler.value, upName, up.responseTimeout, max)
  }
  const handlerFloor = handler.value > 0 ? handler.value + marginFor(explicitMargin, handler.value) : 0
  if (socket.value !== 0 && socket.value < handlerFloor) throw new HG_ERR_PLAN_SOCKET_TIMEOUT_TOO_SHORT(socket.value, handler.value, handlerFloor)
  // No rule between requestTimeout and the handler budget (the retired R5): Node's requestTimeout
  // bounds the receipt of a request only (ConnectionsList::Expired, src/node_http_parser.cc, drops
  // a connection whose message is complete), so it never fires under a handler whose body arrived.
  if (request.value !== 0 && headers.value !== 0 && headers.value > request.value) throw new HG_ERR_PLAN_HEADERS_AFTER_REQUEST(headers.value, request.value)
  const smallest = Math.min(headers.value || Infinity, request.value || Infinity)
  if (smallest !== Infinity && (interval.value === 0 || interval.value > smallest / 2)) {
    throw new HG_ERR_PLAN_CHECK_INTERVAL_TOO_COARSE(interval.value, smallest, Math.max(1, Math.floor(smallest / 4)))
  }
}

/**
 * The longest handler budget this plan allows for one route or request (rule R6: the answer must
 * come before the upstream gives up), with the reason; Infinity when the upstream has no response
 * timeout. A longer budget needs no other rule: the socket inactivity timeout follows each
 * request's deadline, and requestTimeout bounds only the receipt of the request.
 */
export function budgetLimit (plan: TimeoutPlan): { readonly maxMs: number, readonly reason: string } {
  const up = plan.upstream
  if (up.responseTimeout === null) return { maxMs: Infinity, reason: '' }
  const maxMs = up.responseTimeout - marginFor(plan.margin, up.responseTimeout)
  return { maxMs, reason: `${up.title} gives up after ${formatMs(up.responseTimeout)} and answers with its own error. Use ${maxMs} ms or less` }
}

function upstreamText (up: ResolvedUpstream): string {
  return up.kind === 'none'
    ? 'none (direct clients)'
    : `${up.title} [${up.name}], ${up.kind === 'l4' ? 'L4 pass-through' : 'L7 proxy'}, idle ${formatMs(up.idleTimeout as number)}` +
      (up.responseTimeout === null ? '' : `, response timeout ${formatMs(up.responseTimeout)}`)
}

/** Splits `text` into lines of at most `width` columns at spaces (a longer word stays whole). */
export function wrapText (text: string, width: number): string[] {
  const lines: string[] = []
  let line = ''
  // A number and its unit ('5 min') stay on one line.
  for (const word of text.replace(/(\d) (ms|s|min|h)\b/g, '$1\u00a0$2').replace(/(>=|<=) (\d)/g, '$1\u00a0$2').split(/[ \t\n]+/)) {
    if (word === '') continue
    if (line === '') line = word
    else if (line.length + 1 + word.length <= width) line += ' ' + word
    else {
      lines.push(line)
      line = word
    }
  }
  if (line !== '' || lines.length === 0) lines.push(line)
  return lines.map((l) => l.replaceAll('\u00a0', ' '))
}

/** Narrowest reason column before explain() puts each reason under its row instead of beside it. */
const MIN_REASON_COLUMNS = 30

function explainPlan (plan: TimeoutPlan, options: ExplainOptions = {}): string {
  const width = options.width ?? EXPLAIN_WIDTH
  if (typeof width !== 'number' || !Number.isInteger(width) || width < 40) throw new HG_ERR_OPT_RANGE('explain({ width })', width, 'an integer >= 40 (columns)')
  const rows = PLAN_KEYS.map((k) => [k, formatMs(plan[k].value), plan[k].source, plan[k].reason] as const)
  const w0 = Math.max(...rows.map((r) => r[0].length), 'setting'.length)
  const w1 = Math.max(...rows.map((r) => r[1].length), 'value'.length)
  const w2 = Math.max(...rows.map((r) => r[2].length), 'source'.length)
  const indent = w0 + w1 + w2 + 6
  const beside = width - indent >= MIN_REASON_COLUMNS
  const pad = beside ? ' '.repeat(indent) : '    '
  const out = wrapText(`hangup-guard timeout plan; upstream: ${upstreamText(plan.upstream)}`, width)
    .map((l, i) => i === 0 ? l : `  ${l}`)
  out.push(beside ? `${'setting'.padEnd(w0)}  ${'value'.padStart(w1)}  ${'source'.padEnd(w2)}  reason` : `${'setting'.padEnd(w0)}  ${'value'.padStart(w1)}  source`)
  for (const [k, v, source, reason] of rows) {
    const head = `${k.padEnd(w0)}  ${v.padStart(w1)}  ${source.padEnd(w2)}`
    const lines = wrapText(reason, width - pad.length)
    if (beside) out.push(`${head}  ${lines[0]}`, ...lines.slice(1).map((l) => pad + l))
    else out.push(head.trimEnd(), ...lines.map((l) => pad + l))
  }
  for (const a of plan.advice) out.push(...wrapText(`advice: ${a}`, width - 2).map((l, i) => i === 0 ? l : `  ${l}`))
  return out.join('\n')
}

function describePlan (plan: TimeoutPlan): PlanDescription {
  const settings = {} as Record<PlanKey, string>
  for (const k of PLAN_KEYS) settings[k] = `${formatMs(plan[k].value)} (${plan[k].source}) ${plan[k].reason}`
  const up = plan.upstream
  return Object.freeze({
    upstream: up.kind === 'none' ? 'none (direct clients)' : `${up.name}: ${upstreamText(up).replace(` [${up.name}]`, '')}`,
    settings: Object.freeze(settings),
    advice: plan.advice
  })
}
