/**
 * One direction of a shared-memory segment, read and written in place from JavaScript:
 * a single-producer/single-consumer byte ring of records (layout and the wake-up
 * handshake: native/ring_layout.h). A frame of any size streams through as records of
 * at most half the ring, so the consumer copies one piece out while the
 * producer writes the next.
 *
 * ```ts
 * const out = new RingProducer(memory, layout, 0)      // this side writes ring a->b
 * const inn = new RingConsumer(memory, layout, 1, 1 << 28)
 * out.write(frame, 0)                                   // bytes of the frame taken
 * out.publish()                                         // true: the consumer sleeps, ring its doorbell
 * const frames: unknown[][] = []
 * inn.read((bytes, start, end) => decodeFrameBody(bytes, true, start + 4, end), frames)
 * ```
 *
 * Memory orders: every access to head, tail, sleeping and waiting goes through
 * `Atomics` on an Int32Array, which is sequentially consistent; the record bytes are
 * plain stores ordered before the head store that publishes them (and plain loads
 * ordered after the head load that reveals them). Counters are u32 and wrap.
 *
 * Each side keeps the other's counter line out of its round trip, since every line
 * that crosses between two CPUs costs a core-to-core transfer (on this VM 0.07-0.35 µs,
 * by the minute: an Atomics ping-pong between two threads takes 0.13 or 0.53-0.72 µs):
 * - the producer remembers the tail it last read and reads the shared one again only
 *   when the frame does not fit in the room that tail leaves;
 * - the consumer frees what it read in `release()`, which the link calls once it is
 *   idle (before it waits or sleeps), not in the middle of a call's path. A waiting
 *   producer is still freed at once: `read` releases when it finds the flag set, and
 *   when a quarter of the ring is read but not yet freed.
 */
import { RpcError } from '../../errors/rpc-error.js'
import type { RingLayout } from './native.js'

const RECORD_HEADER = 8

/** The control words and data area of ring `index` (0: a->b, 1: b->a) of a mapped segment. */
class RingView {
  readonly words: Int32Array
  readonly data: Uint8Array
  readonly dataWords: Uint32Array
  readonly bytes: number
  readonly mask: number
  readonly head: number
  readonly tail: number
  readonly sleeping: number
  readonly waiting: number
  readonly consumerCpu: number

  constructor (memory: ArrayBuffer, layout: RingLayout, index: 0 | 1) {
    this.words = new Int32Array(memory, 0, layout.headerBytes / 4)
    this.bytes = new Uint32Array(memory, layout.offRingBytes, 1)[0]
    this.mask = this.bytes - 1
    this.data = new Uint8Array(memory, layout.headerBytes + index * this.bytes, this.bytes)
    this.dataWords = new Uint32Array(memory, layout.headerBytes + index * this.bytes, this.bytes / 4)
    const base = layout.offRing0 + index * layout.ringStride
    this.head = (base + layout.ringHead) / 4
    this.tail = (base + layout.ringTail) / 4
    this.sleeping = (base + layout.ringSleeping) / 4
    this.waiting = (base + layout.ringWaiting) / 4
    this.consumerCpu = (base + layout.ringConsumerCpu) / 4
  }

  corrupt (what: string): RpcError {
    return new RpcError('BAD_FRAME', `shared-memory ring is corrupt: ${what}`)
  }
}

export class RingProducer {
  private readonly ring: RingView
  /** Our own copy of head: only we write it. */
  private head: number
  /** The consumer's tail as we last read it: the room it leaves is room for sure. */
  private tail: number
  private readonly maxPiece: number
  private readonly more: number

  constructor (memory: ArrayBuffer, layout: RingLayout, index: 0 | 1) {
    this.ring = new RingView(memory, layout, index)
    this.head = Atomics.load(this.ring.words, this.ring.head) >>> 0
    this.tail = Atomics.load(this.ring.words, this.ring.tail) >>> 0
    this.maxPiece = Math.max(64, this.ring.bytes / 2)
    this.more = layout.recordMore
  }

  /**
   * Copies as much of `frame` from `offset` as fits, as records; returns the new offset
   * (frame.byteLength when all of it is in). Nothing is visible until publish().
   */
  write (frame: Uint8Array, offset: number): number {
    const ring = this.ring
    // Records take a header and round up to 8; a frame that fits whole in the room the
    // last tail we read leaves needs no look at the consumer's line.
    if (this.room() < frame.byteLength - offset + 2 * RECORD_HEADER + 8) this.readTail()
    let free = this.room()
    while (offset < frame.byteLength) {
      const room = Math.min((free - RECORD_HEADER) & ~7, this.maxPiece)
      if (room <= 0) break
      const piece = Math.min(frame.byteLength - offset, room)
      const last = offset + piece === frame.byteLength
      const at = this.head & ring.mask
      ring.dataWords[at >>> 2] = last ? piece : (piece | this.more) >>> 0
      copyIn(ring, (this.head + RECORD_HEADER) & ring.mask, frame, offset, piece)
      const size = RECORD_HEADER + ((piece + 7) & ~7)
      this.head = (this.head + size) >>> 0
      free -= size
      offset += piece
    }
    return offset
  }

