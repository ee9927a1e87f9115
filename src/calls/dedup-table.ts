/**
 * The callee's memory of one caller's calls, which makes execution at-most-once: a call id
 * seen before is never run again. A resent call that is still running gets an ACK; one
 * that has ended gets its stored reply frame again.
 *
 * Memory stays bounded: the caller's CALL frames carry its low water mark (every id below
 * it has ended for the caller, so it will never be resent) and entries below it go; an
 * entry also goes once its call's deadline has passed (the caller has given up), and past
 * `maxEntries` the entries that ended longest ago go first. Past `maxReplyBytes` the
 * replies kept longest go first. Each of these walks a queue of its own from the front, so
 * none walks past entries it cannot take (a call that runs on, replies already dropped).
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
  /** Forgotten: it leaves each queue when it reaches the front. */
  gone = false
  /**
   * When it may go (Date.now() clock): the first sweep that finds it ended sets it to that
   * sweep's time plus the call's timeout, which is after the caller's deadline (the call
   * came before the sweep). A clock read per call on arrival cost about 60 ns of the
   * callee's path; this keeps an ended entry up to a sweep interval longer.
   */
  expiresAt = Infinity
  constructor (readonly id: number, readonly timeoutMs: number) {}
}

export class DedupTable {
  /** By id, in a ring rather than a Map (see id-table.ts: a churning Map's tables chain up through scavenges). */
  private readonly entries = new IdTable<Entry>()
  /** The same entries in arrival order, which is nearly id order; forgotten ones leave lazily. */
  private readonly arrivals = new LazyQueue<Entry>(entry => entry.gone)
  /** Ended entries in the order they ended: who goes first past maxEntries. */
  private readonly endings = new LazyQueue<Entry>(entry => entry.gone)
  /** Ended entries holding a reply, in the order they ended: whose reply goes first past maxReplyBytes. */
  private readonly replies = new LazyQueue<Entry>(entry => entry.gone || entry.reply == null)
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
    const fresh = new Entry(id, timeoutMs)
    this.arrivals.push(fresh, this.entries.size)
    this.entries.add(fresh)
    if (this.entries.size > this.maxEntries) this.evictLongestEnded()
    return NEW
  }

  /**
   * Stores the reply of a call that ended, for a resend of it. The table owns `reply` from
   * here: it releases it (releaseFrame) when it lets it go, so arena blocks a split reply
   * holds are freed then.
   */
  end (id: number, reply: Uint8Array): void {
    const entry = this.entries.get(id)
    if (entry == null || entry.ended) {
      releaseFrame(reply)
      return
    }
    if (id < this.lowWater) {
      releaseFrame(reply)
      this.forget(entry)
      this.dropForgotten()
      return
    }
    entry.ended = true
    entry.reply = reply
    this.replyBytes += frameBytes(reply)
    this.endings.push(entry, this.entries.size)
    this.replies.push(entry, this.entries.size)
    if (this.replyBytes > this.maxReplyBytes) this.dropLongestKeptReplies()
  }

  private dropLongestKeptReplies (): void {
    const replies = this.replies
    for (;;) {
      replies.dropEnded()
      const entry = replies.front()
      if (entry == null || this.replyBytes <= this.maxReplyBytes) return
      this.replyBytes -= frameBytes(entry.reply as Uint8Array)
      releaseFrame(entry.reply as Uint8Array)
      entry.reply = undefined
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
    // It leaves the queues in dropForgotten(), which callers run after their walks.
    entry.gone = true
  }

  /** Drops ended entries whose deadline has passed; dates those ended since the last sweep (see Entry.expiresAt). */
  sweep (now: number): void {
    const endings = this.endings
    for (let i = endings.head; i < endings.items.length; i++) {
      const entry = endings.items[i] as Entry
      if (entry.gone) continue
      if (entry.expiresAt === Infinity) entry.expiresAt = now + entry.timeoutMs
      else if (entry.expiresAt < now) this.forget(entry)
    }
    this.dropForgotten()
    const live = this.entries.size
    this.arrivals.compactIfSparse(live)
    this.endings.compactIfSparse(live)
    this.replies.compactIfSparse(live)
  }

  /** Lets forgotten entries at the fronts of the queues go (push() compacts a queue mostly forgotten). */
  private dropForgotten (): void {
    this.arrivals.dropEnded()
    this.endings.dropEnded()
    this.replies.dropEnded()
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
    this.dropForgotten()
  }

  /** Forgets the entry that ended longest ago; none while every entry still runs. */
  private evictLongestEnded (): void {
    this.endings.dropEnded()
    const entry = this.endings.front()
    if (entry == null) return
    this.forget(entry)
    this.dropForgotten()
  }
}
