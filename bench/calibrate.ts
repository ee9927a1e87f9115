/**
 * How fast this machine is right now, for reading the figures of one run against another.
 * The same VM runs JavaScript at very different speeds at different times of day (a
 * cohort self-call took 1.7 µs of CPU one afternoon and 2.6–4.1 µs that evening, on an
 * otherwise idle machine), while the cost of handing a cache line between two cores
 * barely moves. Each of the bench's absolute figures depends on one or the other:
 * a call over shm is mostly JavaScript, a unix socket mostly kernel wake-ups.
 *
 * Two figures, neither using cohort's code:
 * - `jsWorkUs`: one msgpackr pack and unpack of a small fixed object, in µs (the median
 *   of 9 batches of 20,000), the kind of work a call does;
 * - `atomicsRoundTripUs`: a round trip between two threads spinning on `Atomics.load` of
 *   one SharedArrayBuffer (the median of 9 batches of 20,000 round trips, taken as the
 *   batch's mean), the floor under any shared-memory round trip made from JavaScript.
 *   Not measured when the process may use only one CPU (`taskset -c 0`): there the two
 *   spinning threads trade the CPU once per time slice, milliseconds a round trip, and
 *   the figure would say how the scheduler slices, not how fast the machine is. Given up
 *   (null, with the reason) when other work keeps the CPUs so busy that the batches take
 *   more than ATOMICS_BUDGET_MS together, for the same reason.
 *
 * ```ts
 * const speed = await calibrate()      // about a second
 * console.log(describeCalibration(speed))
 * ```
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { Packr } from 'msgpackr'
import { median, nowMs } from './harness.js'

export interface Calibration {
  jsWorkUs: number
  /** null: not measured, `atomicsSkipped` says why (see above). */
  atomicsRoundTripUs: number | null
  atomicsSkipped?: string
}

const BATCHES = 9
const PER_BATCH = 20_000
/** All Atomics batches together; an idle machine needs about 0.1 s. */
const ATOMICS_BUDGET_MS = 10_000
/** One round trip unanswered this long: the echo thread is gone. */
const STALL_MS = 5_000

export async function calibrate (): Promise<Calibration> {
  const jsWorkUs = jsWork()
  if (availableParallelism() < 2) return { jsWorkUs, atomicsRoundTripUs: null, atomicsSkipped: 'this process may use one CPU only' }
  const atomicsRoundTripUs = await atomicsRoundTrip()
  return atomicsRoundTripUs != null
    ? { jsWorkUs, atomicsRoundTripUs }
    : { jsWorkUs, atomicsRoundTripUs, atomicsSkipped: `other work kept the CPUs busy (over ${ATOMICS_BUDGET_MS / 1000} s)` }
}

export function describeCalibration (c: Calibration): string {
  return `machine speed now: ${c.jsWorkUs.toFixed(2)} µs of JavaScript per msgpack round of a small object; ` +
    (c.atomicsRoundTripUs != null
      ? `${c.atomicsRoundTripUs.toFixed(2)} µs per Atomics round trip between two threads (see bench/calibrate.ts)`
      : `no Atomics round trip: ${c.atomicsSkipped ?? 'not measured'} (see bench/calibrate.ts)`)
}

function jsWork (): number {
  const packr = new Packr()
  const value = { fn: 'echo', id: 12345, args: [1.5, 'a string of some length', [1, 2, 3]], ok: true }
  let sink = 0
  const batch = (): number => {
    const t0 = nowMs()
    for (let i = 0; i < PER_BATCH; i++) sink += (packr.unpack(packr.pack(value)) as { id: number }).id
    return (nowMs() - t0) * 1000 / PER_BATCH
  }
  for (let i = 0; i < 3; i++) batch() // warm-up: the JIT settles
  const us = median(Array.from({ length: BATCHES }, batch))
  if (sink === 0) throw new Error('calibration: nothing was unpacked')
  return us
}

/** Slot 0: the main thread's turn number; slot 1: the worker's answer. */
const ECHO_WORKER = `
const { workerData } = require('node:worker_threads')
const words = new Int32Array(workerData)
;(() => {
  for (let turn = 1; ; turn++) {
    let seen
    while ((seen = Atomics.load(words, 0)) !== turn) if (seen < 0) return
    Atomics.store(words, 1, turn)
  }
})()
`

/** The median batch's µs per round trip; null when the batches overran ATOMICS_BUDGET_MS. */
async function atomicsRoundTrip (): Promise<number | null> {
  const memory = new SharedArrayBuffer(256)
  const words = new Int32Array(memory)
  const worker = new Worker(ECHO_WORKER, { eval: true, workerData: memory })
  try {
    await new Promise<void>((resolve, reject) => { worker.once('online', resolve).once('error', reject) })
    let turn = 0
    const deadline = nowMs() + ATOMICS_BUDGET_MS
    const batch = (): number => {
      const t0 = nowMs()
      for (let i = 0; i < PER_BATCH; i++) {
        turn++
        Atomics.store(words, 0, turn)
        // Spin: the worker answers within a µs when it has a CPU, within time slices when
        // other work holds both; unanswered for STALL_MS, it died.
        for (let spins = 1, waitingSince = 0; Atomics.load(words, 1) !== turn; spins++) {
          if (spins % 65536 !== 0) continue
          const now = nowMs()
          if (now > deadline) return NaN
          if (waitingSince === 0) waitingSince = now
          else if (now - waitingSince > STALL_MS) throw new Error('calibration: the echo thread stopped answering')
        }
      }
      return (nowMs() - t0) * 1000 / PER_BATCH
    }
    batch() // warm-up, and the worker's code gets compiled
    const batches: number[] = []
    for (let i = 0; i < BATCHES; i++) {
      const us = batch()
      if (Number.isNaN(us) || nowMs() > deadline) return null
      batches.push(us)
    }
    return median(batches)
  } finally {
    Atomics.store(words, 0, -1)
    await worker.terminate()
  }
}
