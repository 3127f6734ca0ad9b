/**
 * Container limits from cgroups (v2, or v1 controllers), read once at start-up with synchronous
 * reads of a few small files. Nothing here throws: a missing, unreadable or malformed file
 * degrades to `null` with a `reason`, so a figure derived from a limit can say where it came from.
 */
import { readFileSync, statSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'

export type CgroupVersion = 'v2' | 'v1' | 'none'

export interface CpuLimit {
  /** CPU quota in cores (quota / period), or null when there is no limit or it could not be read. */
  readonly limitCores: number | null
  /** The file the limit came from (the tightest one on the path to the root), or 'none'. */
  readonly source: string
  /** Why `limitCores` is null: 'no limit', 'not found', 'unreadable (EACCES)', 'malformed …'. */
  readonly reason?: string
  /** The cpu.stat file that counts throttling for this limit (read again by readThrottling()). */
  readonly statPath: string | null
}

export interface MemoryLimit {
  /** Memory limit in bytes, or null when there is no limit or it could not be read. */
  readonly limitBytes: number | null
  readonly source: string
  readonly reason?: string
}

/** CFS bandwidth counters since the cgroup was created (cumulative: take deltas). */
export interface Throttling {
  /** Enforcement periods in which the cgroup ran. */
  readonly periods: number
  /** Periods in which it used up its quota and was stopped until the next period. */
  readonly throttledPeriods: number
  /** Total time its threads spent throttled, in milliseconds. */
  readonly throttledMs: number
}

export interface ContainerLimits {
  readonly version: CgroupVersion
  readonly cpu: CpuLimit
  readonly memory: MemoryLimit
  /** Counters at the time of reading, or null without a readable cpu.stat. */
  readonly throttling: Throttling | null
}

export interface ReadLimitsOptions {
  /** Where the cgroup file systems are mounted. @default '/sys/fs/cgroup' */
  root?: string
  /** The file that names this process's cgroups. @default '/proc/self/cgroup' */
  procSelfCgroup?: string
}

/** cgroup v1 writes "no limit" as a huge page-aligned number (9223372036854771712 on x86-64). */
const V1_UNLIMITED_BYTES = 2 ** 62

type Parsed = number | null | undefined // number: limit, null: explicitly no limit, undefined: malformed
interface Found { value: number | null, source: string, dir: string | null, reason?: string }

/** Reads the CPU and memory limits of the cgroups this process runs in. Never throws. */
export function readContainerLimits (opts: ReadLimitsOptions = {}): ContainerLimits {
  const root = resolve(opts.root ?? '/sys/fs/cgroup')
  const paths = readOwnPaths(opts.procSelfCgroup ?? '/proc/self/cgroup')
  let version: CgroupVersion = 'none'
  let cpu: Found
  let memory: Found
  if (isFile(join(root, 'cgroup.controllers'))) {
    version = 'v2'
    const dirs = ancestry(root, paths.get('') ?? '/')
    cpu = tightest(dirs, ['cpu.max'], parseCpuMax)
    memory = tightest(dirs, ['memory.max'], parseV2Bytes)
    if (cpu.dir === null) cpu.dir = dirs[0]!
  } else {
    const cpuRoot = controllerRoot(root, paths, 'cpu', ['cpu,cpuacct', 'cpuacct,cpu', 'cpu'])
    const memRoot = controllerRoot(root, paths, 'memory', ['memory'])
    if (cpuRoot === null && memRoot === null) {
      const reason = `no cgroup file system at ${root}`
      const none = { limitCores: null, source: 'none', reason, statPath: null }
      return { version, cpu: none, memory: { limitBytes: null, source: 'none', reason }, throttling: null }
    }
    version = 'v1'
    const cpuDirs = cpuRoot === null ? [] : ancestry(cpuRoot.dir, cpuRoot.path)
    cpu = tightest(cpuDirs, ['cpu.cfs_quota_us', 'cpu.cfs_period_us'], parseV1Quota)
    memory = tightest(memRoot === null ? [] : ancestry(memRoot.dir, memRoot.path), ['memory.limit_in_bytes'], parseV1Bytes)
    if (cpu.dir === null && cpuDirs.length > 0) cpu.dir = cpuDirs[0]!
  }
  const limits = {
    version,
    cpu: { limitCores: cpu.value, source: cpu.source, ...why(cpu), statPath: cpu.dir === null ? null : join(cpu.dir, 'cpu.stat') },
    memory: { limitBytes: memory.value, source: memory.source, ...why(memory) }
  }
  return { ...limits, throttling: readThrottling(limits) }
}

/** Reads the throttling counters again (cheap: one small file), for deltas. Null when unreadable. */
export function readThrottling (limits: Pick<ContainerLimits, 'version' | 'cpu'>): Throttling | null {
  if (limits.cpu.statPath === null) return null
  const v1 = limits.version === 'v1'
  const text = readText(limits.cpu.statPath)
  if (typeof text !== 'string') return null
  const fields = new Map<string, number>()
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/)
    if (key !== undefined && value !== undefined && /^\d+$/.test(value)) fields.set(key, Number(value))
  }
  const periods = fields.get('nr_periods')
  const throttledPeriods = fields.get('nr_throttled')
  const throttled = v1 ? fields.get('throttled_time') : fields.get('throttled_usec')
  if (periods === undefined || throttledPeriods === undefined || throttled === undefined) return null
  return { periods, throttledPeriods, throttledMs: v1 ? throttled / 1e6 : throttled / 1e3 }
}

