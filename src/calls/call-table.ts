/**
 * The caller's side of every call: ids, futures, deadlines, acks and resends. Each call
 * ends exactly once: with the reply, the callee's error, or one of TIMEOUT (its
 * deadline), PEER_NOT_FOUND (no link to its peer in time, or the peer went away while
 * holding it), CANCELLED, CLOSED, OVERLOADED, BAD_ARGUMENT or BAD_FRAME.
 *
 * A call's life:
 *
 * ```
 *  start ──► waiting ──(link up)──► sent ──(ACK)──► acked ──(REPLY/ERROR)──► ended
 *               │                    │                 │
 *               │ lookup timeout     └──(link lost)──► orphaned ──(same process back)──► resent
 *               ▼                                          │ grace over / peer restarted
 *         PEER_NOT_FOUND                                   ▼
 *                                                     PEER_NOT_FOUND
 * ```
 *
 * A sent call that is neither acked nor answered within a while is also resent (resendUnacked:
 * a frame lost on a forwarded path). A resend carries the same id, and the callee runs an id
 * at most once (see DedupTable).
 */
import { randomInt } from 'node:crypto'
import { performance } from 'node:perf_hooks' // not the global, whose every read runs Node's lazy getter
import { logger } from '@libp2p/logger'
import { encodeFrame, frameBytes, FrameType, releaseFrame, sealFrame } from '../codec/frame.js'
import { RpcError, describeCall, errorFromWire, type RpcErrorCode } from '../errors/rpc-error.js'
import { tensorsTo } from '../tensor/tensor.js'
import { Deadlines } from './deadlines.js'
import { IdTable } from './id-table.js'
import { Future } from './future.js'

const log = logger('cohort:calls')

/** Calls up to this size are resent whatever their path; larger ones only when no direct link carries them. */
const RESEND_ANY_PATH_BYTES = 64 * 1024

export interface CallTableInit {
  /** Calls in flight at once; more fail with OVERLOADED. */
  maxInflight: number
  /** Largest frame a peer accepts; larger calls fail with BAD_FRAME before leaving. */
  maxFrameBytes: number
  /** How long a call waits for a link to its peer before PEER_NOT_FOUND. */
  lookupTimeoutMs: number
  /** How long a sent call waits for its peer's lost link to come back before PEER_NOT_FOUND. */
  reconnectGraceMs: number
  /** Device the tensors of a result are moved to before the caller gets it ('cpu': as they arrive). */
  resultDevice: string
  /** Puts a frame on the peer's link; false when there is no link now. */
  send: (peer: string, frame: Uint8Array, callId?: number) => boolean
  /** Whether a direct link to the peer exists (TCP then delivers, so large calls are not resent blindly). */
  hasLink?: (peer: string) => boolean
}

type CallState = 'waiting' | 'sent' | 'acked' | 'orphaned'

/**
 * An ended call lets go of its frame, timers and future (see CallTable.forget): by then it
 * may sit in the old generation, and whatever young objects a dead old object points to
 * survive every scavenge until the next full GC, and are promoted in turn. In pipelined
 * calls over shm that kept about 1.1 KB of every ended call alive through scavenges (15–25%
 * of the young generation survived each one, against under 1% once ended calls let go),
 * and each scavenge took 3–8 ms instead of 0.5.
 */
class PendingCall {
  state: CallState = 'waiting'
  lookupTimer?: NodeJS.Timeout
  sentAt = 0
  /** performance.now() at which it fails with TIMEOUT (see Deadlines), set once its frame has gone or waits for a link. */
  deadlineAt = Infinity
  awaitingDeadline = false
  resends = 0

  constructor (
    readonly id: number,
    readonly peer: string,
    readonly fn: string,
    public frame: Uint8Array,
    readonly timeoutMs: number,
    public future: Future<any> | undefined
  ) {}
}

const NO_FRAME = new Uint8Array(0)
/** A peer's round trip is sampled on its first reply and then on every this-many-th. */
const RTT_SAMPLE_EVERY = 8

interface RoundTrips {
  /** EWMA of the samples, ms. */
  ms: number
  replies: number
}

export interface CallCounters {
  started: number
  succeeded: number
  failed: Partial<Record<RpcErrorCode, number>>
  resent: number
  strayReplies: number
}

