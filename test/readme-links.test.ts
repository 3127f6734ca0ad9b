import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'

const ROOT = path.join(__dirname, '..')
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string, files: string[] }

t.test("README's links to the package's own files are pinned to this version and shipped", async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const links = [...readme.matchAll(/\]\((https:\/\/unpkg\.com\/hangup-guard@([^/]+)\/([^)#]+))/g)]
  t.ok(links.length >= 5)
  for (const [, url, version, file] of links) {
    t.equal(version, pkg.version, `${url}: this version`)
    t.ok(pkg.files.some((f) => file === f || file!.startsWith(`${f}/`)), `${file} is in package.json files`)
    t.doesNotThrow(() => readFileSync(path.join(ROOT, file!)), `${file} exists`)
  }
  t.same([...readme.matchAll(/\]\((?!https?:|#)([^)]+)\)/g)].map((m) => m[1]), [], 'no relative link (the registry page cannot resolve them)')
})
