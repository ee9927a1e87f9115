/**
 * A `Link` over a shared-memory segment: frames go into this side's ring in place and
 * come out of the peer's ring in place; no system call per message while both sides are
 * busy. Wake-ups: each side has an eventfd doorbell watched by `uv_poll` on its own loop,
 * rung only when the consumer said it sleeps (see ring.ts and native/ring_layout.h).
 *
 * While traffic is recent the consumer keeps polling its ring once per loop turn
 * (`setImmediate`, so other I/O still runs; a turn that found nothing first waits on the
 * ring for up to 20 µs, WAIT_IN_TURN_MS; the look after a send comes sooner, as a promise
 * job, up to JOB_POLLS in a row, see pollSoon) for an adaptive window; then it sets its
 * sleeping flag and costs nothing until the doorbell rings. The window doubles when a
 * wake-up came soon after falling asleep (spinning a little longer would have caught
 * it) and halves when sleeps are long (sparse traffic: spinning is waste). Whether it
 * spins at all is the process's SpinGate's call (../loop-spinner.ts), as for TCP: never
 * when the process may use only one CPU (singleCpu() follows the affinity mask, also as
 * it changes, so two peers pinned to one CPU do not spin), nor for a while after a
 * window that did not get the CPU it spun on (a machine busier than it has CPUs): there
 * spinning only steals the time the peer needs to answer.
 *
 * The unix socket the segment came over stays open beside it: when the peer exits or is
 * killed the kernel closes its end, the socket hangs up, and the link closes.
 *
 * Large byte payloads (64 KiB and up: Uint8Array, Buffer, ArrayBuffer, typed arrays, the
 * elements of a cpu Tensor, anywhere in a call's arguments or result) do not go through
 * the ring: the first one makes this side's arena (arena.ts), a memfd whose fd goes over
 * the unix socket; each payload is copied into a block of it and the body travels with
 * the blocks' places (ARENA_FRAME). The receiver hands the user a view of the block, one
 * ArrayBuffer per block, read in place: valid for as long as the user holds it, the block
 * reused only after the view was collected (ARENA_FREE). A full arena sends the payload
 * inline as before. Lifetime rules: codec/out-of-band.ts and the README, "Shared memory".
 *
 * ```ts
 * const link = new ShmLink({ native, memory, role: 'a', myBell, peerBell, socket, ... })
 * link.onFrame = frame => { ... }
 * link.send(encodeFrame([FrameType.ACK, 1]))
 * ```
 */
import { performance } from 'node:perf_hooks' // not the global, whose every read runs Node's lazy getter
import { logger } from '@libp2p/logger'
import { FrameInbox } from '../frame-inbox.js'
import { SpinWindow, singleCpu, spinGate, type SpinToken } from '../loop-spinner.js'
import { decodeFrameBody, decodeSplitFrameBody, encodeFrame, FrameType, HEADER_BYTES, inlineFrame } from '../../codec/frame.js'
import { moveParts, OOB_THRESHOLD, partsOf, valueOf } from '../../codec/out-of-band.js'
import { RpcError } from '../../errors/rpc-error.js'
import { newLinkStats, type Link, type LinkStats } from '../transport.js'
import type { ShmAddon, Watcher } from './native.js'
import { RingConsumer, RingProducer } from './ring.js'
import { IncomingArena, OutgoingArena } from './arena.js'
import { viewCollections } from './young-collection.js'

const RESOLVED = Promise.resolve()

const log = logger('cohort:shm')

/**
 * While spinning, a turn that found nothing waits on the ring itself for up to this long
 * (ms) before giving the loop its turn: the answer to what was just sent usually comes
 * within a few µs, and a loop turn costs about 1.3 µs here before the ring is looked at
 * again. Other I/O waits at most this long. 64 B round trip p50, medians of interleaved
 * runs on a noisy VM: the link alone 7.75 -> 6.05 µs (bench, 8 runs each); through the
 * Rpc 13.2 -> 10.1 µs in a scratch loop (5 each), and in the bench 12.3 -> 12.05 (8 each)
 * in one set, 12.8 -> 7.7 in another (5 each). A single link waits on every such turn;
 * when it waited on every other one (the rule for several links), the bench gave 12.4 µs
 * through the Rpc against 9.0 (5 runs each).
 */