export class CallTable {
  /** Random base, so ids of a restarted process do not repeat its predecessor's. */
  private nextId = randomInt(1, 2 ** 31)
  /** Outstanding calls by id; the lowest id is the low water mark. */
  private readonly calls = new IdTable<PendingCall>()
  private readonly waiting = new Map<string, Set<PendingCall>>()
  private readonly graceTimers = new Map<string, NodeJS.Timeout>()
  private readonly deadlines = new Deadlines<PendingCall>(call => { this.expire(call) })
  /** Every future's onCancel: one function for all, not a closure per call. */
  private readonly dropCancelled = (future: Future<any>): RpcError | undefined => this.drop(future)
  private closed?: RpcError
  /** Round trip (send to reply) per peer: the latency estimate until a bandit supplies one (see take()). */
  private readonly rtts = new Map<string, RoundTrips>()
  readonly counters: CallCounters = { started: 0, succeeded: 0, failed: {}, resent: 0, strayReplies: 0 }

  constructor (private readonly init: CallTableInit) {}

  get inflight (): number {
    return this.calls.size
  }

  /** Outstanding calls per peer, for debugInfo. */
  perPeer (): Map<string, number> {
    const out = new Map<string, number>()
    for (const call of this.calls.values()) out.set(call.peer, (out.get(call.peer) ?? 0) + 1)
    return out
  }

  start<T> (peer: string, fn: string, args: unknown[], timeoutMs: number): Future<T> {
    const future = new Future<T>(this.dropCancelled)
    this.counters.started++
    if (this.closed != null) return this.failNew(future, this.closed)
    if (typeof peer !== 'string' || peer === '') return this.failNew(future, new RpcError('BAD_ARGUMENT', `peer name must be a non-empty string, got ${typeof peer}`))
    if (typeof fn !== 'string' || fn === '') return this.failNew(future, new RpcError('BAD_ARGUMENT', `function name must be a non-empty string, got ${typeof fn}`, { peer }))
    if (this.calls.size >= this.init.maxInflight) {
      return this.failNew(future, new RpcError('OVERLOADED', `${describeCall(peer, fn)}: ${this.calls.size} calls already in flight (maxInflight)`, { peer, fn }))
    }
    const id = this.nextId++
    let frame: Uint8Array
    try {
      // Large byte arguments beside the frame: a shm link puts them in its arena (one copy).
      frame = encodeFrame([FrameType.CALL, id, fn, args, timeoutMs, this.lowWater(id)], { outOfBand: true })
    } catch (err) {
      return this.failNew(future, new RpcError('BAD_ARGUMENT', `${describeCall(peer, fn)}: arguments cannot be encoded: ${(err as Error).message}`, { peer, fn }))
    }
    if (frameBytes(frame) > this.init.maxFrameBytes) {
      return this.failNew(future, new RpcError('BAD_FRAME', `${describeCall(peer, fn)}: arguments encode to ${frameBytes(frame)} bytes, above the frame limit of ${this.init.maxFrameBytes}`, { peer, fn }))
    }
    const call = new PendingCall(id, peer, fn, frame, timeoutMs, future)
    this.calls.add(call)
    if (!this.transmit(call)) this.wait(call)
    // The clock and the deadline after the send, out of the way of the reply (the callee is
    // working meanwhile); unless the send ended the call already (a link that failed under it).
    if (this.calls.get(id) === call) {
      call.deadlineAt = (call.sentAt > 0 ? call.sentAt : performance.now()) + timeoutMs
      this.deadlines.add(call)
    }
    // Kept for resends: from here on it must not refer to the caller's buffers (sending sealed it already, if it left).
    sealFrame(frame)
    return future
  }

  onReply (peer: string, id: unknown, value: unknown): void {
    const call = this.take(peer, id)
    if (call == null) return
    if (this.init.resultDevice !== 'cpu') {
      try {
        value = tensorsTo(value, this.init.resultDevice)
      } catch (err) {
        this.fail(call, new RpcError('BAD_ARGUMENT', `${describeCall(peer, call.fn)}: the result's tensors could not be moved to device '${this.init.resultDevice}': ${(err as Error).message}`), false)
        return
      }
    }
    this.counters.succeeded++
    call.future?.resolve(value)
    call.future = undefined
  }

  onError (peer: string, frame: unknown[]): void {
    const call = this.take(peer, frame[1])
    if (call == null) return
    this.fail(call, errorFromWire(peer, call.fn, frame[2], frame[3], frame[4], frame[5]), false)
  }

  /** The peer was pruned from the directory: its round-trip estimate goes too. */
  forgetPeer (peer: string): void {
    this.rtts.delete(peer)
  }

  onAck (peer: string, id: unknown): void {
    const call = typeof id === 'number' ? this.calls.get(id) : undefined
    if (call != null && call.peer === peer && call.state === 'sent') call.state = 'acked'
  }

