/**
 * The callee's memory of one caller's calls, which makes execution at-most-once: a call id
 * seen before is never run again. A resent call that is still running gets an ACK; one
 * that has ended gets its stored reply frame again.
 *
 * Memory stays bounded: the caller's CALL frames carry its low water mark (every id below
 * it has ended for the caller, so it will never be resent) and entries below it go; an
 * entry also goes once its call's deadline has passed (the caller has given up), and past
 * `maxEntries` the oldest ended entries go first.
 */
import { frameBytes, releaseFrame } from '../codec/frame.js'
import { IdTable } from './id-table.js'
import { LazyQueue } from './lazy-queue.js'

export type DedupVerdict =
  | { kind: 'new' }
  | { kind: 'running' }
  | { kind: 'ended', reply: Uint8Array | undefined }
  | { kind: 'stale' }

const NEW: DedupVerdict = Object.freeze({ kind: 'new' })
const RUNNING: DedupVerdict = Object.freeze({ kind: 'running' })
const STALE: DedupVerdict = Object.freeze({ kind: 'stale' })

class Entry {
  reply?: Uint8Array = undefined
  ended = false
  /** Forgotten: it leaves the arrival queue when it reaches the front. */
  gone = false
  constructor (readonly id: number, readonly expiresAt: number) {}
}

export class DedupTable {
  /** By id, in a ring rather than a Map (see id-table.ts: a churning Map's tables chain up through scavenges). */
  private readonly entries = new IdTable<Entry>()
  /** The same entries in arrival order, which is nearly id order; forgotten ones leave lazily. */
  private readonly arrivals = new LazyQueue<Entry>(entry => entry.gone)
  private lowWater = 0
  private replyBytes = 0

  /**
   * @param maxEntries ids remembered at most
   * @param maxReplyBytes reply bytes kept at most; past it the oldest replies are dropped
   *   (the id is still remembered, so a resend is answered with an error, never run again)
   */
  constructor (private readonly maxEntries: number, private readonly maxReplyBytes = 64 * 1024 * 1024) {}

  get size (): number {
    return this.entries.size
  }

  /** Records a call id on arrival and says what to do with it. */
  admit (id: number, timeoutMs: number, callerLowWater: number): DedupVerdict {
    this.advance(callerLowWater)
    if (id < this.lowWater) return STALE
    const entry = this.entries.get(id)
    if (entry != null) return entry.ended ? { kind: 'ended', reply: entry.reply } : RUNNING
    const fresh = new Entry(id, Date.now() + timeoutMs)
    this.arrivals.push(fresh, this.entries.size)
    this.entries.add(fresh)
    if (this.entries.size > this.maxEntries) this.evictOldestEnded()
    return NEW
  }

  /**
   * Stores the reply of a call that ended, for a resend of it. The table owns `reply` from
   * here: it releases it (releaseFrame) when it lets it go, so arena blocks a split reply
   * holds are freed then.
   */
  end (id: number, reply: Uint8Array): void {
    const entry = this.entries.get(id)
    if (entry == null) {
      releaseFrame(reply)
      return
    }
    if (id < this.lowWater) {
      releaseFrame(reply)
      this.forget(entry)
      this.arrivals.dropEnded()
      return
    }
    entry.ended = true
    entry.reply = reply
    this.replyBytes += frameBytes(reply)
    if (this.replyBytes > this.maxReplyBytes) this.dropOldestReplies()
  }

  private dropOldestReplies (): void {
    for (let i = this.arrivals.head; i < this.arrivals.items.length; i++) {
      if (this.replyBytes <= this.maxReplyBytes) return
      const entry = this.arrivals.items[i] as Entry
      if (!entry.gone && entry.reply != null) {
        this.replyBytes -= frameBytes(entry.reply)
        releaseFrame(entry.reply)
        entry.reply = undefined
      }
    }
  }

  private forget (entry: Entry): void {
    if (entry.reply != null) {
      this.replyBytes -= frameBytes(entry.reply)
      releaseFrame(entry.reply)
      // A forgotten entry that reached the old generation would keep its reply through
      // every scavenge until the next full GC (see calls/call-table.ts, PendingCall).
      entry.reply = undefined
    }
    this.entries.delete(entry)
    // It leaves the arrival queue in dropEnded(), which callers run after their walk of it.
    entry.gone = true
  }

  /** Drops ended entries whose deadline has passed. */
  sweep (now: number): void {
    for (let i = this.arrivals.head; i < this.arrivals.items.length; i++) {
      const entry = this.arrivals.items[i] as Entry
      if (!entry.gone && entry.ended && entry.expiresAt < now) this.forget(entry)
    }
    this.arrivals.dropEnded()
    this.arrivals.compactIfSparse(this.entries.size)
  }

  private advance (callerLowWater: number): void {
    if (!(callerLowWater > this.lowWater)) return
    this.lowWater = callerLowWater
    // Ids arrive nearly in order, so arrival order is nearly id order.
    for (let i = this.arrivals.head; i < this.arrivals.items.length; i++) {
      const entry = this.arrivals.items[i] as Entry
      if (entry.gone) continue
      if (entry.id >= callerLowWater) break
      if (entry.ended) this.forget(entry)
    }
    this.arrivals.dropEnded()
  }

  /**
   * Forgets the oldest ended entry after the last one evicted (the arrivals' cursor), and
   * failing that the oldest from the front. Behind a call that runs on, a walk from the
   * front would pass every entry evicted so far each time: O(maxEntries) per call.
   */
  private evictOldestEnded (): void {
    const arrivals = this.arrivals
    const resume = arrivals.resume()
    if (!this.evictBetween(resume, arrivals.items.length) && !this.evictBetween(arrivals.head, resume)) return
    arrivals.dropEnded()
    arrivals.compactIfSparse(this.entries.size)
  }

  private evictBetween (start: number, end: number): boolean {
    const items = this.arrivals.items
    for (let i = start; i < end; i++) {
      const entry = items[i] as Entry
      if (!entry.gone && entry.ended) {
        this.forget(entry)
        this.arrivals.cursor = i + 1
        return true
      }
    }
    return false
  }
}