const WAIT_IN_TURN_MS = 0.02
/**
 * The wait looks at the clock once per this many looks at the rings: a clock read costs
 * 65-70 ns here, a look a few, and frames that come between two looks wait for the
 * next one.
 */
const LOOKS_PER_CLOCK_READ = 8
/** Looks at the ring taken as promise jobs between two turns of the loop, at most (see ShmLink.pollSoon). */
const JOB_POLLS = 8
/** When the last such wait in this process ended: with several links, one waits at a time, not one after another in the same turn. */
let lastWaitEnd = -Infinity

/** The message on the unix socket that carries an arena's fd: this, then the arena's id (u32 BE). */
const ARENA_MESSAGE = Buffer.from('cohort-arena/1')

export interface ShmLinkInit {
  native: ShmAddon
  memory: ArrayBuffer
  /** 'a' created the segment and writes ring 0; 'b' attached and writes ring 1. */
  role: 'a' | 'b'
  /** Our doorbell (watched here) and the peer's (written here); both owned by the link. */
  myBell: number
  peerBell: number
  /** The connected unix socket the fds came over; owned by the link. */
  socket: number
  remotePeerId: string
  remoteAddress: string
  direction: 'inbound' | 'outbound'
  maxFrameBytes: number
  /** Size of the arena this side makes for out-of-band payloads when it first sends one (power of two). */
  arenaBytes: number
}

/** Live links, so tests can reach one (see ShmLink.corruptForTest). */
export const liveShmLinks = new Set<ShmLink>()

export class ShmLink implements Link {
  readonly transport = 'shm' as const
  /** send() takes split frames as they are: their parts go through the arena (see arena.ts). */
  readonly outOfBand = true
  readonly remotePeerId: string
  private readonly inbox: FrameInbox
  readonly remoteAddress: string
  readonly direction: 'inbound' | 'outbound'
  readonly stats: LinkStats = newLinkStats()
  onClose: (reason: Error | undefined) => void = () => {}
  /** Why the link closed, once it has (undefined: an orderly close). */
  closeReason?: Error
  /**
   * Doorbell rings sent (`ringsDeferred`: of those, held to the end of a run of JavaScript,
   * see wake) and received, spin windows that caught traffic, looks taken as promise jobs
   * (see pollSoon): for debugInfo.
   */
  readonly wakeups = { rung: 0, ringsDeferred: 0, woken: 0, spinHits: 0, sleeps: 0, jobPolls: 0 }

  private readonly native: ShmAddon
  private readonly memory: ArrayBuffer
  private readonly producer: RingProducer
  private readonly consumer: RingConsumer
  private readonly bell: Watcher
  private readonly hangup: Watcher
  private readonly init: ShmLinkInit
  private queue: Uint8Array[] = []
  private queueAt = 0
  private queuedBytes = 0
  private readonly maxQueuedBytes: number
  private closed = false
  private asleep = false
  private scheduled = false
  private lastTraffic = performance.now()
  /**
   * Frames in other than membership gossip: only these, and our own sends, keep the link
   * spinning. Gossip and SWIM come every 200 ms or so, and each started a spin window of
   * up to 4 ms: 40 ms of CPU a second on each side of an otherwise idle pair.
   */
  private trafficIn = 0
  /** Traffic came on a turn that did not read the clock: the next turn stamps it. */
  private unstamped = false
  private readonly window = new SpinWindow()
  /** Set while awake and allowed to spin: when the window began, for the gate's contention check. */
  private spinning?: SpinToken
  private readonly closeHooks: Array<() => void> = []
  /** Our arena (made on the first large payload) and the peer's (mapped when its fd arrives). */
  private outgoing?: OutgoingArena
  private arenaError?: string
  private incoming?: IncomingArena
  private pendingFrees: number[] = []
  /** Out-of-band parts sent through the arena, payloads that went inline for want of room, parts received. */
  private readonly oob = { sent: 0, sentBytes: 0, inline: 0, received: 0, receivedBytes: 0 }
  /** The loop's turn: the queued poll runs, and looks as promise jobs may start afresh. */
  private readonly pollBound = (): void => {
    this.scheduled = false
    this.jobPolls = 0
    this.poll()
  }

