import { HG_ERR_OPT_DURATION, HG_ERR_OPT_RANGE } from './errors'

/** The longest delay a Node timer takes (2^31 - 1 ms, about 24.8 days); longer ones fire after 1 ms. */
export const MAX_DURATION_MS = 2_147_483_647

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 }
const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)\s*$/

/** A duration: milliseconds as a number, or a string with a unit: '250ms', '30s', '2m', '1.5h'. */
export type Duration = number | string

/**
 * Parses a duration option into whole milliseconds (rounded up: a timeout never fires earlier
 * than asked). Throws HG_ERR_OPT_DURATION naming the option.
 */
export function toMs (name: string, value: unknown): number {
  let ms: number | null = null
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value >= 0) ms = Math.ceil(value)
  } else if (typeof value === 'string' && value.length <= 64) {
    const m = DURATION_RE.exec(value)
    if (m !== null) ms = Math.ceil(Number(m[1]) * UNIT_MS[m[2] as string]!)
  }
  if (ms === null) throw new HG_ERR_OPT_DURATION(name, value)
  if (ms > MAX_DURATION_MS) throw new HG_ERR_OPT_RANGE(name, value, `at most ${MAX_DURATION_MS} ms (about 24.8 days, Node's longest timer)`)
  return ms
}

/** Formats milliseconds for people: 65000 → '65 s', 1500 → '1.5 s', 250 → '250 ms', 0 → 'off'. */
export function formatMs (ms: number): string {
  if (ms === 0) return 'off'
  if (ms < 1000) return `${ms} ms`
  if (ms < 120_000 || ms % 60_000 !== 0) return `${+(ms / 1000).toFixed(3)} s`
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`
  return `${ms / 60_000} min`
}
