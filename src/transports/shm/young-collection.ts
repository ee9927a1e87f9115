/**
 * Collections for received arena views. A received large payload is a view of the peer's
 * arena (arena.ts); its block goes back to the sender only once the view is collected. A
 * view the user dropped is freed by the next young collection (a scavenge, 0.3-1 ms here),
 * but moving large payloads makes few JavaScript objects, so V8 starts scavenges seldom.
 * Meanwhile the sender runs out of blocks whose pages are warm, and faulting in fresh
 * shared pages costs 13-15 ms per 16 MiB against a 2 ms copy. So every COLLECT_EVERY_BYTES
 * of views this thread received, it runs one young collection itself, before making the
 * next view.
 *
 * A view kept across two young collections moves to the old generation, and only a full
 * collection frees it; V8 does not count views as memory (native/cohort_shm.cc, "How a
 * view's end is seen"), so their bytes never start one. So when an arena's live views hold
 * more than half its bytes, it asks for a full one too (IncomingArena decides when;
 * collectFully runs it asynchronously, one at a time).
 *
 * Node gives no collection without `--expose-gc`. The function is taken the way Jest's
 * leak detector takes it: the flag on, `gc` read from a fresh context, the flag off again
 * (left on when the process was started with it; `globalThis.gc` is used when there).
 * Where that fails, views wait for V8's own collections.
 *
 * ```ts
 * viewsReceived(16 << 20)                 // before making a 16 MiB view: collects when due
 * if (held > bytes / 2) await collectFully()
 * ```
 */
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Bytes of received views per young collection: an eighth of the default arena. */
export const COLLECT_EVERY_BYTES = 32 * 1024 * 1024

type Collect = (options: { type: 'minor' | 'major', execution?: 'async' }) => Promise<void> | undefined

/** undefined: not found yet; null: given up after FIND_ATTEMPTS. */
let collect: Collect | null | undefined
let attempts = 0
const FIND_ATTEMPTS = 3
let received = 0
let fullRunning = false
const counts = { young: 0, full: 0 }

/** Started with the flag: then it must stay on (another context may rely on `gc`). */
function startedWithExposeGc (): boolean {
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  return flags.some(flag => flag === '--expose-gc' || flag === '--expose_gc')
}

function findCollect (): Collect | undefined {
  const own = (globalThis as { gc?: unknown }).gc
  if (typeof own === 'function') return own as Collect
  const keep = startedWithExposeGc()
  try {
    v8.setFlagsFromString('--expose-gc')
    try {
      const found: unknown = runInNewContext('typeof gc === "function" ? gc : undefined')
      return typeof found === 'function' ? found as Collect : undefined
    } finally {
      if (!keep) v8.setFlagsFromString('--no-expose-gc')
    }
  } catch {
    return undefined
  }
}

function collector (): Collect | null {
  if (collect !== undefined) return collect
  // Another thread may have cleared the flag between our set and read: try again later.
  const found = findCollect()
  if (found != null) collect = found
  else if (++attempts >= FIND_ATTEMPTS) collect = null
  return found ?? null
}

/** A view of `bytes` is about to be made for a received payload: runs a young collection first when due. */
export function viewsReceived (bytes: number): void {
  received += bytes
  if (received < COLLECT_EVERY_BYTES) return
  received = 0
  const run = collector()
  if (run == null) return
  run({ type: 'minor' })
  counts.young++
}

/**
 * Asks for a full collection, unless one asked for is still running. Its end, or undefined
 * when none was started now.
 */
export function collectFully (): Promise<void> | undefined {
  const run = collector()
  if (run == null || fullRunning) return undefined
  const done = run({ type: 'major', execution: 'async' })
  counts.full++
  if (done == null) return undefined
  fullRunning = true
  const ended = (): void => { fullRunning = false }
  return done.then(ended, ended)
}

/** Collections this thread ran for views so far, for debugInfo. */
export function viewCollections (): { young: number, full: number } {
  return { ...counts }
}
