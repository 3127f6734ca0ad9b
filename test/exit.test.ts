import t from 'tap'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'

t.test('a process with a guarded server exits by itself once its server is closed, without close() on the guard', async (t) => {
  const child = fork(join(__dirname, 'fixtures', 'exit-without-close.ts'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const messages: unknown[] = []
  child.on('message', (m) => messages.push(m))
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const [code, signal] = await once(child, 'exit') as [number | null, string | null]
  clearTimeout(killer)
  t.same(messages, [{ statuses: [200, 504, 200, 504] }])
  t.equal(signal, null, 'not killed: it exited on its own')
  t.equal(code, 0)
})
