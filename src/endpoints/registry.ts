/**
 * The functions this peer serves, by name: plain (`define`), deferred (`defineDeferred`)
 * and queue-served (`defineQueue`). Tracks calls in flight per endpoint so `undefine`
 * can wait for them.
 */
import { RpcError } from '../errors/rpc-error.js'
import { getDevice } from '../tensor/device.js'
import type { Batcher, BatchSpec } from './batcher.js'
import { Queue, type Reply } from './queue.js'

export interface EndpointOptions {
  /** Gather up to this many calls and run the function once for all of them (see README "Batching"). */
  batchSize?: number
  /** Device the batch's tensors are stacked on; 'cpu' unless another was registered. */
  device?: string
  /** Longest wait of a partial batch's oldest call before the batch runs anyway (default 10 ms). */
  maxWaitMs?: number
}

export interface QueueOptions extends EndpointOptions {
  /** Each take hands the consumer whatever has queued, 1..batchSize calls, as one batch. */
  dynamicBatching?: boolean
  /** Calls (or batches) that may wait in the queue; more fail with OVERLOADED. */
  maxQueued?: number
}

export type PlainHandler = (...args: any[]) => unknown
export type DeferredHandler = (reply: Reply, ...args: any[]) => void

interface EndpointState {
  name: string
  running: number
  drained?: () => void
  /** Set for a batched endpoint; the dispatcher gathers its calls in `batcher`. */
  batch?: BatchSpec
  batcher?: Batcher
}

export type Endpoint =
  | EndpointState & { kind: 'plain', fn: PlainHandler }
  | EndpointState & { kind: 'deferred', fn: DeferredHandler }
  | EndpointState & { kind: 'queue', queue: Queue }

export const DEFAULT_MAX_WAIT_MS = 10
const DEFAULT_MAX_QUEUED = 65_536

export class EndpointRegistry {
  private readonly endpoints = new Map<string, Endpoint>()

  get (name: string): Endpoint | undefined {
    return this.endpoints.get(name)
  }

  list (): Endpoint[] {
    return [...this.endpoints.values()]
  }

  define (name: string, fn: PlainHandler, opts?: EndpointOptions): void {
    const batch = this.check(name, opts)
    if (typeof fn !== 'function') throw new RpcError('BAD_ARGUMENT', `define('${name}'): handler must be a function`)
    this.endpoints.set(name, { kind: 'plain', name, fn, running: 0, batch })
  }

  defineDeferred (name: string, fn: DeferredHandler, opts?: EndpointOptions): void {
    const batch = this.check(name, opts)
    if (typeof fn !== 'function') throw new RpcError('BAD_ARGUMENT', `defineDeferred('${name}'): handler must be a function`)
    this.endpoints.set(name, { kind: 'deferred', name, fn, running: 0, batch })
  }

  defineQueue<Args extends unknown[] = any[]> (name: string, opts?: QueueOptions): Queue<Args> {
    const batch = this.check(name, opts)
    const maxQueued = opts?.maxQueued ?? DEFAULT_MAX_QUEUED
    if (!Number.isInteger(maxQueued) || maxQueued < 1) throw new RpcError('BAD_ARGUMENT', `defineQueue('${name}'): maxQueued must be a positive integer`)
    const dynamic = opts?.dynamicBatching ?? false
    if (typeof dynamic !== 'boolean') throw new RpcError('BAD_ARGUMENT', `defineQueue('${name}'): dynamicBatching must be a boolean`)
    if (dynamic && batch == null) throw new RpcError('BAD_ARGUMENT', `defineQueue('${name}'): dynamicBatching needs a batchSize`)
    // A dynamic queue batches as the consumer takes; otherwise whole batches are queued.
    const queue = new Queue<Args>(name, maxQueued, dynamic ? batch : undefined)
    this.endpoints.set(name, { kind: 'queue', name, queue: queue as unknown as Queue, running: 0, batch: dynamic ? undefined : batch })
    return queue
  }

  /** Removes the endpoint at once (new calls get FUNCTION_NOT_FOUND); resolves when its calls in flight have ended. */
  async undefine (name: string, onQueued: (endpoint: Endpoint) => void): Promise<void> {
    const endpoint = this.endpoints.get(name)
    if (endpoint == null) throw new RpcError('FUNCTION_NOT_FOUND', `undefine('${name}'): no such function is defined`, { fn: name })
    this.endpoints.delete(name)
    onQueued(endpoint)
    if (endpoint.running === 0) return
    await new Promise<void>(resolve => { endpoint.drained = resolve })
  }

  /** @internal One call of the endpoint ended. */
  static ended (endpoint: Endpoint): void {
    endpoint.running--
    if (endpoint.running === 0 && endpoint.drained != null) {
      const drained = endpoint.drained
      endpoint.drained = undefined
      drained()
    }
  }

  /** Checks the name and options; returns the batch spec when the options ask for batching. */
  private check (name: string, opts: EndpointOptions | undefined): BatchSpec | undefined {
    if (typeof name !== 'string' || name === '') throw new RpcError('BAD_ARGUMENT', 'function name must be a non-empty string')
    if (this.endpoints.has(name)) throw new RpcError('BAD_ARGUMENT', `function '${name}' is already defined`, { fn: name })
    if (opts == null) return undefined
    if (typeof opts !== 'object') throw new RpcError('BAD_ARGUMENT', `options of '${name}' must be an object`)
    const { batchSize, device = 'cpu', maxWaitMs = DEFAULT_MAX_WAIT_MS } = opts
    if (batchSize == null) {
      if (opts.device != null || opts.maxWaitMs != null) throw new RpcError('BAD_ARGUMENT', `'${name}': device and maxWaitMs apply to batching, which needs a batchSize`, { fn: name })
      return undefined
    }
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new RpcError('BAD_ARGUMENT', `'${name}': batchSize must be a positive integer, not ${String(batchSize)}`, { fn: name })
    if (typeof maxWaitMs !== 'number' || !(maxWaitMs >= 0) || maxWaitMs > 2 ** 31 - 1) throw new RpcError('BAD_ARGUMENT', `'${name}': maxWaitMs must be a number of milliseconds from 0 to 2^31-1`, { fn: name })
    if (typeof device !== 'string') throw new RpcError('BAD_ARGUMENT', `'${name}': device must be a device name`, { fn: name })
    getDevice(device)
    return { batchSize, maxWaitMs, device }
  }
}
