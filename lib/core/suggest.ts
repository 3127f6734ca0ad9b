/** "Did you mean": the known name closest to a mistyped one, for option and preset errors. */

/** The candidate within two edits of `name` (case-insensitive), or one that starts with it; null when none is close. */
export function closest (name: string, candidates: Iterable<string>): string | null {
  const lower = name.toLowerCase()
  let best: string | null = null
  let bestDistance = 3
  for (const c of candidates) {
    const d = editDistance(c.toLowerCase(), lower)
    if (d < bestDistance) { best = c; bestDistance = d }
  }
  if (best !== null || lower.length < 3) return best
  for (const c of candidates) if (c.toLowerCase().startsWith(lower)) return c
  return null
}

/** `; did you mean 'x'?`, else `; known <what>: a, b, c`. */
export function hint (name: string, candidates: readonly string[], what: string): string {
  const near = closest(name, candidates)
  return near !== null ? `; did you mean '${near}'?` : `; known ${what}: ${candidates.join(', ')}`
}

/** Levenshtein distance. */
function editDistance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = cur
  }
  return prev[b.length]!
}