  /** Looks taken as promise jobs since the loop last turned (see pollSoon()). */
  private jobPolls = 0
  private jobPollQueued = false
  private readonly jobPollBound = (): void => {
    this.jobPollQueued = false
    this.wakeups.jobPolls++
    this.poll()
  }
  /** A doorbell ring waits for the end of this run of JavaScript (see wake). */
  private wakePending = false
  private readonly wakeLaterBound = (): void => {
    this.wakePending = false
    // A closed link's peer learns of it from the socket, and reads what was published.
    if (!this.closed) this.ring()
  }
  private readonly decodeBound = (bytes: Uint8Array, start: number, end: number): unknown[] => this.decode(bytes, start, end)

  constructor (init: ShmLinkInit) {
    this.init = init
    this.native = init.native
    this.memory = init.memory
    this.remotePeerId = init.remotePeerId
    this.inbox = new FrameInbox(log, this.remotePeerId)
    this.remoteAddress = init.remoteAddress
    this.direction = init.direction
    this.maxQueuedBytes = 2 * init.maxFrameBytes
    const layout = init.native.layout()
    const mine = init.role === 'a' ? 0 : 1
    this.producer = new RingProducer(init.memory, layout, mine)
    this.consumer = new RingConsumer(init.memory, layout, mine === 0 ? 1 : 0, init.maxFrameBytes)
    this.bell = new init.native.Watcher(init.myBell, true, () => { this.onBell() })
    this.hangup = new init.native.Watcher(init.socket, false, (readable, hup, error) => { this.onSocket(readable, hup, error) })
    this.bell.start()
    this.hangup.start()
    liveShmLinks.add(this)
    const now = performance.now()
    if (spinGate.allows(now)) this.spinning = spinGate.started(now)
    this.schedule()
  }

  get onFrame (): (frame: unknown[]) => void {
    return this.inbox.onFrame
  }

  set onFrame (handler: (frame: unknown[]) => void) {
    this.inbox.onFrame = handler
  }

  get open (): boolean {
    return !this.closed
  }

  send (frame: Uint8Array): void {
    if (this.closed) throw new RpcError('CLOSED', `shm link to ${this.remotePeerId} is closed`)
    if (partsOf(frame) != null) frame = this.throughArena(frame)
    if (this.queuedBytes + frame.byteLength > this.maxQueuedBytes) {
      const err = new RpcError('OVERLOADED', `shm link to ${this.remotePeerId}: over ${this.maxQueuedBytes} bytes queued while the peer does not read`)
      this.close(err)
      throw err
    }
    this.stats.framesOut++
    this.stats.bytesOut += frame.byteLength
    this.queue.push(frame)
    this.queuedBytes += frame.byteLength
    if (this.queue.length > 1) return
    try {
      this.flush()
    } catch (err) {
      // The ring's words make no sense (a peer that scribbled on them): the link is done.
      this.fail(err as Error)
      throw err
    }
    this.pollSoon()
  }

  close (reason?: Error): void {
    if (this.closed) return
    try {
      this.flush()
    } catch {}
    this.finish(reason)
  }

  addCloseHook (hook: () => void): void {
    this.closeHooks.push(hook)
  }

  /** Test hook: scribbles over our ring's head (for good) so the peer finds its ring corrupt. */
  corruptForTest (): void {
    this.producer.corruptForTest()
    this.native.ring(this.init.peerBell)
  }

