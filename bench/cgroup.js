'use strict'
// A real CPU limit for a bench server (cgroup v1 cpu controller, as on this machine and on most
// Kubernetes nodes still on v1): make, remove, and remove on the way out whatever is left.
// The server joins it before it loads any module (bench/lib.js startServer, launch.cgroupDir).
const fs = require('node:fs')
const path = require('node:path')

const CPU_ROOT = '/sys/fs/cgroup/cpu'
const made = new Set()

/** Makes a cgroup limited to quotaUs per periodUs: { dir }, or { reason } why it cannot. */
function makeCgroup (tag, { quotaUs, periodUs }) {
  if (process.platform !== 'linux') return { reason: 'not Linux' }
  if (!fs.existsSync(path.join(CPU_ROOT, 'cpu.cfs_quota_us'))) return { reason: `no cgroup v1 cpu controller at ${CPU_ROOT}` }
  const dir = path.join(CPU_ROOT, `hg-bench-${process.pid}-${tag}`)
  try {
    fs.mkdirSync(dir)
  } catch (err) {
    return { reason: `cannot create ${dir} (${err.code ?? err.message})` }
  }
  made.add(dir)
  try {
    fs.writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(periodUs))
    fs.writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(quotaUs))
  } catch (err) {
    removeCgroup(dir)
    return { reason: `cannot set the quota in ${dir} (${err.code ?? err.message})` }
  }
  return { dir }
}

function sleepSync (ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/**
 * Removes the folder. A process still in it (exiting, or left by an interrupted run; always one we
 * started) is killed by its pid first. Returns false if the folder is still there after ~2 s.
 */
function removeCgroup (dir) {
  for (let i = 0; i < 100; i++) {
    try {
      for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        if (i > 10) process.kill(Number(pid), 'SIGKILL') // give it 200 ms to exit on its own
      }
      fs.rmdirSync(dir)
      made.delete(dir)
      return true
    } catch (err) {
      if (err.code === 'ENOENT') { made.delete(dir); return true }
      if (err.code !== 'EBUSY' && err.code !== 'ESRCH') throw err
      sleepSync(20)
    }
  }
  return false
}

/** Removes every cgroup this process made and has not removed yet (on exit, on an interrupt). */
function removeAllCgroups () {
  for (const dir of [...made]) removeCgroup(dir)
}
process.on('exit', removeAllCgroups)

module.exports = { makeCgroup, removeCgroup, removeAllCgroups, CPU_ROOT }
