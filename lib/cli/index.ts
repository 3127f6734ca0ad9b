#!/usr/bin/env node
/**
 * The `hangup-guard` command: `plan` (the timeouts for what stands in front of the server, with
 * snippets to paste) and `probe <url>` (a running server's timeouts measured from outside).
 *
 * Exit statuses (EXIT): 0 done, nothing at risk; 1 the probe found hang-up risks; 2 bad usage or
 * options (a coded error); 3 the probe could not measure (no connection, no HTTP answer).
 * `--json` prints one JSON document on stdout, errors included ({ error: { code, message } }).
 */
import { parseArgs } from 'node:util'
import { HG_ERR_CLI_USAGE, HG_ERR_OPT_RANGE } from '../core/errors'
import { runPlan, formatPlan, type PlanCommandInput } from './plan'
import { probe, PROBE_MAX_WAIT_MS, PROBE_CONNECTIONS, type ProbeResult, type ProbeProgress } from './probe'
import { PRESET_NAMES, type PresetName } from '../core/presets'
import { toMs, formatMs } from '../core/duration'
import { EXPLAIN_WIDTH, wrapText } from '../core/plan'

export const EXIT = Object.freeze({ OK: 0, RISKS: 1, USAGE: 2, UNREACHABLE: 3 })

export interface CliIo {
  stdout: (text: string) => void
  stderr: (text: string) => void
  /** Columns of the terminal, when stdout is one. */
  columns?: number
}

const MAIN_HELP = `Usage: hangup-guard <command> [options]

Commands:
  plan            the server timeouts for what stands in front of it, with reasons and snippets
                  for node:http, Fastify and Kubernetes
  probe <url>     measure a running server's timeouts from outside and report hang-up risks

Options:
  -h, --help      help (also after a command: hangup-guard plan --help)
  -v, --version   the package version

Exit statuses: 0 done and nothing at risk, 1 probe found risks, 2 bad usage or options,
3 probe could not measure. Errors carry a stable code (docs/api.md#error-codes).
`

const PLAN_HELP = `Usage: hangup-guard plan [options]

Prints the timeout plan (each value with its source and reason) and settings to paste: node:http,
the fastify() factory options (fastifyServerOptions), and Kubernetes probes, preStop and
terminationGracePeriodSeconds.

Options (durations: 30s, 500ms, 2m, or milliseconds):
  --upstream <name>                 preset in front of the server: ${PRESET_NAMES.join(', ')},
                                    or none (default); with --upstream-idle-timeout, a name
  --upstream-idle-timeout <d>       describe the upstream by hand: its idle timeout
  --upstream-response-timeout <d>   ...how long it waits for a response
  --upstream-kind <proxy|l4>        ...L7 proxy (default) or L4 pass-through
  --handler-timeout <d|off>         handler budget (504 after it)
  --keep-alive-timeout <d>          explicit settings, checked against the rules
  --headers-timeout <d>
  --request-timeout <d>
  --timeout <d>                     socket inactivity (server.timeout)
  --connections-checking-interval <d>
  --margin <d>
  --drain-delay <d>                 serving with Connection: close after SIGTERM (default 5s)
  --drain-timeout <d>               drain hard deadline (default 30s)
  --pre-stop <d>                    a preStop sleep you keep (default none)
  --port <n>                        container port in the probes (default 3000)
  --width <n>                       columns of the table (default: the terminal's, at most ${EXPLAIN_WIDTH})
  --json                            the plan and snippets as JSON
  -h, --help

Example: npx hangup-guard plan --upstream aws-alb --handler-timeout 30s
`

const PROBE_HELP = `Usage: hangup-guard probe <url> [options]

Measures a running server from outside, on the URL given only (GET requests, at most
${PROBE_CONNECTIONS} connections at once):
  - idle close: how long an idle keep-alive connection stays open after a response. On Node
    that is keepAliveTimeout + its keep-alive buffer (~1 s); reported as measured, with
    keepAliveTimeout estimated as that minus 1 s;
  - the Keep-Alive: timeout= hint it advertises;
  - headers and request timeouts, by sending the headers, then a body, one byte at a time.
Each measure waits at most --max-wait; past it the result is a lower bound ("longer than 20 s").
It then compares the figures with --upstream and lists the hang-up risks.

Options:
  --upstream <name>   what stands in front of the server: ${PRESET_NAMES.join(', ')},
                      or none (default)
  --max-wait <d>      cap per measure (default ${formatMs(PROBE_MAX_WAIT_MS)}); raise it above the upstream's
                      idle timeout to settle the idle-close comparison
  --insecure          https: accept a certificate that does not verify
  --json              the measures and risks as JSON
  --quiet             no progress on stderr
  -h, --help

Point it at a cheap route without side effects, e.g. http://127.0.0.1:3000/livez.
Exit statuses: 0 no risk found, 1 risks found, 2 bad usage, 3 could not measure.
`