  /**
   * Test hook: sends an ARENA_FRAME whose block runs past the end of our arena, as a
   * corrupt or hostile peer would; the peer must close the link with BAD_FRAME.
   */
  sendBadPlaceholderForTest (): void {
    const arena = this.arena()
    const split = encodeFrame([FrameType.REPLY, 1, new Uint8Array(OOB_THRESHOLD)], { outOfBand: true })
    const body = Buffer.from(split.buffer, split.byteOffset + HEADER_BYTES, split.byteLength - HEADER_BYTES)
    const bytes = arena?.bytes ?? OOB_THRESHOLD
    this.send(encodeFrame([FrameType.ARENA_FRAME, arena?.id ?? 1, [bytes - 64, OOB_THRESHOLD], body]))
  }

  /**
   * Test hook: sends an ARENA_FRAME whose table names two blocks of `bytes` in our arena
   * and whose body (a reply to no call) names neither, as a careless or hostile peer
   * might. No view of them is ever made, so no collection will report them: the peer
   * must send them back as free by itself. Returns our arena's bytes in use just after.
   */
  sendUnnamedBlocksForTest (bytes: number): number {
    const arena = this.arena()
    const placed = arena?.place([new Uint8Array(bytes), new Uint8Array(bytes)])
    if (arena == null || placed == null) throw new RpcError('OVERLOADED', `no room for two blocks of ${bytes} bytes in the arena`)
    const reply = encodeFrame([FrameType.REPLY, 0, null])
    const body = Buffer.from(reply.buffer, reply.byteOffset + HEADER_BYTES, reply.byteLength - HEADER_BYTES)
    arena.sent(placed.offsets)
    placed.holding.release()
    this.send(encodeFrame([FrameType.ARENA_FRAME, arena.id, [placed.offsets[0], bytes, placed.offsets[1], bytes], body]))
    return arena.inUse
  }

  /** Spin window, wake-up counts and out-of-band traffic, for debugInfo. */
  details (): Record<string, number> {
    const collections = viewCollections()
    return {
      ...this.wakeups,
      spinWindowUs: Math.round(this.window.ms * 1000),
      oobSent: this.oob.sent,
      oobSentBytes: this.oob.sentBytes,
      oobInline: this.oob.inline,
      oobReceived: this.oob.received,
      oobReceivedBytes: this.oob.receivedBytes,
      arenaBytes: this.outgoing?.bytes ?? 0,
      arenaInUse: this.outgoing?.inUse ?? 0,
      peerArenaBytes: this.incoming?.bytes ?? 0,
      arenaFailed: this.arenaError != null ? 1 : 0,
      youngCollections: collections.young,
      fullCollections: collections.full
    }
  }

  /**
   * A split frame: its parts into blocks of our arena (copied now, or the blocks it holds
   * from an earlier send through this arena), the body and the blocks' places into an
   * ARENA_FRAME. No arena or no room: the ordinary frame, through the ring.
   */
  private throughArena (frame: Uint8Array): Uint8Array {
    const split = partsOf(frame)
    const arena = this.arena()
    if (split == null || arena == null) return this.inline(frame)
    let where = arena.again(split.holding)
    if (where == null) {
      const placed = arena.place(split.parts)
      if (placed == null) return this.inline(frame)
      moveParts(frame, placed.views, placed.holding)
      where = placed
    }
    const table: number[] = []
    for (let i = 0; i < where.offsets.length; i++) {
      table.push(where.offsets[i], where.lengths[i])
      this.oob.sent++
      this.oob.sentBytes += where.lengths[i]
    }
    const body = Buffer.from(frame.buffer, frame.byteOffset + HEADER_BYTES, frame.byteLength - HEADER_BYTES)
    const wrapped = encodeFrame([FrameType.ARENA_FRAME, arena.id, table, body])
    arena.sent(where.offsets)
    return wrapped
  }