  /** The peer has a link: send what waited for it, and deal with what was in flight. */
  onPeerUp (peer: string, restarted: boolean): void {
    clearTimeout(this.graceTimers.get(peer))
    this.graceTimers.delete(peer)
    for (const call of this.calls.values()) {
      if (call.peer !== peer || call.state === 'waiting') continue
      if (restarted) {
        // The process that held the call is gone; the new one never saw it.
        this.fail(call, new RpcError('PEER_NOT_FOUND', `${describeCall(peer, call.fn)}: the peer restarted while the call was in flight`, { peer, fn: call.fn }))
      } else if (call.state === 'orphaned') {
        this.resend(call)
      }
    }
    this.flush(peer)
  }

  /** Tries again to send the calls waiting for `peer` (it became reachable some way). */
  flush (peer: string): void {
    const waiting = this.waiting.get(peer)
    if (waiting == null) return
    this.waiting.delete(peer)
    for (const call of waiting) {
      clearTimeout(call.lookupTimer)
      call.lookupTimer = undefined
      if (!this.transmit(call)) this.wait(call)
    }
  }

  /**
   * One of several links to the peer closed: what was in flight may have been lost with
   * it, so it is sent again on what remains (the callee runs each id at most once and
   * answers a repeat with the stored reply).
   */
  onLinkLost (peer: string): void {
    for (const call of this.calls.values()) {
      if (call.peer === peer && (call.state === 'sent' || call.state === 'acked')) this.resend(call)
    }
  }

  /** The peer's last link is gone: calls it held wait a grace period for it to come back. */
  onPeerDown (peer: string): void {
    let orphans = 0
    for (const call of this.calls.values()) {
      if (call.peer === peer && (call.state === 'sent' || call.state === 'acked')) {
        call.state = 'orphaned'
        orphans++
      }
    }
    if (orphans === 0 || this.graceTimers.has(peer)) return
    this.graceTimers.set(peer, setTimeout(() => {
      this.graceTimers.delete(peer)
      for (const call of this.calls.values()) {
        if (call.peer === peer && call.state === 'orphaned') {
          this.fail(call, new RpcError('PEER_NOT_FOUND', `${describeCall(peer, call.fn)}: the connection to the peer was lost and did not come back within ${this.init.reconnectGraceMs} ms`, { peer, fn: call.fn }))
        }
      }
    }, this.init.reconnectGraceMs))
  }

  /**
   * Sends again the calls sent but neither acked nor answered for `afterMs` (doubling per
   * resend): a frame lost on a forwarded path, or dropped by a callee too busy to take it,
   * then costs a resend instead of the whole deadline. Same id, so the callee runs it at most once.
   */
  resendUnacked (afterMs: number): void {
    const now = performance.now()
    for (const call of this.calls.values()) {
      if (call.state === 'sent' && now - call.sentAt >= afterMs * 2 ** Math.min(call.resends, 4) &&
          (frameBytes(call.frame) <= RESEND_ANY_PATH_BYTES || this.init.hasLink?.(call.peer) !== true)) {
        call.resends++
        this.resend(call)
      }
    }
  }

  /** The peer is known dead: calls it holds end now with PEER_NOT_FOUND (calls still waiting keep their lookup timer, in case it comes back). */
  failPeer (peer: string, why: string): void {
    for (const call of this.calls.values()) {
      if (call.peer === peer && call.state !== 'waiting') this.fail(call, new RpcError('PEER_NOT_FOUND', `${describeCall(peer, call.fn)}: ${why}`, { peer, fn: call.fn }))
    }
  }

  /** Fails every outstanding call with `error` (CLOSED on close()); new calls fail the same way. */
  close (error: RpcError): void {
    this.closed = error
    for (const timer of this.graceTimers.values()) clearTimeout(timer)
    this.graceTimers.clear()
    for (const call of this.calls.values()) {
      this.fail(call, new RpcError(error.code, `${describeCall(call.peer, call.fn)}: ${error.message}`, { peer: call.peer, fn: call.fn }))
    }
    this.deadlines.clear()
  }

  /** The deadline of a call passed. */
  private expire (call: PendingCall): void {
    if (this.calls.get(call.id) !== call) return
    const where = call.state === 'waiting' ? ' (it never reached the peer)' : call.state === 'acked' ? ' (the peer was still working on it)' : ''
    this.fail(call, new RpcError('TIMEOUT', `${describeCall(call.peer, call.fn)} timed out after ${call.timeoutMs / 1000} s${where}`, { peer: call.peer, fn: call.fn }))
  }

  private lowWater (fallback: number): number {
    return this.calls.lowest() ?? fallback
  }

