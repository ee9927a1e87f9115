/**
 * The callee's side of every call: admits a CALL frame through the caller's DedupTable
 * (at-most-once), runs the endpoint, and sends exactly one REPLY or ERROR frame back.
 * A handler that throws or rejects becomes REMOTE_ERROR for the caller; nothing a
 * handler or a caller does can throw out of here.
 *
 * Calls still running when the loop turns get an ACK, so a caller knows the callee holds
 * them; calls answered within the same turn need none (the reply says it all).
 */
import { logger } from '@libp2p/logger'
import { encodeFrame, frameBytes, FrameType, sealFrame } from '../codec/frame.js'
import { DedupTable } from '../calls/dedup-table.js'
import { RpcError, errorToWire } from '../errors/rpc-error.js'
import { EndpointRegistry, type Endpoint } from './registry.js'
import { Batcher } from './batcher.js'
import { replyFor, type Completion, type Reply } from './queue.js'

const log = logger('cohort:dispatch')

/** What the dispatcher keeps per caller; PeerSession is one. */
export interface CallerSlot {
  readonly name: string
  calleeState: unknown
}

export interface DispatcherInit {
  /** This peer's name, for error messages. */
  selfName: () => string
  /** Calls running at once; more get OVERLOADED. */
  maxRunning: number
  /** Per-caller at-most-once memory (see DedupTable). */
  maxDedupEntries: number
  /** Largest frame the caller accepts. */
  maxFrameBytes: number
  /** Sends a frame to the named peer (a missing link drops it; a resend gets it from the DedupTable). */
  send: (peer: string, frame: Uint8Array) => void
}

export interface DispatchCounters {
  calls: number
  duplicates: number
  notFound: number
  overloaded: number
  handlerErrors: number
  badFrames: number
}

/** One call being served; it ends through `value` or `error`, once. */
class ServedCall implements Completion {
  ended = false
  constructor (
    private readonly dispatcher: Dispatcher,
    readonly caller: CallerSlot,
    readonly dedup: DedupTable,
    readonly id: number
  ) {}

  /** Set once the call counts as running on this endpoint. */
  endpoint?: Endpoint

  value (value: unknown): void {
    this.dispatcher.endWithValue(this, value)
  }

  error (err: unknown): void {
    this.dispatcher.endWithError(this, err)
  }
}

export class Dispatcher {
  running = 0
  readonly counters: DispatchCounters = { calls: 0, duplicates: 0, notFound: 0, overloaded: 0, handlerErrors: 0, badFrames: 0 }
  private acks: ServedCall[] = []
  private readonly tables = new Set<DedupTable>()

  constructor (private readonly registry: EndpointRegistry, private readonly init: DispatcherInit) {}