  private inline (frame: Uint8Array): Uint8Array {
    this.oob.inline++
    return inlineFrame(frame)
  }

  /** Our arena, made and sent to the peer on first use; undefined when that failed (then payloads go inline). */
  private arena (): OutgoingArena | undefined {
    if (this.outgoing != null || this.arenaError != null) return this.outgoing
    let arena: OutgoingArena | undefined
    try {
      arena = OutgoingArena.create(this.native, this.init.arenaBytes, 1)
      const message = Buffer.alloc(ARENA_MESSAGE.byteLength + 4)
      ARENA_MESSAGE.copy(message)
      message.writeUInt32BE(arena.id, ARENA_MESSAGE.byteLength)
      // Sent before any frame that names it: the peer finds it on the socket by then.
      if (!this.native.sendMessage(this.init.socket, message, [arena.fd])) throw new RpcError('OVERLOADED', 'the unix socket is full')
      this.outgoing = arena
    } catch (err) {
      arena?.close()
      this.arenaError = (err as Error).message
      log('no arena for the shm link to %s, large payloads go inline: %s', this.remotePeerId, this.arenaError)
    } finally {
      if (arena != null) closeQuietly(this.native, arena.fd)
    }
    return this.outgoing
  }

  private flush (): void {
    while (this.queue.length > 0 && !this.closed) {
      const frame = this.queue[0]
      this.queueAt = this.producer.write(frame, this.queueAt)
      if (this.queueAt < frame.byteLength) {
        // Full: publish what is in, and have the consumer ring us when it frees room.
        if (this.producer.publish()) this.ring()
        this.stats.writes++
        if (this.producer.waitForRoom()) continue
        return
      }
      this.queue.shift()
      this.queuedBytes -= frame.byteLength
      this.queueAt = 0
    }
    this.stats.writes++
    if (this.producer.publish()) this.wake()
  }

  /**
   * The consumer slept and publish() took its flag: ring it. When it sleeps on the CPU we
   * run on (two processes pinned to one, or met there by chance), not before this run of JavaScript has written
   * all it will: a woken peer on our CPU takes it at once, so ringing after the first of a
   * turn's calls had the two trade the CPU about every ten frames. A promise job runs after
   * the continuations already queued, which is where a turn's calls are made.
   */
  private wake (): void {
    if (this.wakePending) return
    if (!this.peerOnOurCpu()) {
      this.ring()
      return
    }
    this.wakePending = true
    this.wakeups.ringsDeferred++
    RESOLVED.then(this.wakeLaterBound)
  }

  private ring (): void {
    this.wakeups.rung++
    this.native.ring(this.init.peerBell)
  }

  /**
   * After a send while spinning, the next look at the ring is a promise job: it runs once
   * the code that sent is done, not after the loop's next turn, which costs about as long
   * here (1.3 µs) as the peer takes to answer a small call. At most JOB_POLLS such looks
   * in a row; the loop's turn in between resets the count, so timers and other I/O wait
   * at most that many looks.
   */
  private pollSoon (): void {
    if (this.jobPollQueued || this.spinning == null || this.jobPolls >= JOB_POLLS) return
    this.jobPollQueued = true
    this.jobPolls++
    // A plain promise job, not queueMicrotask (see router.ts); poll() throws nothing.
    RESOLVED.then(this.jobPollBound)
  }

  private schedule (): void {
    if (this.scheduled || this.closed) return
    this.scheduled = true
    setImmediate(this.pollBound)
  }

  private poll (): void {
    // A look that waited in its turn and found frames looks again at once: in a loop, not
    // by recursion, since a frame larger than the ring comes in piece after piece.
    while (this.pollOnce());
  }

