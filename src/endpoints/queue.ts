/**
 * A queue-served endpoint: calls wait in the queue until a server loop takes them.
 *
 * ```ts
 * const q = rpc.defineQueue('step')
 * for await (const [reply, obs] of q) reply(policy(obs))
 * // or one at a time:
 * const [reply, a, b] = await q.result()
 * reply(a + b)                      // or reply.error(new Error('no'))
 * ```
 */
import { RpcError } from '../errors/rpc-error.js'

/** Completes one call: `reply(value)`, or `reply.error(err)` to fail it. Only the first use counts. */
export interface Reply<T = unknown> {
  (value: T): void
  error: (err: unknown) => void
}

export type QueueItem<Args extends unknown[] = any[]> = [Reply, ...Args]

export class Queue<Args extends unknown[] = any[]> implements AsyncIterable<QueueItem<Args>> {
  private readonly items: Array<QueueItem<Args>> = []
  private readonly takers: Array<{ resolve: (item: QueueItem<Args>) => void, reject: (err: RpcError) => void }> = []
  private closedWith?: RpcError

  /** @internal */
  constructor (readonly name: string, private readonly maxQueued: number) {}

  /** Calls waiting to be taken. */
  get length (): number {
    return this.items.length
  }

  /** The next call as `[reply, ...args]`; rejects with CLOSED once the queue is undefined or the Rpc closed. */
  async result (): Promise<QueueItem<Args>> {
    const item = this.items.shift()
    if (item != null) return item
    if (this.closedWith != null) throw this.closedWith
    return await new Promise((resolve, reject) => { this.takers.push({ resolve, reject }) })
  }

  async * [Symbol.asyncIterator] (): AsyncIterator<QueueItem<Args>> {
    while (true) {
      let item: QueueItem<Args>
      try {
        item = await this.result()
      } catch (err) {
        if (err instanceof RpcError && err.code === 'CLOSED') return
        throw err
      }
      yield item
    }
  }

  /** @internal False when the queue is full or closed. */
  push (item: QueueItem<Args>): boolean {
    if (this.closedWith != null) return false
    const taker = this.takers.shift()
    if (taker != null) {
      taker.resolve(item)
      return true
    }
    if (this.items.length >= this.maxQueued) return false
    this.items.push(item)
    return true
  }

  /** @internal Ends the queue: waiting takers get `error`, queued calls are handed back to fail. */
  close (error: RpcError): Array<QueueItem<Args>> {
    this.closedWith = error
    for (const taker of this.takers.splice(0)) taker.reject(error)
    return this.items.splice(0)
  }
}