/** Maps controller list ('' for v2, 'cpu,cpuacct', 'memory', …) to the cgroup path of this process. */
function readOwnPaths (file: string): Map<string, string> {
  const paths = new Map<string, string>()
  const text = readText(file)
  if (typeof text !== 'string') return paths
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line.trim())
    if (m !== null) paths.set(m[1]!, m[2]!)
  }
  return paths
}

function controllerRoot (root: string, paths: Map<string, string>, controller: string, names: string[]): { dir: string, path: string } | null {
  let path = '/'
  let listed: string | undefined
  for (const [list, p] of paths) {
    if (list.split(',').includes(controller)) { path = p; listed = list }
  }
  for (const name of listed === undefined ? names : [listed, ...names]) {
    const dir = join(root, name)
    if (isDir(dir)) return { dir, path }
  }
  return null
}

/**
 * The folders from this process's cgroup up to the controller root. A limit set on an ancestor
 * binds too (a Kubernetes pod limit, a systemd slice). When the folder is not mounted (common in
 * containers, where /proc/self/cgroup shows the host path), the controller root is the cgroup.
 */
function ancestry (root: string, path: string): string[] {
  const leaf = join(root, path)
  if (!leaf.startsWith(root) || !isDir(leaf)) return [root]
  const dirs = [leaf]
  for (let dir = leaf; dir !== root && dir.length > root.length;) {
    dir = dirname(dir)
    dirs.push(dir)
  }
  return dirs
}

function tightest (dirs: string[], files: string[], parse: (texts: string[]) => Parsed): Found {
  let best: Found | null = null
  let problem: string | undefined
  let sawNoLimit = false
  for (const dir of dirs) {
    const texts: string[] = []
    for (const file of files) {
      const text = readText(join(dir, file))
      if (typeof text !== 'string') {
        if (text.code !== 'ENOENT') problem ??= `unreadable (${text.code}): ${join(dir, file)}`
        break
      }
      texts.push(text.trim())
    }
    if (texts.length < files.length) continue
    const value = parse(texts)
    const source = join(dir, files[0]!)
    if (value === undefined) problem ??= `malformed ${source}: ${JSON.stringify(texts.join(' ').slice(0, 60))}`
    else if (value === null) sawNoLimit = true
    else if (best === null || value < best.value!) best = { value, source, dir }
  }
  if (best !== null) return best
  const reason = problem ?? (sawNoLimit ? 'no limit' : dirs.length === 0 ? 'controller not mounted' : `not found: ${files[0]} under ${dirs[0]}`)
  return { value: null, source: dirs.length > 0 ? join(dirs[0]!, files[0]!) : 'none', dir: null, reason }
}

function why (found: Found): { reason?: string } {
  return found.reason === undefined ? {} : { reason: found.reason }
}

function parseCpuMax ([text]: string[]): Parsed {
  const m = /^(max|\d+)\s+(\d+)$/.exec(text!)
  if (m === null || m[2] === '0') return undefined
  return m[1] === 'max' ? null : Number(m[1]) / Number(m[2])
}

function parseV1Quota ([quota, period]: string[]): Parsed {
  if (quota === '-1') return null
  if (!/^\d+$/.test(quota!) || !/^\d+$/.test(period!) || period === '0') return undefined
  return Number(quota) / Number(period)
}

function parseV2Bytes ([text]: string[]): Parsed {
  if (text === 'max') return null
  return /^\d+$/.test(text!) ? Number(text) : undefined
}

function parseV1Bytes ([text]: string[]): Parsed {
  if (!/^\d+$/.test(text!)) return undefined
  const bytes = Number(text)
  return bytes >= V1_UNLIMITED_BYTES ? null : bytes
}

function readText (file: string): string | NodeJS.ErrnoException {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    return err as NodeJS.ErrnoException
  }
}

function isFile (path: string): boolean {
  try {
    return statSync(path, { throwIfNoEntry: false })?.isFile() === true
  } catch {
    return false // ENOTDIR, EACCES: not usable either way
  }
}

function isDir (path: string): boolean {
  try {
    return statSync(path, { throwIfNoEntry: false })?.isDirectory() === true
  } catch {
    return false
  }
}