  /**
   * Makes the records written so far visible. Returns true when the consumer had said it
   * sleeps (and this call took that flag back): the caller must ring its doorbell.
   */
  publish (): boolean {
    const ring = this.ring
    Atomics.store(ring.words, ring.head, this.head | 0)
    // seq_cst store of head, then seq_cst load of sleeping: the other half of the
    // consumer's store-sleeping-then-load-head (see ring_layout.h).
    return Atomics.load(ring.words, ring.sleeping) === 1 && Atomics.compareExchange(ring.words, ring.sleeping, 1, 0) === 1
  }

  /** The ring is full: say so, then look again. True when there is room after all. */
  waitForRoom (): boolean {
    const ring = this.ring
    Atomics.store(ring.words, ring.waiting, 1)
    this.readTail()
    if (this.room() > RECORD_HEADER + 8) {
      Atomics.store(ring.words, ring.waiting, 0)
      return true
    }
    return false
  }

  /** Bytes free by the tail we last read. */
  private room (): number {
    return this.ring.bytes - ((this.head - this.tail) >>> 0)
  }

  private readTail (): void {
    const ring = this.ring
    const tail = Atomics.load(ring.words, ring.tail) >>> 0
    const used = (this.head - tail) >>> 0
    if (used > ring.bytes) throw ring.corrupt(`producer sees ${used} bytes in use in a ${ring.bytes}-byte ring`)
    this.tail = tail
  }

  /** Test hook: moves head a gigabyte ahead, as a wild write would, and publishes it. */
  corruptForTest (): void {
    this.head = (this.head + 0x40000000) >>> 0
    Atomics.store(this.ring.words, this.ring.head, this.head | 0)
  }

  /** CPU the consumer last woke on (-1: unknown). */
  consumerCpu (): number {
    return Atomics.load(this.ring.words, this.ring.consumerCpu)
  }
}

export class RingConsumer {
  private readonly ring: RingView
  private tail: number
  /** The tail the producer sees: what was read up to `tail` is freed by release(). */
  private freed: number
  private readonly more: number
  /** Where a frame that arrives in pieces (or wraps) is put together; reused. */
  private scratch = new Uint8Array(0)
  /** Bytes of the frame being put together; -1 when none is. */
  private partialTotal = -1
  private partialAt = 0

  constructor (memory: ArrayBuffer, layout: RingLayout, index: 0 | 1, private readonly maxFrameBytes: number) {
    this.ring = new RingView(memory, layout, index)
    this.tail = Atomics.load(this.ring.words, this.ring.tail) >>> 0
    this.freed = this.tail
    this.more = layout.recordMore
  }

  /** True when records are waiting. */
  pending (): boolean {
    return (Atomics.load(this.ring.words, this.ring.head) >>> 0) !== this.tail
  }

  /** True while a frame is half read (its producer may have died mid-write). */
  get midFrame (): boolean {
    return this.partialTotal >= 0
  }

