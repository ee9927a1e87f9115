/**
 * A deterministic random source (mulberry32) for what Membership calls `random`, when a
 * run must be repeatable: the gossip simulation (bench/discovery/) and the demo's
 * environments use it. The library itself hands Membership `Math.random`.
 *
 * ```ts
 * const random = seededRandom(42)
 * random() // the same sequence of numbers in [0, 1) for the same seed
 * ```
 */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
