/**
 * Out-of-band payloads over a shm link: each direction that ever carries a large byte
 * value (see codec/out-of-band.ts) gets an arena, a memfd of its own beside the ring,
 * made by the sender when it first needs one and handed to the receiver over the link's
 * unix socket. The sender copies each payload into a block of it (one memcpy, at send
 * time, so what the user does with its buffer afterwards changes nothing) and sends the
 * small body with the blocks' places through the ring; the receiver makes one external
 * ArrayBuffer per block (native/cohort_shm.cc) and hands the user values over those,
 * without copying.
 *
 * ```
 *  sender (OutgoingArena)                         receiver (IncomingArena)
 *  place(parts) ─ copy ─► block @ offset          [ARENA_FRAME, id, [offset, length...], body]
 *                         held while the frame      ─► arenaView(offset, length): the user's value
 *                         may be resent                    ...garbage collected...
 *  peerFreed(offsets) ◄── [ARENA_FREE, id, offset...] ◄── its memory gone: offset queued
 *  block free again when the peer freed it and the sender released it
 * ```
 *
 * A block is reused only when both are true: no view of the receiver refers to it (each
 * send of a block counts once, each ARENA_FREE once) and the sender no longer keeps the
 * frame for a resend (the call ended, the reply left the dedup table: releaseFrame).
 * When the arena is full the payload goes inline through the ring, as before; a call
 * never fails for want of arena space.
 *
 * ```ts
 * const out = OutgoingArena.create(native, 64 << 20, 1)   // then send out.fd over the socket
 * const placed = out.place([bytes])                        // undefined: no room, go inline
 * out.sent(placed.offsets)                                 // once per frame that names them
 * ```
 */
import { RpcError } from '../../errors/rpc-error.js'
import type { PartHolding } from '../../codec/out-of-band.js'
import type { ArenaHandle, ShmAddon, Watcher } from './native.js'
import { collectFully, viewsReceived } from './young-collection.js'

/** Blocks start on this boundary (a cache line; every typed array can view them). */
export const ARENA_ALIGN = 64

interface Block {
  length: number
  /** Sends of this block the receiver has not freed yet. */
  peerRefs: number
  /** A frame that names it may still be resent. */
  held: boolean
}

/**
 * First-fit allocator over [0, bytes) with coalescing free ranges, sorted by offset. An
 * arena holds few blocks (payloads are at least 64 KiB), so a linear scan is cheap.
 */
export class ArenaAllocator {
  /** Free ranges, sorted by offset, never adjacent. */
  private readonly free: Array<{ offset: number, length: number }>
  inUse = 0

  constructor (readonly bytes: number) {
    this.free = [{ offset: 0, length: bytes }]
  }

  /** Offset of a block of `length` bytes (rounded up to ARENA_ALIGN), or -1 when none fits. */
  alloc (length: number): number {
    const size = roundUp(length)
    for (let i = 0; i < this.free.length; i++) {
      const range = this.free[i]
      if (range.length < size) continue
      const offset = range.offset
      if (range.length === size) this.free.splice(i, 1)
      else {
        range.offset += size
        range.length -= size
      }
      this.inUse += size
      return offset
    }
    return -1
  }

  /** Gives back a block `alloc` returned, merging it with free neighbours. */
  release (offset: number, length: number): void {
    const size = roundUp(length)
    this.inUse -= size
    let i = 0
    while (i < this.free.length && this.free[i].offset < offset) i++
    const before = i > 0 ? this.free[i - 1] : undefined
    const after = i < this.free.length ? this.free[i] : undefined
    if (before != null && before.offset + before.length === offset) {
      before.length += size
      if (after != null && before.offset + before.length === after.offset) {
        before.length += after.length
        this.free.splice(i, 1)
      }
    } else if (after != null && offset + size === after.offset) {
      after.offset = offset
      after.length += size
    } else {
      this.free.splice(i, 0, { offset, length: size })
    }
  }

  /** Largest block that would fit now. */
  largestFree (): number {
    let best = 0
    for (const range of this.free) best = Math.max(best, range.length)
    return best
  }
}

function roundUp (length: number): number {
  return Math.ceil(Math.max(1, length) / ARENA_ALIGN) * ARENA_ALIGN
}