function version (): string {
  // dist/cli/index.js and lib/cli/index.ts both sit two levels below the package root.
  return (require('../../package.json') as { version: string }).version
}

interface Failure { code: string, message: string }

function fail (io: CliIo, json: boolean, err: unknown, status: number): number {
  const e = err as Partial<Failure> & Error
  const failure = { code: typeof e?.code === 'string' ? e.code : 'ERR_UNEXPECTED', message: e?.message ?? String(err) }
  if (json) io.stdout(JSON.stringify({ error: failure }, null, 2) + '\n')
  else io.stderr(`hangup-guard: ${failure.message} [${failure.code}]\n`)
  return status
}

function statusFor (err: unknown): number {
  const code = (err as { code?: unknown })?.code
  if (code === 'HG_ERR_PROBE_CONNECT') return EXIT.UNREACHABLE
  if (typeof code === 'string' && code.startsWith('HG_ERR_')) return EXIT.USAGE
  return EXIT.UNREACHABLE
}

type Values = Record<string, string | boolean | undefined>

function parse (command: string, args: string[], options: Record<string, { type: 'string' | 'boolean', short?: string }>): { values: Values, positionals: string[] } {
  try {
    const r = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } }, allowPositionals: true, strict: true })
    return { values: r.values as Values, positionals: r.positionals }
  } catch (err) {
    throw new HG_ERR_CLI_USAGE((err as Error).message.replace(/\. To specify a positional.*$/s, ''), `hangup-guard ${command}`)
  }
}

const PLAN_FLAGS = {
  upstream: { type: 'string' },
  'upstream-idle-timeout': { type: 'string' },
  'upstream-response-timeout': { type: 'string' },
  'upstream-kind': { type: 'string' },
  'handler-timeout': { type: 'string' },
  'keep-alive-timeout': { type: 'string' },
  'headers-timeout': { type: 'string' },
  'request-timeout': { type: 'string' },
  timeout: { type: 'string' },
  'connections-checking-interval': { type: 'string' },
  margin: { type: 'string' },
  'drain-delay': { type: 'string' },
  'drain-timeout': { type: 'string' },
  'pre-stop': { type: 'string' },
  port: { type: 'string' },
  width: { type: 'string' }
} as const

const camel = (s: string): string => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())

function planCommand (args: string[], io: CliIo): number {
  const { values, positionals } = parse('plan', args, PLAN_FLAGS)
  if (values.help === true) {
    io.stdout(PLAN_HELP)
    return EXIT.OK
  }
  const json = values.json === true
  try {
    if (positionals.length > 0) throw new HG_ERR_CLI_USAGE(`plan takes no argument, got '${positionals[0]}'`, 'hangup-guard plan')
    const input: Record<string, string> = {}
    for (const k of Object.keys(PLAN_FLAGS)) if (typeof values[k] === 'string' && k !== 'width') input[camel(k)] = values[k] as string
    const result = runPlan(input as PlanCommandInput)
    if (json) {
      io.stdout(JSON.stringify({ options: result.options, plan: result.plan, drain: result.drain, snippets: result.snippets }, null, 2) + '\n')
    } else {
      const width = values.width === undefined ? Math.min(EXPLAIN_WIDTH, Math.max(60, io.columns ?? EXPLAIN_WIDTH)) : Number(values.width)
      if (!Number.isInteger(width) || width < 40) throw new HG_ERR_OPT_RANGE('width', values.width, 'an integer >= 40 (columns)')
      io.stdout(formatPlan(result, width))
    }
    return EXIT.OK
  } catch (err) {
    return fail(io, json, err, statusFor(err))
  }
}

const PROGRESS_NAMES: Record<ProbeProgress['measure'], string> = {
  response: 'first response',
  idleClose: 'idle close (holding an idle connection)',
  headersTimeout: 'headers timeout (headers sent one byte at a time)',
  requestTimeout: 'request timeout (body sent one byte at a time)'
}