  /**
   * One look at the ring: read, write what waits, then spin on (next turn) or sleep.
   * True when it waited on the ring and frames came: look again now.
   */
  private pollOnce (): boolean {
    if (this.closed) return false
    const framesBefore = this.stats.framesIn
    const trafficBefore = this.trafficIn
    const queuedBefore = this.queuedBytes
    const queueAtBefore = this.queueAt
    const frames: unknown[][] = []
    try {
      if (this.consumer.read(this.decodeBound, frames)) this.ring()
    } catch (err) {
      this.fail(err as Error)
      return false
    }
    for (let i = 0; i < frames.length && !this.closed; i++) this.deliver(frames[i])
    try {
      // Frees of collected views go when the arena's bell rings (idleFrees), not on every
      // poll: asking the addon on each one was an N-API call between every reply and the
      // caller's next call once any large payload had come. Blocks a frame never named
      // (fromArena) are known here, and go now.
      if (this.pendingFrees.length > 0 && !this.closed) this.sendFrees()
      if (this.queue.length > 0 && !this.closed) this.flush()
    } catch (err) {
      this.fail(err as Error)
      return false
    }
    if (this.closed) return false
    // Idle now (nothing came this turn), or about to sleep below: free what was read, out
    // of the way of the calls themselves (see ring.ts).
    const idle = this.stats.framesIn === framesBefore
    if (idle && this.consumer.release()) this.ring()
    if (this.trafficIn !== trafficBefore && this.spinning != null && !this.peerOnOurOnlyCpu()) {
      // Calls or replies came while spinning: the window goes on, and the next turn reads
      // the clock and stamps them. A read here (65-70 ns) would sit between a reply and
      // the caller's next call, which runs once this turn returns.
      this.unstamped = true
      this.schedule()
      return false
    }
    const now = performance.now()
    if (this.unstamped || this.trafficIn !== trafficBefore || this.queuedBytes !== queuedBefore || this.queueAt !== queueAtBefore) this.lastTraffic = now
    this.unstamped = false
    if (this.spinning != null && now - this.lastTraffic < this.window.ms && !this.peerOnOurOnlyCpu(now) && !spinGate.crowded(this.spinning, now)) {
      if (idle && (liveShmLinks.size === 1 || now - lastWaitEnd >= WAIT_IN_TURN_MS) && this.waitInTurn(now)) return true
      this.schedule()
      return false
    }
    if (!idle && this.consumer.release()) this.ring()
    // A poll queued before the link went to sleep: its flag is up, the doorbell wakes it.
    if (this.asleep) return false
    if (!this.consumer.sleep(this.native.currentCpu())) {
      this.schedule()
      return false
    }
    this.asleep = true
    this.window.slept(now)
    if (this.spinning != null) spinGate.ended(this.spinning, now)
    this.spinning = undefined
    this.wakeups.sleeps++
    return false
  }

  /**
   * Whether we may run on one CPU only and the peer last ran on it: then it cannot answer
   * while we spin, and spinning only keeps it waiting for our time slice (two processes
   * pinned to one CPU sometimes settled into one spinning for good, at 34 µs a round trip
   * instead of 10). Unpinned peers are left to the spin gate: a CPU they shared a moment
   * ago says little about the next one.
   */
  private peerOnOurOnlyCpu (now?: number): boolean {
    return singleCpu(now) && this.peerOnOurCpu()
  }

  /** Whether the peer last went to sleep, or woke, on the CPU we run on now. */
  private peerOnOurCpu (): boolean {
    return this.producer.consumerCpu() === this.native.currentCpu()
  }

  /**
   * Spins on the rings for up to WAIT_IN_TURN_MS. True when ours has frames (read them at
   * once); frames on another link end the wait too (its poll is queued behind this one).
   */
  private waitInTurn (now: number): boolean {
    const until = now + WAIT_IN_TURN_MS
    let mine = false
    let clock = now
    for (let looks = 1; ; looks++) {
      if (this.consumer.pending()) {
        mine = true
        break
      }
      if (liveShmLinks.size > 1 && anotherHasFrames(this)) {
        // Its poll waits for the loop's turn: no more looks as promise jobs before it.
        this.jobPolls = JOB_POLLS
        break
      }
      if (looks % LOOKS_PER_CLOCK_READ === 0 && (clock = performance.now()) >= until) break
    }
    // The last clock read stands for the end: a read after frames came would be on their path.
    lastWaitEnd = clock
    return mine
  }