  private wait (call: PendingCall): void {
    // Ended already (a send that threw, see transmit): nothing to wait for.
    if (this.calls.get(call.id) !== call) return
    call.state = 'waiting'
    let set = this.waiting.get(call.peer)
    if (set == null) this.waiting.set(call.peer, set = new Set())
    set.add(call)
    call.lookupTimer ??= setTimeout(() => {
      call.lookupTimer = undefined
      if (call.state !== 'waiting' || this.calls.get(call.id) !== call) return
      this.fail(call, new RpcError('PEER_NOT_FOUND', `${describeCall(call.peer, call.fn)}: no peer named '${call.peer}' is connected (waited ${this.init.lookupTimeoutMs / 1000} s)`, { peer: call.peer, fn: call.fn }))
    }, Math.min(this.init.lookupTimeoutMs, call.timeoutMs))
  }

  /**
   * Puts the call's frame on its peer's link; false (state untouched) when there is none.
   * A send that throws is a fault of the send path, not a lost link (send() says false for
   * that): the call ends with it here, once, and false; the caller's other calls go on.
   */
  private transmit (call: PendingCall): boolean {
    let sent: boolean
    try {
      sent = this.init.send(call.peer, call.frame, call.id)
    } catch (err) {
      const error = err instanceof RpcError ? err : new RpcError('BAD_FRAME', `${describeCall(call.peer, call.fn)}: the call could not be sent: ${(err as Error)?.message ?? String(err)}`, { peer: call.peer, fn: call.fn })
      this.fail(call, error)
      return false
    }
    if (!sent) return false
    call.state = 'sent'
    // Read once the frame has gone: before, the read (65-70 ns) sat between the call and its publish.
    call.sentAt = performance.now()
    return true
  }

  private resend (call: PendingCall): void {
    if (!this.transmit(call)) return // still orphaned: the grace timer decides
    this.counters.resent++
    log('resent call %d (%s on %s)', call.id, call.fn, call.peer)
  }

  /** The peer's round trip, an EWMA in ms; undefined before its first reply. */
  rttMs (peer: string): number | undefined {
    return this.rtts.get(peer)?.ms
  }

  /**
   * The call a reply or error ends, if it is ours. Its round trip is a sample for the
   * peer's estimate: the first reply's, then every RTT_SAMPLE_EVERY-th one's. The clock
   * read is 65-70 ns between a reply and the caller's continuation; an average of a
   * peer's round trips does not need each one.
   */
  private take (peer: string, id: unknown): PendingCall | undefined {
    const call = typeof id === 'number' ? this.calls.get(id) : undefined
    if (call != null && call.peer === peer && call.sentAt > 0) {
      const rtt = this.rtts.get(peer)
      if (rtt == null) {
        this.rtts.set(peer, { ms: performance.now() - call.sentAt, replies: 1 })
      } else if (++rtt.replies % RTT_SAMPLE_EVERY === 0) {
        rtt.ms = rtt.ms * 0.8 + (performance.now() - call.sentAt) * 0.2
      }
    }
    if (call == null || call.peer !== peer) {
      // A reply for a call that already ended (timed out, cancelled) or a confused peer.
      this.counters.strayReplies++
      return undefined
    }
    this.forget(call)
    return call
  }

  private fail (call: PendingCall, error: RpcError, forget = true): void {
    if (forget) this.forget(call)
    this.countFailure(error.code)
    call.future?.reject(error)
    call.future = undefined
  }

  private failNew<T> (future: Future<T>, error: RpcError): Future<T> {
    this.countFailure(error.code)
    future.reject(error)
    return future
  }

  private countFailure (code: RpcErrorCode): void {
    this.counters.failed[code] = (this.counters.failed[code] ?? 0) + 1
  }

  private forget (call: PendingCall): void {
    this.calls.delete(call)
    // Never sent again: arena blocks it held for a resend may go.
    releaseFrame(call.frame)
    this.deadlines.remove(call)
    if (call.lookupTimer != null) clearTimeout(call.lookupTimer)
    if (call.state === 'waiting') this.waiting.get(call.peer)?.delete(call)
    // It holds nothing of its own from here on (see PendingCall); its future goes once settled.
    call.frame = NO_FRAME
    call.lookupTimer = undefined
  }

  /** A cancelled future: forget its call so a late reply is dropped as stray. */
  private drop (future: Future<any>): RpcError | undefined {
    const call = this.calls.find(call => call.future === future)
    if (call == null) return undefined
    this.forget(call)
    this.countFailure('CANCELLED')
    return new RpcError('CANCELLED', `${describeCall(call.peer, call.fn)}: cancelled by the caller`, { peer: call.peer, fn: call.fn })
  }
}