function formatProbe (r: ProbeResult): string {
  const m = (x: { ms: number | null, lowerBound: boolean, end: string, statuses: readonly number[] }): string => {
    if (x.ms === null) return 'not applicable (the server closes after each response)'
    if (x.lowerBound) return `longer than ${formatMs(x.ms)} (lower bound: the cap passed)`
    const answer = x.statuses.length === 0 ? 'no HTTP answer' : `answered ${x.statuses.join(', ')}`
    return `${formatMs(x.ms)} (${x.end}; ${answer})`
  }
  const up = r.upstream.kind === 'none' ? 'none (direct clients)' : `${r.upstream.name} (${r.upstream.kind}, idle ${formatMs(r.upstream.idleTimeoutMs ?? 0)})`
  const lines = [
    `hangup-guard probe ${r.url}`,
    `upstream: ${up}; at most ${formatMs(r.maxWaitMs)} per measure`,
    `response            ${r.response.status} in ${formatMs(r.response.ms)}; ${r.response.keepAlive ? 'keep-alive' : 'Connection: close'}; Keep-Alive hint: ${r.response.keepAliveHintSeconds === null ? 'none' : `timeout=${r.response.keepAliveHintSeconds}`}`,
    `idle close          ${m(r.idleClose)}`
  ]
  if (r.idleClose.keepAliveTimeoutEstimateMs !== null) lines.push(`                    = keepAliveTimeout + Node's ~1 s buffer (on Node: keepAliveTimeout ~${formatMs(r.idleClose.keepAliveTimeoutEstimateMs)})`)
  lines.push(`headers timeout     ${m(r.headersTimeout)}`, `request timeout     ${m(r.requestTimeout)}`, '')
  const wrap = (text: string): string[] => wrapText(text, EXPLAIN_WIDTH - 2).map((l, i) => i === 0 ? l : `  ${l}`)
  if (r.risks.length === 0) lines.push('risks: none found')
  else for (const risk of r.risks) lines.push(...wrap(`RISK ${risk.id}: ${risk.message}`))
  for (const n of r.notes) lines.push(...wrap(`note: ${n}`))
  return lines.join('\n') + '\n'
}

async function probeCommand (args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse('probe', args, { upstream: { type: 'string' }, 'max-wait': { type: 'string' }, insecure: { type: 'boolean' }, quiet: { type: 'boolean' } })
  if (values.help === true) {
    io.stdout(PROBE_HELP)
    return EXIT.OK
  }
  const json = values.json === true
  try {
    if (positionals.length !== 1) throw new HG_ERR_CLI_USAGE(positionals.length === 0 ? 'probe needs a URL' : `probe takes one URL, got ${positionals.length}`, 'hangup-guard probe')
    const upstream = (values.upstream ?? 'none') as PresetName | 'none'
    if (upstream !== 'none' && !(PRESET_NAMES as readonly string[]).includes(upstream)) throw new HG_ERR_CLI_USAGE(`unknown --upstream '${upstream}'; known: ${PRESET_NAMES.join(', ')}, none`, 'hangup-guard probe')
    const maxWait = values['max-wait'] === undefined ? PROBE_MAX_WAIT_MS : toMs('max-wait', /^\d+$/.test(values['max-wait'] as string) ? Number(values['max-wait']) : values['max-wait'])
    if (maxWait < 100) throw new HG_ERR_OPT_RANGE('max-wait', values['max-wait'], 'at least 100 ms')
    const quiet = values.quiet === true
    const result = await probe(positionals[0] as string, {
      upstream,
      maxWaitMs: maxWait,
      insecure: values.insecure === true,
      onProgress: quiet
        ? undefined
        : (p) => {
            if (p.state === 'start') io.stderr(`probe: ${PROGRESS_NAMES[p.measure]}: up to ${formatMs(p.maxWaitMs)}\n`)
            else if (p.state === 'waiting' && p.elapsedMs % 5000 < 1000) io.stderr(`probe: ${PROGRESS_NAMES[p.measure]}: still waiting, ${Math.round(p.elapsedMs / 1000)} s\n`)
          }
    })
    io.stdout(json ? JSON.stringify(result, null, 2) + '\n' : formatProbe(result))
    return result.risks.length === 0 ? EXIT.OK : EXIT.RISKS
  } catch (err) {
    return fail(io, json, err, statusFor(err))
  }
}

/** Runs the command line `args` (without `node` and the script); resolves to the exit status. */
export async function main (args: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = args
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    io.stdout(MAIN_HELP)
    return command === undefined ? EXIT.USAGE : EXIT.OK
  }
  if (command === '-v' || command === '--version') {
    io.stdout(`${version()}\n`)
    return EXIT.OK
  }
  try {
    if (command === 'plan') return planCommand(rest, io)
    if (command === 'probe') return await probeCommand(rest, io)
    throw new HG_ERR_CLI_USAGE(`unknown command '${command}' (commands: plan, probe)`, 'hangup-guard')
  } catch (err) {
    return fail(io, rest.includes('--json'), err, statusFor(err))
  }
}

if (require.main === module) {
  main(process.argv.slice(2), {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    columns: process.stdout.isTTY ? process.stdout.columns : undefined
  }).then((status) => { process.exitCode = status }, (err: unknown) => {
    process.stderr.write(`hangup-guard: ${(err as Error)?.stack ?? String(err)}\n`)
    process.exitCode = EXIT.UNREACHABLE
  })
}