  onCall (caller: CallerSlot, frame: unknown[]): void {
    const [, id, fn, args, timeoutMs, lowWater] = frame
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) {
      this.counters.badFrames++
      log('dropping CALL from %s with a bad id', caller.name)
      return
    }
    let dedup = caller.calleeState as DedupTable | undefined
    if (!(dedup instanceof DedupTable)) caller.calleeState = dedup = new DedupTable(this.init.maxDedupEntries)
    // Re-added on every call: sweep() drops tables it found empty.
    this.tables.add(dedup)
    if (typeof fn !== 'string' || !Array.isArray(args) || typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || typeof lowWater !== 'number') {
      this.counters.badFrames++
      this.init.send(caller.name, encodeFrame([FrameType.ERROR, id, 'BAD_FRAME', 'RpcError', 'CALL frame lacks a function name, an argument array, a timeout or a low water mark', '']))
      return
    }
    const verdict = dedup.admit(id, timeoutMs, lowWater)
    if (verdict.kind !== 'new') {
      this.counters.duplicates++
      if (verdict.kind === 'running') this.init.send(caller.name, encodeFrame([FrameType.ACK, id]))
      else if (verdict.kind === 'ended') {
        this.init.send(caller.name, verdict.reply ?? encodeFrame([FrameType.ERROR, id, 'OVERLOADED', 'RpcError',
          `peer '${this.init.selfName()}' ran this call, but its reply was lost with the link and was not kept (reply memory limit)`, '']))
      }
      return
    }
    this.counters.calls++
    const endpoint = this.registry.get(fn)
    const call = new ServedCall(this, caller, dedup, id)
    if (endpoint == null) {
      this.counters.notFound++
      this.endWithError(call, new RpcError('FUNCTION_NOT_FOUND', `peer '${this.init.selfName()}' has no function '${fn}'`, { peer: this.init.selfName(), fn }))
      return
    }
    if (this.running >= this.init.maxRunning) {
      this.counters.overloaded++
      this.endWithError(call, new RpcError('OVERLOADED', `peer '${this.init.selfName()}' is running ${this.running} calls (maxRunning); '${fn}' was refused`, { peer: this.init.selfName(), fn }))
      return
    }
    this.running++
    endpoint.running++
    call.endpoint = endpoint
    if (endpoint.batch != null) {
      endpoint.batcher ??= new Batcher(endpoint.batch, batch => { this.run(endpoint, batch.completion, batch.args) })
      endpoint.batcher.add({ completion: call, args })
    } else {
      this.run(endpoint, call, args)
    }
    if (!call.ended) this.ackLater(call)
  }

  /**
   * An endpoint is going away: calls waiting in its queue fail with `error`; calls
   * gathering for a batch run now when `runPending`, else fail with `error` too.
   */
  closeEndpoint (endpoint: Endpoint, error: RpcError, runPending: boolean): void {
    if (endpoint.batcher != null) {
      if (runPending && endpoint.kind !== 'queue') endpoint.batcher.flush()
      else for (const entry of endpoint.batcher.drain()) entry.completion.error(error)
    }
    if (endpoint.kind === 'queue') for (const completion of endpoint.queue.close(error)) completion.error(error)
  }

  /** Drops at-most-once memory past its deadline; call now and then. */
  sweep (now = Date.now()): void {
    for (const table of this.tables) {
      table.sweep(now)
      if (table.size === 0) this.tables.delete(table)
    }
  }

  /** Runs one call, or one stacked batch of calls, on its endpoint. */
  private run (endpoint: Endpoint, completion: Completion, args: unknown[]): void {
    switch (endpoint.kind) {
      case 'plain': this.runPlain(completion, endpoint.fn, args); break
      case 'deferred': this.runDeferred(completion, endpoint.fn, args); break
      case 'queue':
        if (!endpoint.queue.push({ completion, args })) {
          completion.error(new RpcError('OVERLOADED', `queue '${endpoint.name}' on peer '${this.init.selfName()}' is full (${endpoint.queue.length} waiting)`))
        }
        break
    }
  }

  private runPlain (completion: Completion, fn: (...args: any[]) => unknown, args: unknown[]): void {
    let result: unknown
    try {
      result = fn(...args)
    } catch (err) {
      completion.error(err)
      return
    }
    let then: unknown
    try {
      then = result != null ? (result as PromiseLike<unknown>).then : undefined
      if (typeof then === 'function') {
        then.call(result,
          (value: unknown) => { completion.value(value) },
          (err: unknown) => { completion.error(err) }
        )
        return
      }
    } catch (err) {
      // A hostile or broken promise-like is the handler's failure, not ours.
      completion.error(err)
      return
    }
    completion.value(result)
  }

  private runDeferred (completion: Completion, fn: (reply: Reply, ...args: any[]) => void, args: unknown[]): void {
    const reply = replyFor(completion)
    try {
      fn(reply, ...args)
    } catch (err) {
      reply.error(err)
    }
  }

  /** @internal Through ServedCall.value. */
  endWithValue (call: ServedCall, value: unknown): void {
    if (call.ended) return
    let frame: Uint8Array
    try {
      // Large byte results beside the frame: a shm link puts them in its arena (one copy).
      frame = encodeFrame([FrameType.REPLY, call.id, value], { outOfBand: true })
    } catch (err) {
      this.endWithError(call, new Error(`the result cannot be encoded: ${(err as Error).message}`))
      return
    }
    if (frameBytes(frame) > this.init.maxFrameBytes) {
      this.endWithError(call, new RpcError('BAD_FRAME', `the result encodes to ${frameBytes(frame)} bytes, above the frame limit of ${this.init.maxFrameBytes}`))
      return
    }
    this.end(call, frame)
  }

  /** @internal Through ServedCall.error. */
  endWithError (call: ServedCall, err: unknown): void {
    if (call.ended) return
    const wire = errorToWire(err)
    if (wire.code === 'REMOTE_ERROR') this.counters.handlerErrors++
    this.end(call, encodeFrame([FrameType.ERROR, call.id, wire.code, wire.name, wire.message, wire.stack]))
  }

  private end (call: ServedCall, frame: Uint8Array): void {
    call.ended = true
    if (call.endpoint != null) {
      this.running--
      EndpointRegistry.ended(call.endpoint)
    }
    // A new process has taken the caller's name since this call came in: the reply is
    // not for it (its call ids mean other calls).
    if (call.caller.calleeState === call.dedup) this.init.send(call.caller.name, frame)
    // Sent first, so a split reply is sealed by its link's copy rather than by a copy of its own;
    // then kept for a resend (the dedup table releases it).
    sealFrame(frame)
    call.dedup.end(call.id, frame)
  }

  private ackLater (call: ServedCall): void {
    if (this.acks.length === 0) setImmediate(() => { this.sendAcks() })
    this.acks.push(call)
  }

  private sendAcks (): void {
    const calls = this.acks
    this.acks = []
    for (const call of calls) {
      if (!call.ended) this.init.send(call.caller.name, encodeFrame([FrameType.ACK, call.id]))
    }
  }
}
