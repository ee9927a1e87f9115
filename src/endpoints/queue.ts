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
 *
 * With `dynamicBatching`, each take gathers whatever calls have queued (1..batchSize)
 * into one batch; `reply(result)` splits the result back to those calls.
 */
import { RpcError } from '../errors/rpc-error.js'
import { combine } from './batcher.js'

/** Completes one call: `reply(value)`, or `reply.error(err)` to fail it. Only the first use counts. */
export interface Reply<T = unknown> {
  (value: T): void
  error: (err: unknown) => void
}

/** Whatever ends a call (or a batch of calls) with a value or an error; only the first use counts. */
export interface Completion {
  value: (value: unknown) => void
  error: (err: unknown) => void
}

/** A call (or a stacked batch of calls) waiting to be served. */
export interface QueueEntry {
  completion: Completion
  args: unknown[]
}

export type QueueItem<Args extends unknown[] = any[]> = [Reply, ...Args]

export function replyFor (completion: Completion): Reply {
  const reply = ((value: unknown) => { completion.value(value) }) as Reply
  reply.error = (err: unknown) => { completion.error(err) }
  return reply
}

/** Dynamic batching: each take stacks up to `batchSize` queued calls on `device`. */
export interface DynamicBatching {
  batchSize: number
  device: string
}

export class Queue<Args extends unknown[] = any[]> implements AsyncIterable<QueueItem<Args>> {
  private readonly entries: QueueEntry[] = []
  private readonly takers: Array<{ resolve: (item: QueueItem<Args>) => void, reject: (err: RpcError) => void }> = []
  private closedWith?: RpcError
  private handoffScheduled = false

  /** @internal */
  constructor (readonly name: string, private readonly maxQueued: number, private readonly dynamic?: DynamicBatching) {}

  /** Calls waiting to be taken. */
  get length (): number {
    return this.entries.length
  }

  /** @internal For debugInfo: how a dynamic queue batches. */
  batchInfo (): string | undefined {
    return this.dynamic == null ? undefined : `1..${this.dynamic.batchSize} on ${this.dynamic.device}, dynamic`
  }

  /** The next call as `[reply, ...args]`; rejects with CLOSED once the queue is undefined or the Rpc closed. */
  async result (): Promise<QueueItem<Args>> {
    const item = this.take()
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
  push (entry: QueueEntry): boolean {
    if (this.closedWith != null || this.entries.length >= this.maxQueued) return false
    this.entries.push(entry)
    if (this.takers.length === 0) return true
    if (this.dynamic == null) {
      this.handOff()
    } else if (!this.handoffScheduled) {
      // Calls decoded from one read arrive in one turn: let them all in before a waiting
      // consumer takes its batch.
      this.handoffScheduled = true
      queueMicrotask(() => {
        this.handoffScheduled = false
        this.handOff()
      })
    }
    return true
  }

  /** @internal Ends the queue: waiting takers get `error`; the calls still queued are handed back to fail. */
  close (error: RpcError): Completion[] {
    this.closedWith = error
    for (const taker of this.takers.splice(0)) taker.reject(error)
    return this.entries.splice(0).map(entry => entry.completion)
  }

  private handOff (): void {
    while (this.takers.length > 0) {
      const item = this.take()
      if (item == null) return
      this.takers.shift()?.resolve(item)
    }
  }

  private take (): QueueItem<Args> | undefined {
    while (this.entries.length > 0) {
      const entry = this.dynamic == null
        ? this.entries.shift()
        : combine(this.entries.splice(0, this.dynamic.batchSize), this.dynamic.device)
      // undefined: the batch's device failed and its calls have ended with that error.
      if (entry != null) return [replyFor(entry.completion), ...entry.args] as QueueItem<Args>
    }
    return undefined
  }
}
