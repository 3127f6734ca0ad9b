import t from 'tap'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { readContainerLimits, readThrottling, type ContainerLimits } from '../lib/core/cgroup'
import { enter, makeLimitedCgroup, removeCgroup } from './fixtures/limited-cgroup'

const FIXTURES = join(__dirname, 'fixtures', 'cgroup')

function fixture (name: string): ContainerLimits {
  return readContainerLimits({ root: join(FIXTURES, name, 'root'), procSelfCgroup: join(FIXTURES, name, 'cgroup') })
}

t.test('cgroup v2 in a Kubernetes container: quota / period in cores, memory.max in bytes', async t => {
  const limits = fixture('v2')
  const dir = join(FIXTURES, 'v2', 'root', 'kubepods', 'pod1', 'ctr')
  t.equal(limits.version, 'v2')
  t.same(limits.cpu, { limitCores: 0.5, source: join(dir, 'cpu.max'), statPath: join(dir, 'cpu.stat') })
  t.same(limits.memory, { limitBytes: 536870912, source: join(dir, 'memory.max') })
  t.same(limits.throttling, { periods: 120, throttledPeriods: 30, throttledMs: 1500 })
})

t.test('cgroup v2 "max" means no limit, with the reason said', async t => {
  const limits = fixture('v2-max')
  t.equal(limits.version, 'v2')
  t.equal(limits.cpu.limitCores, null)
  t.equal(limits.cpu.reason, 'no limit')
  t.equal(limits.memory.limitBytes, null)
  t.equal(limits.memory.reason, 'no limit')
  t.same(limits.throttling, { periods: 0, throttledPeriods: 0, throttledMs: 0 })
})

t.test('a tighter limit on an ancestor (pod slice) binds, and throttling is read where it binds', async t => {
  const limits = fixture('v2-nested')
  const pod = join(FIXTURES, 'v2-nested', 'root', 'kubepods.slice', 'pod.slice')
  t.equal(limits.cpu.limitCores, 1.5)
  t.equal(limits.cpu.source, join(pod, 'cpu.max'))
  t.equal(limits.memory.limitBytes, 268435456, 'the pod limit (256 MiB) is below the container one (1 GiB)')
  t.same(limits.throttling, { periods: 50, throttledPeriods: 5, throttledMs: 250 })
})

t.test('when the own cgroup folder is not mounted (container namespace), the root is the cgroup', async t => {
  const limits = fixture('v2-unmounted')
  t.equal(limits.cpu.limitCores, 2)
  t.equal(limits.memory.limitBytes, 2147483648)
  t.equal(limits.cpu.source, join(FIXTURES, 'v2-unmounted', 'root', 'cpu.max'))
  t.same(limits.throttling, { periods: 10, throttledPeriods: 2, throttledMs: 40 })
})

t.test('cgroup v1: cfs quota over period, throttled_time in ns, the huge "unlimited" root value', async t => {
  const limits = fixture('v1')
  t.equal(limits.version, 'v1')
  t.equal(limits.cpu.limitCores, 1.5)
  t.match(limits.cpu.source, /cpu,cpuacct\/docker\/abc\/cpu\.cfs_quota_us$/)
  t.equal(limits.memory.limitBytes, 268435456)
  t.same(limits.throttling, { periods: 200, throttledPeriods: 50, throttledMs: 3000 })
})

t.test('cgroup v1 hybrid without limits (this kind of host): no limit, zero throttling', async t => {
  const limits = fixture('v1-hybrid')
  t.equal(limits.version, 'v1', 'a v2 hierarchy under unified/ does not make the host v2')
  t.equal(limits.cpu.limitCores, null)
  t.equal(limits.cpu.reason, 'no limit')
  t.equal(limits.memory.limitBytes, null, '9223372036854771712 is no limit')
  t.match(limits.memory.source, /process_api\/b9149\/memory\.limit_in_bytes$/)
  t.same(limits.throttling, { periods: 0, throttledPeriods: 0, throttledMs: 0 })
})

t.test('no cgroup file system: version none, null limits with a reason', async t => {
  const absent = readContainerLimits({ root: join(FIXTURES, 'absent'), procSelfCgroup: join(FIXTURES, 'absent') })
  const aFile = readContainerLimits({ root: join(FIXTURES, 'none', 'root', 'README'), procSelfCgroup: join(FIXTURES, 'none', 'cgroup') })
  for (const limits of [fixture('none'), absent, aFile]) {
    t.equal(limits.version, 'none')
    t.equal(limits.cpu.limitCores, null)
    t.match(limits.cpu.reason, /^no cgroup file system at /)
    t.equal(limits.memory.limitBytes, null)
    t.equal(limits.throttling, null)
    t.equal(readThrottling(limits), null)
  }
})