  /** Whether frames wait in this link's ring. */
  hasFrames (): boolean {
    return !this.closed && this.consumer.pending()
  }

  private onBell (): void {
    if (this.closed) return
    this.jobPolls = 0
    this.wakeups.woken++
    if (this.asleep) {
      this.asleep = false
      const cpu = this.native.currentCpu()
      this.consumer.awake(cpu)
      const now = performance.now()
      this.window.woke(now)
      if (spinGate.allows(now)) this.spinning = spinGate.started(now)
    } else {
      this.wakeups.spinHits++
    }
    this.poll()
  }

  private onSocket (readable: boolean, hangup: boolean, error: string | undefined): void {
    if (this.closed) return
    let gone = hangup || error != null
    if (readable && !gone) {
      try {
        gone = this.readSocket()
      } catch {
        gone = true
      }
    }
    if (!gone) return
    // What the peer published before it went is good: take it, then close.
    const frames: unknown[][] = []
    try {
      this.consumer.read(this.decodeBound, frames)
    } catch {}
    for (let i = 0; i < frames.length && !this.closed; i++) this.deliver(frames[i])
    if (this.closed) return
    const midFrame = this.consumer.midFrame ? ' in the middle of a frame' : ''
    this.finish(new RpcError('CLOSED', `shm link to ${this.remotePeerId}: the peer closed it or exited${midFrame}`))
  }

  /** Runs inside the ring read: copies everything out of the ring (see RingConsumer.read). */
  private decode (bytes: Uint8Array, start: number, end: number): unknown[] {
    this.stats.framesIn++
    this.stats.bytesIn += end - start
    const frame = decodeFrameBody(bytes, true, start + HEADER_BYTES, end)
    if (frame[0] !== FrameType.GOSSIP) this.trafficIn++
    return frame[0] === FrameType.ARENA_FRAME ? this.fromArena(frame) : frame
  }

  /**
   * An ARENA_FRAME: the frame inside, each part a view of its block in the peer's arena
   * (read in place; the block is reported free once the view is collected). Throws
   * BAD_FRAME for an arena never sent or a block outside it.
   */
  private fromArena (outer: unknown[]): unknown[] {
    const [, id, table, body] = outer
    // The fd went over the socket before this frame; the watcher may not have run yet.
    if (this.incoming?.id !== id) this.readSocket()
    const arena = this.incoming
    if (arena == null || arena.id !== id) throw new RpcError('BAD_FRAME', `a frame names arena ${String(id)}, which the peer never sent`)
    if (!Array.isArray(table) || table.length % 2 !== 0 || !(body instanceof Uint8Array)) throw new RpcError('BAD_FRAME', 'ARENA_FRAME is not [type, id, [offset, length, ...], body]')
    const count = table.length / 2
    const values: unknown[] = new Array(count)
    const used = new Uint8Array(count)
    let frame: unknown[]
    try {
      frame = decodeSplitFrameBody(body, (index, kind, dtypeCode, shape) => {
        if (index < 0 || index >= count) throw new Error(`placeholder ${index} of ${count} parts`)
        if (used[index] === 0) {
          used[index] = 1
          const bytes = new Uint8Array(arena.view(table[2 * index], table[2 * index + 1]))
          this.oob.received++
          this.oob.receivedBytes += bytes.byteLength
          values[index] = valueOf(bytes, kind, dtypeCode, shape)
        }
        return values[index]
      })
    } finally {
      // Blocks the body never named are free at once.
      for (let i = 0; i < count; i++) if (used[i] === 0 && Number.isSafeInteger(table[2 * i])) this.pendingFrees.push(table[2 * i])
    }
    return frame
  }

