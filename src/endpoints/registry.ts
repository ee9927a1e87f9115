/**
 * The functions this peer serves, by name: plain (`define`), deferred (`defineDeferred`)
 * and queue-served (`defineQueue`). Tracks calls in flight per endpoint so `undefine`
 * can wait for them.
 */
import { RpcError } from '../errors/rpc-error.js'
import { Queue, type Reply } from './queue.js'

export interface EndpointOptions {
  /** Batching (issue 5): not implemented yet; setting it throws BAD_ARGUMENT. */
  batchSize?: number
  /** Device for batched tensors (issue 5): not implemented yet. */
  device?: string
  /** Longest wait for a batch to fill (issue 5): not implemented yet. */
  maxWaitMs?: number
}

export interface QueueOptions extends EndpointOptions {
  /** Hand the consumer whatever has queued, 1..batchSize (issue 5): not implemented yet. */
  dynamicBatching?: boolean
  /** Calls that may wait in the queue; more fail with OVERLOADED. */
  maxQueued?: number
}

export type PlainHandler = (...args: any[]) => unknown
export type DeferredHandler = (reply: Reply, ...args: any[]) => void

export type Endpoint =
  | { kind: 'plain', name: string, fn: PlainHandler, running: number, drained?: () => void }
  | { kind: 'deferred', name: string, fn: DeferredHandler, running: number, drained?: () => void }
  | { kind: 'queue', name: string, queue: Queue, running: number, drained?: () => void }

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
    this.check(name, opts)
    if (typeof fn !== 'function') throw new RpcError('BAD_ARGUMENT', `define('${name}'): handler must be a function`)
    this.endpoints.set(name, { kind: 'plain', name, fn, running: 0 })
  }

  defineDeferred (name: string, fn: DeferredHandler, opts?: EndpointOptions): void {
    this.check(name, opts)
    if (typeof fn !== 'function') throw new RpcError('BAD_ARGUMENT', `defineDeferred('${name}'): handler must be a function`)
    this.endpoints.set(name, { kind: 'deferred', name, fn, running: 0 })
  }

  defineQueue<Args extends unknown[] = any[]> (name: string, opts?: QueueOptions): Queue<Args> {
    this.check(name, opts)
    if (opts?.dynamicBatching != null) throw notYet(name, 'dynamicBatching')
    const maxQueued = opts?.maxQueued ?? DEFAULT_MAX_QUEUED
    if (!Number.isInteger(maxQueued) || maxQueued < 1) throw new RpcError('BAD_ARGUMENT', `defineQueue('${name}'): maxQueued must be a positive integer`)
    const queue = new Queue<Args>(name, maxQueued)
    this.endpoints.set(name, { kind: 'queue', name, queue: queue as unknown as Queue, running: 0 })
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

  private check (name: string, opts: EndpointOptions | undefined): void {
    if (typeof name !== 'string' || name === '') throw new RpcError('BAD_ARGUMENT', 'function name must be a non-empty string')
    if (this.endpoints.has(name)) throw new RpcError('BAD_ARGUMENT', `function '${name}' is already defined`, { fn: name })
    if (opts == null) return
    if (typeof opts !== 'object') throw new RpcError('BAD_ARGUMENT', `options of '${name}' must be an object`)
    for (const key of ['batchSize', 'device', 'maxWaitMs'] as const) {
      if (opts[key] != null) throw notYet(name, key)
    }
  }
}

function notYet (name: string, option: string): RpcError {
  return new RpcError('BAD_ARGUMENT', `'${name}': option '${option}' belongs to batching, which is not implemented yet (issue 5)`, { fn: name })
}
