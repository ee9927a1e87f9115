/**
 * The deadlines of outstanding calls, with one Node timer for all of them instead of one per
 * call (a setTimeout and its clearTimeout cost about 0.25 µs a call here, a tenth of what a
 * pipelined caller spends per call over shm, and a Timeout object for the collector).
 *
 * Calls with the same timeout end in the order they started, so each distinct timeout keeps
 * its calls in a Map in start order (a lane): the earliest deadline of a lane is its first
 * entry, and the timer waits for the earliest of those. An ended call leaves its lane at
 * once; the timer is not moved for it, and finds nothing due when it fires early.
 *
 * ```
 *  lanes: 60000 ms ─► [#7 @t+59.2s] [#9 @t+59.8s] [#12 @t+60s] ...   timer ─► earliest head
 *          1000 ms ─► [#10 @t+0.4s]                                          (t+0.4 s here)
 * ```
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

export interface WithDeadline {
  readonly id: number
  readonly timeoutMs: number
  /** performance.now() at which the call is due. */
  readonly deadlineAt: number
}

export class Deadlines<T extends WithDeadline> {
  private readonly lanes = new Map<number, Map<number, T>>()
  private timer?: NodeJS.Timeout
  /** When the timer fires (performance.now() clock). */
  private timerAt = Infinity
  private timerRefed = false

  constructor (private readonly onExpire: (item: T) => void) {}

  add (item: T): void {
    let lane = this.lanes.get(item.timeoutMs)
    if (lane == null) this.lanes.set(item.timeoutMs, lane = new Map())
    lane.set(item.id, item)
    if (item.deadlineAt < this.timerAt) this.arm(item.deadlineAt)
    else if (!this.timerRefed) {
      this.timer?.ref()
      this.timerRefed = true
    }
  }

  remove (item: T): void {
    const lane = this.lanes.get(item.timeoutMs)
    if (lane == null || !lane.delete(item.id) || lane.size > 0) return
    this.lanes.delete(item.timeoutMs)
    // Nothing outstanding: the timer stays for the next call, but holds the process no longer.
    if (this.lanes.size === 0 && this.timerRefed) {
      this.timer?.unref()
      this.timerRefed = false
    }
  }

  clear (): void {
    this.lanes.clear()
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
      for (const item of lane.values()) {
        if (item.deadlineAt > now) {
          next = Math.min(next, item.deadlineAt)
          break
        }
        lane.delete(item.id)
        due.push(item)
      }
      if (lane.size === 0) this.lanes.delete(timeoutMs)
    }
    if (next < Infinity) this.arm(next)
    // A timer that fired late finds several lanes due: they end in deadline order all the same.
    if (due.length > 1) due.sort((a, b) => a.deadlineAt - b.deadlineAt)
    for (const item of due) this.onExpire(item)
  }
}
