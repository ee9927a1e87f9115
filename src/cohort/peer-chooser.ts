/**
 * Picking a peer for a function-addressed call (`rpc.asyncAny(fn)`): power of two choices.
 * Two candidates are drawn at random and the one with the lower score wins, which spreads
 * load almost as well as asking every candidate, at the cost of two look-ups.
 *
 * The score is expected latency times (1 + calls in flight). The latency estimate comes
 * from a `LatencyEstimates` source: the Rpc hands in the latency bandit's measured estimate
 * (router/latency-bandit) where it has one, else the call table's own round-trip EWMA.
 *
 * ```ts
 * const scores = latencyTimesLoad({ estimateMs: p => rtt.get(p) }, { inflight: p => perPeer.get(p) ?? 0 })
 * chooseTwoRandom(['a', 'b', 'c'], scores, Math.random)  // 'b', say
 * ```
 */

/** A latency estimate per peer, in ms; undefined when there is none yet. */
export interface LatencyEstimates {
  estimateMs: (peer: string) => number | undefined
}

export interface LoadSource {
  inflight: (peer: string) => number
}

/** Lower is better. */
export type PeerScores = (peer: string) => number

/** Latency times (1 + load). A peer without an estimate scores as the best known one, so new peers get tried. */
export function latencyTimesLoad (latency: LatencyEstimates, load: LoadSource): PeerScores {
  return peer => (latency.estimateMs(peer) ?? 0) * (1 + load.inflight(peer)) + load.inflight(peer) * 1e-3
}

export function chooseTwoRandom (candidates: string[], score: PeerScores, random: () => number): string | undefined {
  if (candidates.length === 0) return undefined
  if (candidates.length === 1) return candidates[0]
  const i = Math.floor(random() * candidates.length)
  let j = Math.floor(random() * (candidates.length - 1))
  if (j >= i) j++
  const a = candidates[i]
  const b = candidates[j]
  return score(b) < score(a) ? b : a
}
