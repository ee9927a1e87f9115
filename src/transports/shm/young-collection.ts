/**
 * Young collections for received arena views. A received large payload is a view of the
 * peer's arena (arena.ts); its block goes back to the sender only once the view is
 * collected. A view the user dropped is freed by the next young collection (a scavenge,
 * 0.3-1 ms here), but moving large payloads makes few JavaScript objects, so V8 starts
 * scavenges seldom. Meanwhile the sender runs out of blocks whose pages are warm, and
 * faulting in fresh shared pages costs 13-15 ms per 16 MiB against a 2 ms copy. So every
 * COLLECT_EVERY_BYTES of views this thread received, it runs one young collection itself,
 * before making the next view.
 *
 * Node gives no young collection without `--expose-gc`. The function is taken the way
 * Jest's leak detector takes it: the flag on, `gc` read from a fresh context, the flag off
 * again (or `globalThis.gc` when the process was started with the flag). Where that fails
 * (a runtime whose flags are frozen), views wait for V8's own collections, as before.
 *
 * ```ts
 * viewsReceived(16 << 20)   // before making a 16 MiB view: collects when due
 * ```
 */
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Bytes of received views per young collection: an eighth of the default arena. */
export const COLLECT_EVERY_BYTES = 32 * 1024 * 1024

type Collect = (options: { type: 'minor' }) => void

/** undefined: not looked for yet; null: not to be had. */
let collect: Collect | null | undefined
let received = 0
let collections = 0

function findCollect (): Collect | null {
  const own = (globalThis as { gc?: unknown }).gc
  if (typeof own === 'function') return own as Collect
  try {
    v8.setFlagsFromString('--expose-gc')
    try {
      const found: unknown = runInNewContext('gc')
      return typeof found === 'function' ? found as Collect : null
    } finally {
      v8.setFlagsFromString('--no-expose-gc')
    }
  } catch {
    return null
  }
}

/** A view of `bytes` is about to be made for a received payload: runs a young collection first when due. */
export function viewsReceived (bytes: number): void {
  received += bytes
  if (received < COLLECT_EVERY_BYTES) return
  received = 0
  if (collect === undefined) collect = findCollect()
  if (collect == null) return
  collect({ type: 'minor' })
  collections++
}

/** Young collections run so far by this thread, for debugInfo. */
export function youngCollections (): number {
  return collections
}
