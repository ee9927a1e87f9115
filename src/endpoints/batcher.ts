/**
 * Batched endpoints: calls to a function defined with `batchSize` gather here until the
 * batch is full or its oldest call has waited `maxWaitMs`; then their arguments are
 * stacked (tensor/batch.ts) and the function runs once for all of them. The batch's one
 * result is split back so each call ends with its own part.
 *
 * ```ts
 * const batcher = new Batcher({ batchSize: 8, maxWaitMs: 5, device: 'cpu' }, batch => {
 *   runPlain(batch.completion, fn, batch.args)   // fn sees tensors with a first dimension of 1..8
 * })
 * batcher.add({ completion: call, args })
 * ```
 */
import { splitResult, stackCalls } from '../tensor/batch.js'
import type { Completion, QueueEntry } from './queue.js'

export interface BatchSpec {
  /** Most calls in one batch. */
  batchSize: number
  /** Longest time the oldest call of a partial batch waits before the batch runs anyway. */
  maxWaitMs: number
  /** Device the batch's tensors are stacked on. */
  device: string
}

/** Ends each call of a batch with its own part of the batch's result. */
export class BatchCompletion implements Completion {
  constructor (private readonly members: Completion[]) {}

  value (result: unknown): void {
    let parts: unknown[]
    try {
      parts = splitResult(result, this.members.length)
    } catch (err) {
      this.error(err)
      return
    }
    for (let i = 0; i < this.members.length; i++) this.members[i].value(parts[i])
  }

  error (err: unknown): void {
    for (const member of this.members) member.error(err)
  }
}

/**
 * One batch made of `entries`: calls that do not match the first one's shapes and
 * dtypes end at once with BAD_ARGUMENT; the rest share one completion. Undefined when
 * the device failed and every call has ended with that error.
 */
export function combine (entries: QueueEntry[], device: string): QueueEntry | undefined {
  let stacked
  try {
    stacked = stackCalls(entries.map(entry => entry.args), device)
  } catch (err) {
    // The device itself failed (allocation, copy): every call of the batch learns why.
    for (const entry of entries) entry.completion.error(err)
    return undefined
  }
  for (const { index, error } of stacked.rejected) entries[index].completion.error(error)
  return { completion: new BatchCompletion(stacked.accepted.map(i => entries[i].completion)), args: stacked.args }
}

export class Batcher {
  private pending: QueueEntry[] = []
  private timer?: ReturnType<typeof setTimeout>

  constructor (readonly spec: BatchSpec, private readonly run: (batch: QueueEntry) => void) {}

  get waiting (): number {
    return this.pending.length
  }

  add (entry: QueueEntry): void {
    this.pending.push(entry)
    if (this.pending.length >= this.spec.batchSize) this.flush()
    else if (this.timer == null) this.timer = setTimeout(() => { this.flush() }, this.spec.maxWaitMs)
  }

  /** Runs what has gathered now, full or not. */
  flush (): void {
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = undefined
    while (this.pending.length > 0) {
      const entries = this.pending.splice(0, this.spec.batchSize)
      const batch = combine(entries, this.spec.device)
      if (batch != null) this.run(batch)
    }
  }

  /** Takes the calls that have not run, for the owner to fail; nothing runs after this. */
  drain (): QueueEntry[] {
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = undefined
    return this.pending.splice(0)
  }
}
