import t from 'tap'
import { fork } from 'node:child_process'
import { once } from 'node:events'
t.test('probe', async (t) => {
  const t0 = Date.now()
  const c = fork(require.resolve('./fixtures/drain/probe.js'))
  const [code] = await once(c, 'exit')
  console.log('fork total', Date.now() - t0)
  t.equal(code, 0)
})
