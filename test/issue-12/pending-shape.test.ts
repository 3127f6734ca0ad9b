/**
 * A request's record holds one number that is not a small integer, its start (issue 12): each
 * such field of an object V8 allocates holds a box of its own, allocated with the object. The
 * deadline is computed from the start and the budget (a getter), and moves with extend() and
 * clear() as before, through both doors.
 */
import t from 'tap'
import { type Deadline, deadlineOf } from '../../lib/core/pending'
import { get, QUIET } from '../helpers/net'
import { DOOR_NAMES, guardedDoor } from '../helpers/doors'

interface Seen { numbers: string[], deadline: number, extended: number, remaining: number, cleared: number, clearedRemaining: number, start: number }

for (const name of DOOR_NAMES) {
  t.test(`${name}: the record stores its start and budget, and the deadline follows them`, async (t) => {
    let seen: Seen | null = null
    const { port } = await guardedDoor(t, name, (req, res) => {
      const d = deadlineOf(req) as Deadline & Record<string, unknown>
      const numbers = Object.keys(d).filter((k) => typeof d[k] === 'number').sort()
      const start = d.start as number
      const deadline = d.deadline
      d.extend(1000)
      const extended = d.deadline
      const remaining = d.remaining()
      d.clear()
      seen = { numbers, deadline, extended, remaining, cleared: d.deadline, clearedRemaining: d.remaining(), start }
      res.end('ok')
    }, { ...QUIET, handlerTimeout: '5s' })
    t.equal((await get(port, '/')).status, 200)
    if (seen === null) throw new Error('the handler did not run')
    const s: Seen = seen
    t.same(s.numbers, ['budget', 'start'], 'own number fields: the start and the budget only (no deadline field)')
    t.equal(s.deadline, performance.timeOrigin + s.start + 5000, 'deadline: start + budget')
    t.equal(s.extended, s.deadline + 1000, 'extend() moves it')
    t.ok(s.remaining > 5000 && s.remaining <= 6000, `remaining after extend: ${s.remaining}`)
    t.equal(s.cleared, Infinity, 'clear(): no deadline')
    t.equal(s.clearedRemaining, Infinity)
  })
}