t.test('malformed files degrade to null with the content in the reason, never throw', async t => {
  const limits = fixture('malformed')
  t.equal(limits.cpu.limitCores, null)
  t.match(limits.cpu.reason, /^malformed .*cpu\.max: "banana 100000"$/)
  t.equal(limits.memory.limitBytes, null)
  t.match(limits.memory.reason, /^malformed .*memory\.max: "12abc"$/)
  t.equal(limits.throttling, null, 'cpu.stat without numbers')
  const v1 = fixture('v1-malformed')
  t.match(v1.cpu.reason, /^malformed .*cpu\.cfs_quota_us: "20000 0"$/, 'a zero period is malformed')
  t.match(v1.memory.reason, /^malformed .*memory\.limit_in_bytes: "-5"$/)
  t.equal(v1.throttling, null, 'no cpu.stat at all')
})

t.test('unreadable files say why (the error code)', async t => {
  const limits = fixture('unreadable')
  t.equal(limits.cpu.limitCores, null)
  t.match(limits.cpu.reason, /^unreadable \(EISDIR\): .*cpu\.max$/)
  t.match(limits.memory.reason, /^unreadable \(EISDIR\): .*memory\.max$/)
})

t.test('a v1 controller that is not mounted reads as such, the other one still counts', async t => {
  const limits = fixture('v1-cpu-only')
  t.equal(limits.version, 'v1')
  t.equal(limits.cpu.limitCores, 0.5)
  t.equal(limits.memory.limitBytes, null)
  t.equal(limits.memory.reason, 'controller not mounted')
  t.equal(limits.memory.source, 'none')
  const unmounted = readContainerLimits({ root: join(FIXTURES, 'v1-hybrid', 'root', 'memory'), procSelfCgroup: join(FIXTURES, 'v1', 'cgroup') })
  t.equal(unmounted.version, 'none', 'neither cpu/ nor memory/ under that root')
})

t.test('a v2 cgroup without cpu.max anywhere reads as not found', async t => {
  const limits = readContainerLimits({ root: join(FIXTURES, 'v2', 'root', 'kubepods', 'pod1'), procSelfCgroup: join(FIXTURES, 'absent') })
  t.equal(limits.version, 'none', 'no cgroup.controllers there')
  const noCpu = fixture('v2-no-cpu')
  t.equal(noCpu.version, 'v2')
  t.match(noCpu.cpu.reason, /^not found: cpu\.max under /)
  t.equal(noCpu.memory.limitBytes, 1048576)
})

t.test('readThrottling() reads the counters again for deltas', async t => {
  const limits = fixture('v2')
  t.same(readThrottling(limits), limits.throttling)
  t.equal(readThrottling({ ...limits, cpu: { ...limits.cpu, statPath: join(FIXTURES, 'absent', 'cpu.stat') } }), null)
})

// The real kernel: this machine runs cgroup v1 (hybrid) as root, with no limit on its own cgroups.
const ownCgroups = existsSync('/proc/self/cgroup') ? readFileSync('/proc/self/cgroup', 'utf8') : ''
const V1_QUOTA = '/sys/fs/cgroup/cpu/cpu.cfs_quota_us'
const hostSkip = !/^\d+:(cpu|cpu,cpuacct|cpuacct,cpu):\/$/m.test(ownCgroups) || !existsSync(V1_QUOTA)
  ? 'not in the root cgroup of a mounted v1 cpu controller'
  : readFileSync(V1_QUOTA, 'utf8').trim() !== '-1' ? 'the root cpu cgroup has a quota' : false

t.test('this host: the v1 root cpu cgroup without quota reads as no limit', { skip: hostSkip }, async t => {
  const limits = readContainerLimits()
  t.equal(limits.version, 'v1')
  t.equal(limits.cpu.limitCores, null)
  t.equal(limits.cpu.reason, 'no limit')
  t.ok(limits.throttling !== null && limits.throttling.periods >= 0)
  const ownMemory = /^\d+:memory:(.*)$/m.exec(ownCgroups)?.[1]
  const raw = ownMemory === undefined ? '' : readFileSync(join('/sys/fs/cgroup/memory', ownMemory, 'memory.limit_in_bytes'), 'utf8').trim()
  if (raw !== '' && Number(raw) >= 2 ** 62) t.equal(limits.memory.limitBytes, null, `${raw} is no limit`)
})

t.test('a Kubernetes-style CPU limit (0.2 cores) is seen from inside, with throttling', async t => {
  const made = makeLimitedCgroup(0.2)
  if (typeof made === 'string') return t.plan(0, made)
  const child = fork(join(__dirname, 'fixtures', 'cgroup-child.ts'), ['500'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = once(child, 'exit')
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL')
    await exited // rmdir fails with EBUSY while the child is still in the cgroup
    removeCgroup(made)
  })
  t.equal((await once(child, 'message'))[0], 'ready')
  enter(made, child.pid!)
  child.send('go')
  const [limits] = await once(child, 'message') as [ContainerLimits]
  t.equal(limits.cpu.limitCores, 0.2)
  t.equal(limits.cpu.source, join(made.dir, made.version === 'v1' ? 'cpu.cfs_quota_us' : 'cpu.max'))
  t.ok(limits.throttling !== null && limits.throttling.throttledPeriods > 0,
    `throttled in some periods while spinning 500 ms at 0.2 cores: ${JSON.stringify(limits.throttling)}`)
  t.ok(limits.throttling !== null && limits.throttling.throttledMs > 0)
  t.equal((await exited)[0], 0)
})
