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

export type DedupVerdict =
  | { kind: 'new' }
  | { kind: 'running' }
  | { kind: 'ended', reply: Uint8Array | undefined }
  | { kind: 'stale' }

const NEW: DedupVerdict = Object.freeze({ kind: 'new' })
const RUNNING: DedupVerdict = Object.freeze({ kind: 'running' })
const STALE: DedupVerdict = Object.freeze({ kind: 'stale' })

interface Entry {
  reply?: Uint8Array
  ended: boolean
  expiresAt: number
}

export class DedupTable {
  private readonly entries = new Map<number, Entry>()
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
    this.entries.set(id, { ended: false, expiresAt: Date.now() + timeoutMs })
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
      this.forget(id, entry)
      return
    }
    entry.ended = true
    entry.reply = reply
    this.replyBytes += frameBytes(reply)
    if (this.replyBytes > this.maxReplyBytes) this.dropOldestReplies()
  }

  private dropOldestReplies (): void {
    for (const entry of this.entries.values()) {
      if (this.replyBytes <= this.maxReplyBytes) return
      if (entry.reply != null) {
        this.replyBytes -= frameBytes(entry.reply)
        releaseFrame(entry.reply)
        entry.reply = undefined
      }
    }
  }

  private forget (id: number, entry: Entry): void {
    if (entry.reply != null) {
      this.replyBytes -= frameBytes(entry.reply)
      releaseFrame(entry.reply)
      // A forgotten entry that reached the old generation would keep its reply through
      // every scavenge until the next full GC (see calls/call-table.ts, PendingCall).
      entry.reply = undefined
    }
    this.entries.delete(id)
  }

  /** Drops ended entries whose deadline has passed. */
  sweep (now: number): void {
    for (const [id, entry] of this.entries) {
      if (entry.ended && entry.expiresAt < now) this.forget(id, entry)
    }
  }

  private advance (callerLowWater: number): void {
    if (!(callerLowWater > this.lowWater)) return
    this.lowWater = callerLowWater
    // Ids arrive nearly in order, so the map's insertion order is nearly id order.
    for (const [id, entry] of this.entries) {
      if (id >= callerLowWater) break
      if (entry.ended) this.forget(id, entry)
    }
  }

  private evictOldestEnded (): void {
    for (const [id, entry] of this.entries) {
      if (entry.ended) {
        this.forget(id, entry)
        return
      }
    }
  }
}
