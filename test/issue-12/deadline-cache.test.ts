/**
 * The deadline scheduler keeps the list it used last, so requests that share a budget skip the
 * Map lookup (issue 12). A list the timer dropped (found empty) must never be used again.
 */
import t from 'tap'
import { performance } from 'node:perf_hooks'
import { schedule, unschedule, deadlineSchedulerState, type DeadlineEntry, type DeadlineOwner } from '../../lib/core/deadline'
import { until } from '../helpers/net'

function entry (budget: number, owner: DeadlineOwner): DeadlineEntry {
  return { at: performance.now() + budget, budget, prev: null, next: null, list: null, owner }
}

t.test('a budget whose list the timer dropped gets a new list, and its deadline fires', async (t) => {
  const fired: DeadlineEntry[] = []
  const owner: DeadlineOwner = { expire: (e) => { fired.push(e) } }
  const first = entry(30, owner)
  schedule(first)
  unschedule(first) // settled before its deadline: the timer stays armed and finds the list empty
  await until(() => !deadlineSchedulerState().armed) // the timer fired (at the 30 ms deadline) and dropped the empty list
  t.equal(deadlineSchedulerState().lists, 0, 'the empty list was dropped')
  const second = entry(30, owner)
  schedule(second)
  t.equal(deadlineSchedulerState().scheduled, 1, 'scheduled in a list the timer sees')
  await until(() => fired.length > 0)
  t.same(fired, [second], 'its deadline fired')
})

t.test('entries with different budgets each go to their own list', async (t) => {
  const fired: number[] = []
  const owner: DeadlineOwner = { expire: (e) => { fired.push(e.budget) } }
  const a = entry(40, owner)
  const b = entry(20, owner)
  const c = entry(40, owner)
  schedule(a)
  schedule(b)
  schedule(c)
  t.equal(deadlineSchedulerState().scheduled, 3)
  await until(() => fired.length === 3)
  t.same(fired, [20, 40, 40], 'in deadline order')
})

t.test('after a stall, the spent deadlines of every list are answered oldest first', async (t) => {
  // The timer fires late (the loop was blocked past every deadline): one firing finds spent
  // entries in several lists, and answers them in deadline order, not list by list.
  const fired: string[] = []
  const owner: DeadlineOwner = { expire: (e) => { fired.push(`${e.budget}:${names.get(e)}`) } }
  const names = new Map<DeadlineEntry, string>()
  const add = (name: string, budget: number): void => {
    const e = entry(budget, owner)
    names.set(e, name)
    schedule(e)
  }
  add('a', 40)
  add('b', 20)
  add('c', 40)
  add('d', 30)
  const until60 = performance.now() + 60
  // A 60 ms stall: all four deadlines pass before the timer runs.
  while (performance.now() < until60) { /* blocked */ }
  await until(() => fired.length === 4)
  t.same(fired, ['20:b', '30:d', '40:a', '40:c'], 'oldest deadline first across lists; one budget in arrival order')
  t.equal(deadlineSchedulerState().scheduled, 0)
})
