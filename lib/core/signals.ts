/**
 * The opt-in signal handler (`handleSignals: true`): the first SIGTERM or SIGINT starts the drain,
 * the next one forces it (hard deadline now). As close-with-grace does, it installs with
 * `process.once` and can be uninstalled; unlike it, it never calls process.exit: the process ends
 * by itself once the server and everything else the application opened are closed.
 *
 * Next to the application's own handlers: Node calls every listener of a signal, so both run. A
 * handler that calls process.exit() ends the drain where it stands; call `await handle.drain()`
 * (the same promise) before exiting, or leave `handleSignals` off and drain from your handler.
 * While any listener is installed, Node no longer ends the process on that signal: ours are
 * removed as soon as the drain settles, so a further signal gets Node's default again.
 */
import type { Server } from 'node:http'
import type { Guard } from './guard'
import { forceDrain, startDrain } from './drain'
import { HG_ERR_OPT_TYPE } from './errors'

/** The signals that start a drain; a second one of either forces it. */
export const DRAIN_SIGNALS = Object.freeze(['SIGTERM', 'SIGINT'] as const)

export interface SignalHandlers {
  /** Removes the listeners still installed. Idempotent. */
  uninstall (): void
}

function add (listener: (signal: NodeJS.Signals) => void): void {
  for (const signal of DRAIN_SIGNALS) process.once(signal, listener)
}

function remove (listener: (signal: NodeJS.Signals) => void): void {
  for (const signal of DRAIN_SIGNALS) process.removeListener(signal, listener)
}

/** Calls `drain()` on the first SIGTERM/SIGINT, `force()` on the next; removes itself when the drain settles. */
export function onDrainSignals (drain: () => Promise<unknown>, force: () => void): SignalHandlers {
  function uninstall (): void {
    remove(onFirst)
    remove(onSecond)
  }
  function onFirst (): void {
    remove(onFirst)
    add(onSecond)
    drain().then(uninstall, (err: unknown) => {
      uninstall()
      // Not swallowed: the shutdown went wrong (an onClose hook threw…), so the exit status says so.
      process.exitCode = 1
      // An error, not a warning: --no-warnings must not hide a failed shutdown.
      console.error('hangup-guard: the drain started by a signal failed:', err)
    })
  }
  function onSecond (): void {
    remove(onSecond)
    force()
  }
  add(onFirst)
  return { uninstall }
}

/** Drains this server's guard (its configured delay and timeout) on SIGTERM/SIGINT. */
export function drainOnSignals (server: Server, guard: Guard): SignalHandlers {
  return onDrainSignals(() => startDrain(server, guard), () => { forceDrain(guard) })
}

/** Reads the `handleSignals` option. @default false */
export function readHandleSignals (value: unknown): boolean {
  if (value === undefined) return false
  if (typeof value !== 'boolean') throw new HG_ERR_OPT_TYPE('handleSignals', value, 'a boolean')
  return value
}