/** Blocks of one frame in one arena: the sender's hold on them (see PartHolding). */
class ArenaHolding implements PartHolding {
  private released = false
  constructor (readonly owner: OutgoingArena, readonly offsets: number[]) {}

  release (): void {
    if (this.released) return
    this.released = true
    this.owner.unhold(this.offsets)
  }
}

export interface Placed {
  /** Where each part now lies, in order. */
  offsets: number[]
  lengths: number[]
  /** A view of each block (this process's mapping), holding the copy. */
  views: Uint8Array[]
  holding: PartHolding
}

/** This side's arena of one link: where its large payloads go. */
export class OutgoingArena {
  private readonly allocator: ArenaAllocator
  private readonly blocks = new Map<number, Block>()
  /**
   * The whole arena, one view made once: blocks are written and kept through subarrays of
   * it. (A buffer per block, as the receiver makes, would count each block again as
   * external memory for the garbage collector, for memory the sender frees by itself.)
   */
  private readonly memory: Uint8Array
  private closed = false
  readonly counters = { placed: 0, placedBytes: 0, noRoom: 0 }

  private constructor (private readonly native: ShmAddon, private readonly handle: ArenaHandle, readonly fd: number, readonly id: number, readonly bytes: number) {
    this.allocator = new ArenaAllocator(bytes)
    this.memory = new Uint8Array(native.arenaView(handle, 0, bytes, false))
  }

  /** Makes and maps a new arena; `fd` is for sending to the peer (then closing). Throws the system call's error. */
  static create (native: ShmAddon, bytes: number, id: number): OutgoingArena {
    const fd = native.createArena(bytes)
    try {
      return new OutgoingArena(native, native.mapArena(fd), fd, id, bytes)
    } catch (err) {
      native.closeFd(fd)
      throw err
    }
  }

  get inUse (): number {
    return this.allocator.inUse
  }

  /**
   * Copies each part into a block of its own; undefined (nothing taken) when they do not
   * all fit now. The blocks are held until the holding is released.
   */
  place (parts: Uint8Array[]): Placed | undefined {
    if (this.closed) return undefined
    const offsets: number[] = []
    for (const part of parts) {
      const offset = this.allocator.alloc(part.byteLength)
      if (offset < 0) {
        for (let i = 0; i < offsets.length; i++) this.allocator.release(offsets[i], parts[i].byteLength)
        this.counters.noRoom++
        return undefined
      }
      offsets.push(offset)
    }
    const lengths: number[] = []
    const views: Uint8Array[] = []
    for (let i = 0; i < parts.length; i++) {
      const length = parts[i].byteLength
      const view = this.memory.subarray(offsets[i], offsets[i] + length)
      view.set(parts[i])
      this.blocks.set(offsets[i], { length, peerRefs: 0, held: true })
      lengths.push(length)
      views.push(view)
      this.counters.placed++
      this.counters.placedBytes += length
    }
    return { offsets, lengths, views, holding: new ArenaHolding(this, offsets) }
  }

  /**
   * Offsets and lengths of blocks this arena placed and still holds for `holding`, to
   * send them again; undefined when `holding` is not ours or was let go.
   */
  again (holding: PartHolding | undefined): { offsets: number[], lengths: number[] } | undefined {
    if (!(holding instanceof ArenaHolding) || holding.owner !== this || this.closed) return undefined
    const lengths: number[] = []
    for (const offset of holding.offsets) {
      const block = this.blocks.get(offset)
      if (block == null || !block.held) return undefined
      lengths.push(block.length)
    }
    return { offsets: holding.offsets, lengths }
  }

  /** A frame naming these blocks went to the peer: each needs one ARENA_FREE more. */
  sent (offsets: number[]): void {
    for (const offset of offsets) {
      const block = this.blocks.get(offset)
      if (block != null) block.peerRefs++
    }
  }

  /** ARENA_FREE: the peer is done with one send of each of these blocks. Throws BAD_FRAME on offsets it holds none of. */
  peerFreed (offsets: unknown[]): void {
    for (const offset of offsets) {
      const block = typeof offset === 'number' ? this.blocks.get(offset) : undefined
      if (block == null || block.peerRefs === 0) throw new RpcError('BAD_FRAME', `ARENA_FREE names ${String(offset)}, which the peer does not hold`)
      block.peerRefs--
      this.maybeFree(offset as number, block)
    }
  }

