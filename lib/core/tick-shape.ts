/**
 * Keeps the shape of Node's nextTick objects alive for the life of the process.
 *
 * Node 20 to 24 build each queued tick as an object literal with computed symbol keys
 * (lib/internal/process/task_queues.js). V8 keeps the maps such a literal creates only while some
 * object has them, and the literal's inline caches hold them weakly. A full GC at a moment when no
 * tick is queued collects them; the next tick creates new ones, and the caches of the literal's
 * second and later keys see a map that is not the one they hold: they turn megamorphic, for good.
 * From then on every process.nextTick (about nine per HTTP request) defines its properties
 * through V8's runtime: 85,600 instructions per request instead of 50,500 (bench/cost.js, the
 * Fastify door), 19-20 µs of CPU per request instead of 14-15 under autocannon: up to 3 processes
 * in 12 in some batches on a shared machine, none in others. Guarded processes fell into it more
 * often than plain Fastify ones (3 of 13 against 0 of 6 under callgrind); the guard's timers,
 * which allocate while the server is idle, are the likely reason, not proven. Holding one tick
 * object keeps the maps: the caches stay monomorphic. Node 26 builds ticks with a class, whose
 * map never goes away; the tick held there costs nothing either.
 */
import { executionAsyncResource } from 'node:async_hooks'

/** The tick object held for the life of the process (one at most). */
const held: object[] = []
let scheduled = false

/** Holds the next tick object for the life of the process (the first call does; later ones return). */
export function holdTickShape (): void {
  if (scheduled) return
  scheduled = true
  process.nextTick(holdCurrentTick)
}

function holdCurrentTick (): void {
  // Inside a nextTick callback, the execution resource is the tick object itself.
  held.push(executionAsyncResource())
}