  /** Reports the peer's blocks whose views were collected (ARENA_FREE), so it can reuse them. */
  private sendFrees (): void {
    const arena = this.incoming
    if (arena == null) return
    const freed = arena.takeFreed()
    for (const offset of freed) this.pendingFrees.push(offset)
    if (this.pendingFrees.length === 0) return
    const offsets = this.pendingFrees
    this.pendingFrees = []
    this.send(encodeFrame([FrameType.ARENA_FREE, arena.id, ...offsets]))
  }

  /** ARENA_FREE from the peer: blocks of our arena it is done with. */
  private onArenaFree (frame: unknown[]): void {
    if (this.outgoing == null || frame[1] !== this.outgoing.id) throw new RpcError('BAD_FRAME', `ARENA_FREE for arena ${String(frame[1])}, which we never sent`)
    this.outgoing.peerFreed(frame.slice(2))
  }

  /**
   * Reads what waits on the unix socket: the peer's arena (mapped and kept), anything
   * else is closed. True when the peer hung up.
   */
  private readSocket (): boolean {
    for (let i = 0; i < 16; i++) {
      const message = this.native.receiveMessage(this.init.socket)
      if (message == null) return false
      if (message.data.byteLength === 0) {
        for (const fd of message.fds) closeQuietly(this.native, fd)
        return true
      }
      const data = Buffer.from(message.data)
      if (this.incoming == null && message.fds.length === 1 && data.byteLength === ARENA_MESSAGE.byteLength + 4 &&
          data.subarray(0, ARENA_MESSAGE.byteLength).equals(ARENA_MESSAGE)) {
        try {
          this.incoming = new IncomingArena(this.native, message.fds[0], data.readUInt32BE(ARENA_MESSAGE.byteLength), () => { this.idleFrees() })
        } catch (err) {
          // Frames that name it will close the link with BAD_FRAME.
          log.error('cannot map the arena of %s: %s', this.remotePeerId, (err as Error).message)
        }
      }
      for (const fd of message.fds) closeQuietly(this.native, fd)
    }
    return false
  }

  /** The arena's bell: views were collected. Report their blocks now, traffic or not, so the peer's arena does not stay full. */
  private idleFrees (): void {
    if (this.closed) return
    try {
      this.sendFrees()
    } catch (err) {
      this.fail(err as Error)
    }
  }

  private deliver (frame: unknown[]): void {
    if (this.closed) return
    if (frame[0] === FrameType.ARENA_FREE) {
      try {
        this.onArenaFree(frame)
      } catch (err) {
        this.fail(err as Error)
      }
      return
    }
    this.inbox.deliver(frame)
  }

  /** Bad bytes: drop the link, never the process. */
  private fail (err: Error): void {
    log.error('closing shm link to %s: %s', this.remotePeerId, err.message)
    this.finish(err)
  }

  private finish (reason: Error | undefined): void {
    if (this.closed) return
    this.closed = true
    this.closeReason = reason
    this.queue = []
    this.queuedBytes = 0
    liveShmLinks.delete(this)
    // Values made from either arena stay valid: the mappings go with their last view.
    this.outgoing?.close()
    this.incoming?.close()
    this.pendingFrees = []
    this.bell.close()
    this.hangup.close()
    for (const fd of [this.init.socket, this.init.myBell, this.init.peerBell]) {
      try {
        this.native.closeFd(fd)
      } catch {}
    }
    // Views over the segment become empty; the mapping goes with the last of them.
    this.native.unmapSegment(this.memory)
    for (const hook of this.closeHooks) hook()
    this.onClose(reason)
  }
}

function anotherHasFrames (self: ShmLink): boolean {
  for (const link of liveShmLinks) if (link !== self && link.hasFrames()) return true
  return false
}

function closeQuietly (native: ShmAddon, fd: number): void {
  try {
    native.closeFd(fd)
  } catch {}
}