  /** @internal Through ArenaHolding.release. */
  unhold (offsets: number[]): void {
    for (const offset of offsets) {
      const block = this.blocks.get(offset)
      if (block == null || !block.held) continue
      block.held = false
      this.maybeFree(offset, block)
    }
  }

  /** The link is gone: no more blocks; views already made (resends over tcp read them) stay valid. */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.blocks.clear()
    this.native.arenaClose(this.handle)
  }

  private maybeFree (offset: number, block: Block): void {
    if (block.peerRefs > 0 || block.held || this.closed) return
    this.blocks.delete(offset)
    this.allocator.release(offset, block.length)
  }
}

/** The peer's arena of one link, mapped here: what its ARENA_FRAMEs point into. */
export class IncomingArena {
  readonly bytes: number
  private readonly handle: ArenaHandle
  private readonly bell: number
  private readonly watcher: Watcher
  /** Bytes of views made since this arena last looked whether to ask for a full collection, and how many it waits for. */
  private sinceFull = 0
  private fullEvery: number
  /** @internal The last full collection asked for, once it has been weighed (tests). */
  fullAsked: Promise<void> | undefined

  /**
   * Maps the arena `fd` (the caller closes it). `onFreed` runs, on this loop, soon after
   * views were collected: the sender may be waiting for that room, and a link with no
   * traffic would not look otherwise. Throws what mapping throws (a bad fd from the peer).
   */
  constructor (private readonly native: ShmAddon, fd: number, readonly id: number, onFreed: () => void) {
    this.bell = native.eventfd()
    try {
      this.handle = native.mapArena(fd, this.bell)
      this.bytes = native.arenaBytes(this.handle)
      this.fullEvery = this.bytes / 2
      this.watcher = new native.Watcher(this.bell, true, onFreed)
      this.watcher.start()
    } catch (err) {
      native.closeFd(this.bell)
      throw err
    }
  }

  /**
   * One block as an ArrayBuffer of its own, read in place; its offset comes back from
   * takeFreed() once nothing can reach its memory (the buffer was collected, and so was any
   * buffer its memory was transferred to). Throws BAD_FRAME for a block outside the
   * arena (checked here and again in the addon).
   */
  view (offset: unknown, length: unknown): ArrayBuffer {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || (offset as number) < 0 || (length as number) <= 0 ||
        (offset as number) + (length as number) > this.bytes || (offset as number) % ARENA_ALIGN !== 0) {
      throw new RpcError('BAD_FRAME', `out-of-band block [${String(offset)}, +${String(length)}) is not inside the peer's ${this.bytes}-byte arena`)
    }
    viewsReceived(length as number)
    this.sinceFull += length as number
    if (this.sinceFull >= this.fullEvery) this.maybeCollectFully()
    let buffer: ArrayBuffer
    try {
      buffer = this.native.arenaView(this.handle, offset as number, length as number, true)
    } catch (err) {
      throw new RpcError('BAD_FRAME', `out-of-band block refused: ${(err as Error).message}`)
    }
    return buffer
  }

  /**
   * Views kept past two young collections need a full one (see young-collection.ts): asked
   * for when live views hold over half the arena. When they still do after it, they are
   * kept, not garbage: ask half as often (down to once per 8 arenas received).
   */
  private maybeCollectFully (): void {
    this.sinceFull = 0
    if (this.native.arenaHeld(this.handle) <= this.bytes / 2) {
      this.fullEvery = this.bytes / 2
      return
    }
    this.fullAsked = collectFully()?.then(() => {
      let held: number
      try {
        held = this.native.arenaHeld(this.handle)
      } catch {
        return // closed meanwhile
      }
      this.fullEvery = held > this.bytes / 2 ? Math.min(2 * this.fullEvery, 8 * this.bytes) : this.bytes / 2
    }, () => {})
  }

  /** Offsets of blocks whose memory no view can reach any more, since the last call. */
  takeFreed (): number[] {
    return this.native.arenaTakeFreed(this.handle)
  }

  close (): void {
    // Closed first: from here on no collected view writes the bell, so its fd can go.
    this.native.arenaClose(this.handle)
    this.watcher.close()
    this.native.closeFd(this.bell)
  }
}
