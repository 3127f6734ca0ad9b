/**
 * The fenced code blocks of README.md and docs/*.md, with the annotation on the line before each:
 *   <!-- example: <id> -->          runs in test/docs-examples.test.ts (expectations keyed by id)
 *   <!-- output: <what> -->         what a program prints or a server answers (not code)
 *   <!-- not-runnable: <why> -->    a signature, a shell command, YAML or nginx configuration
 */
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'

export const ROOT = path.join(__dirname, '..', '..')

export interface Block {
  /** 'README.md:40' (the line of the opening fence). */
  readonly where: string
  readonly file: string
  readonly lang: string
  readonly code: string
  readonly kind: 'example' | 'output' | 'not-runnable' | null
  /** The example id, or the reason / description. */
  readonly label: string
}

export function docFiles (): string[] {
  return ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)]
}

const ANNOTATION = /^<!-- (example|output|not-runnable): (.+?) -->$/

export function blocksOf (file: string): Block[] {
  const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i]!)
    if (open === null) continue
    const fence = open[1]!
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && !lines[i]!.startsWith(fence); i++) body.push(lines[i]!)
    const note = ANNOTATION.exec(lines[start - 1] ?? '')
    blocks.push({
      where: `${file}:${start + 1}`,
      file,
      lang: open[2] ?? '',
      code: body.join('\n') + '\n',
      kind: note === null ? null : note[1] as Block['kind'],
      label: note === null ? '' : note[2]!
    })
  }
  return blocks
}

export function allBlocks (): Block[] {
  return docFiles().flatMap(blocksOf)
}
