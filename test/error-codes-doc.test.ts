import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import * as errors from '../lib/core/errors'

t.test('every error code of lib/errors.ts is listed in the error table of docs/api.md, with its class', async (t) => {
  const doc = readFileSync(path.join(__dirname, '..', 'docs', 'api.md'), 'utf8')
  const rows = new Map([...doc.matchAll(/^\| `(HG_ERR_[A-Z0-9_]+)` \| (\w+) \|/gm)].map((m) => [m[1], m[2]]))
  const codes = Object.values(errors).filter((e): e is typeof errors.HG_ERR_CLI_URL => typeof e === 'function' && typeof (e as { code?: unknown }).code === 'string')
  t.ok(codes.length >= 30)
  for (const E of codes) {
    const base = Object.getPrototypeOf(E.prototype).constructor.name
    t.equal(rows.get(E.code), base, `${E.code} is listed as a ${base}`)
  }
  t.same([...rows.keys()].filter((code) => !codes.some((E) => E.code === code)), [], 'no row for a code that does not exist')
})
