/**
 * The deadlines of outstanding calls, with one Node timer for all of them instead of one per
 * call (a setTimeout and its clearTimeout cost about 0.25 µs a call here, a tenth of what a
 * pipelined caller spends per call over shm, and a Timeout object for the collector).
 *
 * Calls with the same timeout end in the order they started, so each distinct timeout keeps
 * its calls in an array in start order (a lane): the earliest deadline of a lane is its
 * first live entry, and the timer waits for the earliest of those. An ended call is only
 * marked (`awaitingDeadline` false); it leaves its lane when it reaches the front, which for
 * calls that end in order is at once. The timer is not moved for it, and finds nothing due
 * when it fires early.
 *
 * ```
 *  lanes: 60000 ms ─► [#7 @t+59.2s] [#8 ended] [#9 @t+59.8s] ...    timer ─► earliest front
 *          1000 ms ─► [#10 @t+0.4s]                                          (t+0.4 s here)
 * ```
 *
 * Why arrays and not a Map per lane: a Map that empties reallocates its table in V8, and
 * sequential calls empty it on every call. Adding and ending a call, one in flight: 315–347
 * ns with a Map per lane (made and dropped each time), 113–119 ns now; 64 in flight: 159–184
 * against 97–123 (2M calls, three rounds, scratch/dlmicro.mjs). Ended calls held behind a
 * long one are bounded: a lane is compacted when it holds more than twice its live calls
 * (plus 64), so each call is moved at most a few times.
 *
 * The timer holds the process open only while some call is outstanding, as a timer per
 * call did.
 *
 * ```ts
 * const deadlines = new Deadlines<Call>(call => { fail(call, 'TIMEOUT') })
 * deadlines.add(call)        // call.deadlineAt = performance.now() + call.timeoutMs
 * deadlines.remove(call)     // the call ended some other way
 * deadlines.clear()          // close(): no timer left behind
 * ```
 */
import { performance } from 'node:perf_hooks' // not the global, whose every read runs Node's lazy getter
import { LazyQueue } from './lazy-queue.js'

export interface WithDeadline {
  readonly id: number
  readonly timeoutMs: number
  /** performance.now() at which the call is due. */
  readonly deadlineAt: number
  /** Set by Deadlines: true from add() until the item is removed or expires. */
  awaitingDeadline: boolean
}

/** Lanes kept when they empty (sequential calls would otherwise make one per call); more go at once. */
const IDLE_LANES = 8

function ended (item: WithDeadline): boolean {
  return !item.awaitingDeadline
}

/** One timeout's calls, in start order. */
class Lane<T extends WithDeadline> {
  readonly queue = new LazyQueue<T>(ended)
  live = 0
}

export class Deadlines<T extends WithDeadline> {
  private readonly lanes = new Map<number, Lane<T>>()
  /** Items awaiting their deadline, over all lanes. */
  private live = 0
  private timer?: NodeJS.Timeout
  /** When the timer fires (performance.now() clock). */
  private timerAt = Infinity
  private timerRefed = false

  constructor (private readonly onExpire: (item: T) => void) {}

  add (item: T): void {
    let lane = this.lanes.get(item.timeoutMs)
    if (lane == null) this.lanes.set(item.timeoutMs, lane = new Lane())
    item.awaitingDeadline = true
    lane.queue.push(item, lane.live)
    lane.live++
    this.live++
    if (item.deadlineAt < this.timerAt) this.arm(item.deadlineAt)
    else if (!this.timerRefed) {
      this.timer?.ref()
      this.timerRefed = true
    }
  }

  remove (item: T): void {
    if (!item.awaitingDeadline) return
    item.awaitingDeadline = false
    const lane = this.lanes.get(item.timeoutMs)
    if (lane == null) return
    lane.live--
    this.live--
    if (lane.queue.front() === item) lane.queue.dropEnded()
    if (lane.live === 0 && this.lanes.size > IDLE_LANES) this.lanes.delete(item.timeoutMs)
    // Nothing outstanding: the timer stays for the next call, but holds the process no longer.
    if (this.live === 0 && this.timerRefed) {
      this.timer?.unref()
      this.timerRefed = false
    }
  }

  clear (): void {
    for (const { queue } of this.lanes.values()) {
      for (let i = queue.head; i < queue.items.length; i++) (queue.items[i] as T).awaitingDeadline = false
    }
    this.lanes.clear()
    this.live = 0
    clearTimeout(this.timer)
    this.timer = undefined
    this.timerAt = Infinity
    this.timerRefed = false
  }

  private arm (at: number): void {
    clearTimeout(this.timer)
    this.timerAt = at
    this.timerRefed = true
    // Node's timers count whole milliseconds and may fire a fraction early: fire() re-arms then.
    this.timer = setTimeout(() => { this.fire() }, Math.max(1, Math.ceil(at - performance.now())))
  }

  private fire (): void {
    this.timer = undefined
    this.timerAt = Infinity
    this.timerRefed = false
    const now = performance.now()
    const due: T[] = []
    let next = Infinity
    for (const [timeoutMs, lane] of this.lanes) {
      for (;;) {
        lane.queue.dropEnded()
        const item = lane.queue.front()
        if (item == null) break
        if (item.deadlineAt > now) {
          next = Math.min(next, item.deadlineAt)
          break
        }
        lane.queue.shift()
        item.awaitingDeadline = false
        lane.live--
        this.live--
        due.push(item)
      }
      if (lane.live === 0) this.lanes.delete(timeoutMs)
    }
    if (next < Infinity) this.arm(next)
    // A timer that fired late finds several lanes due: they end in deadline order all the same.
    if (due.length > 1) due.sort((a, b) => a.deadlineAt - b.deadlineAt)
    for (const item of due) this.onExpire(item)
  }
}