  /**
   * Decodes every complete frame waiting in the ring into `out`. `decode` gets the frame
   * (header + body) as `bytes[start, end)`: in place in the ring when it lies in one
   * piece (overwritten once freed), else in a scratch buffer (overwritten by the next
   * frame that comes in pieces); no view is made per frame, so `decode` must copy what it
   * keeps. The space is freed by the next release(), or here when the producer waits for
   * room or a quarter of the ring waits to be freed. Returns true when the producer was
   * waiting for room (and this call took the flag back): the caller must ring the
   * producer's doorbell. Throws BAD_FRAME when the ring's words make no sense (or
   * `decode` does).
   */
  read<T> (decode: (bytes: Uint8Array, start: number, end: number) => T, out: T[]): boolean {
    const ring = this.ring
    const head = Atomics.load(ring.words, ring.head) >>> 0
    let available = (head - this.tail) >>> 0
    if (available > ring.bytes) throw ring.corrupt(`consumer sees ${available} bytes in use in a ${ring.bytes}-byte ring`)
    if (available === 0) return Atomics.load(ring.words, ring.waiting) === 1 && this.release()
    while (available > 0) {
      if (available < RECORD_HEADER) throw ring.corrupt(`${available} bytes is less than a record header`)
      const word = ring.dataWords[(this.tail & ring.mask) >>> 2]
      const piece = word & ~this.more
      const size = RECORD_HEADER + ((piece + 7) & ~7)
      if (piece === 0 || size > available) throw ring.corrupt(`a record of ${piece} bytes with ${available} bytes published`)
      const from = (this.tail + RECORD_HEADER) & ring.mask
      const last = (word & this.more) === 0
      if (this.partialTotal < 0) {
        if (piece < 4) throw ring.corrupt(`first piece of a frame is ${piece} bytes`)
        const total = 4 + readU32BE(ring, from)
        if (total - 4 > this.maxFrameBytes) throw new RpcError('BAD_FRAME', `frame of ${total - 4} bytes is above the limit of ${this.maxFrameBytes} bytes`)
        if (last && piece !== total) throw ring.corrupt(`a one-piece frame of ${piece} bytes says it has ${total}`)
        if (last && from + piece <= ring.bytes) {
          // The common case: the whole frame lies in the ring in one run. Decode it there.
          out.push(decode(ring.data, from, from + piece))
          this.tail = (this.tail + size) >>> 0
          available -= size
          continue
        }
        if (this.scratch.byteLength < total) this.scratch = new Uint8Array(total)
        this.partialTotal = total
        this.partialAt = 0
      }
      if (this.partialAt + piece > this.partialTotal) throw ring.corrupt('pieces run past the frame length')
      copyOut(ring, from, this.scratch, this.partialAt, piece)
      this.partialAt += piece
      this.tail = (this.tail + size) >>> 0
      available -= size
      if (last) {
        if (this.partialAt !== this.partialTotal) throw ring.corrupt(`frame ended after ${this.partialAt} of ${this.partialTotal} bytes`)
        const total = this.partialTotal
        this.partialTotal = -1
        out.push(decode(this.scratch, 0, total))
        // Do not hold on to a huge scratch buffer after a rare huge frame.
        if (this.scratch.byteLength > 64 * 1024 * 1024) this.scratch = new Uint8Array(0)
      }
    }
    // Everything is decoded (copied out). A producer that waits, or a quarter of the ring
    // read, is freed now; else the space goes back when the link is idle (release()).
    if (Atomics.load(ring.words, ring.waiting) === 1 || ((this.tail - this.freed) >>> 0) >= ring.bytes / 4) return this.release()
    return false
  }

  /**
   * Gives the producer back the space of everything read: the store of tail, then the
   * load of waiting (the other half of the producer's store-waiting-then-load-tail).
   * Returns true when the producer was waiting for room and this call took the flag
   * back: the caller must ring its doorbell.
   */
  release (): boolean {
    const ring = this.ring
    if (this.tail !== this.freed) {
      this.freed = this.tail
      Atomics.store(ring.words, ring.tail, this.tail | 0)
    }
    return Atomics.load(ring.words, ring.waiting) === 1 && Atomics.compareExchange(ring.words, ring.waiting, 1, 0) === 1
  }

  /**
   * About to sleep: set the flag, then look at head once more. False when data came in
   * between (the flag is taken back): read again instead of sleeping. Call release()
   * first: a producer that finds the ring full while we sleep must see all the room.
   */
  sleep (cpu: number): boolean {
    const ring = this.ring
    Atomics.store(ring.words, ring.consumerCpu, cpu)
    Atomics.store(ring.words, ring.sleeping, 1)
    if ((Atomics.load(ring.words, ring.head) >>> 0) !== this.tail) {
      Atomics.store(ring.words, ring.sleeping, 0)
      return false
    }
    return true
  }

  /** Woken: the producer took the flag already; clear it in case we woke for another reason. */
  awake (cpu: number): void {
    Atomics.store(this.ring.words, this.ring.sleeping, 0)
    Atomics.store(this.ring.words, this.ring.consumerCpu, cpu)
  }
}

function copyIn (ring: RingView, at: number, src: Uint8Array, offset: number, length: number): void {
  const first = Math.min(length, ring.bytes - at)
  ring.data.set(first === src.byteLength && offset === 0 ? src : src.subarray(offset, offset + first), at)
  if (first < length) ring.data.set(src.subarray(offset + first, offset + length), 0)
}

function copyOut (ring: RingView, at: number, dst: Uint8Array, offset: number, length: number): void {
  const first = Math.min(length, ring.bytes - at)
  dst.set(ring.data.subarray(at, at + first), offset)
  if (first < length) dst.set(ring.data.subarray(0, length - first), offset + first)
}

function readU32BE (ring: RingView, at: number): number {
  let value = 0
  for (let i = 0; i < 4; i++) value = value * 256 + ring.data[(at + i) & ring.mask]
  return value
}
