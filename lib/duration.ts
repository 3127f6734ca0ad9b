import { HG_ERR_OPT_DURATION } from './errors'

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 }
const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)\s*$/

/** A duration: milliseconds as a number, or a string with a unit: '250ms', '30s', '2m', '1.5h'. */
export type Duration = number | string

/**
 * Parses a duration option into whole milliseconds (rounded up: a timeout never fires earlier
 * than asked). Throws HG_ERR_OPT_DURATION naming the option.
 */
export function toMs (name: string, value: unknown): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value >= 0) return Math.ceil(value)
    throw new HG_ERR_OPT_DURATION(name, value)
  }
  if (typeof value === 'string') {
    const m = DURATION_RE.exec(value)
    if (m !== null) return Math.ceil(Number(m[1]) * UNIT_MS[m[2] as string]!)
  }
  throw new HG_ERR_OPT_DURATION(name, value)
}

/** Formats milliseconds for people: 65000 → '65 s', 1500 → '1.5 s', 250 → '250 ms', 0 → 'off'. */
export function formatMs (ms: number): string {
  if (ms === 0) return 'off'
  if (ms < 1000) return `${ms} ms`
  if (ms < 120_000 || ms % 60_000 !== 0) return `${+(ms / 1000).toFixed(3)} s`
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`
  return `${ms / 60_000} min`
}
