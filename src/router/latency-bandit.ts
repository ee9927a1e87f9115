/**
 * Which transport ("arm") carries the next message to a peer. Per (peer, arm) it keeps a
 * peak-EWMA latency estimate per message-size class: a sample above the estimate
 * replaces it at once (a spike is believed immediately), a sample below pulls it down
 * with a weight that grows with the time since the last sample (time constant `tauMs`),
 * so a good arm that had one bad moment comes back within a second or so.
 *
 * Samples come from probes (the router sends PING on each arm while traffic flows and
 * times the PONG) and from missing acks: a call or probe left unanswered for
 * `ackTimeoutMs` counts as a sample of that size. A send that throws masks the arm for
 * `maskMs`. A class's own estimate counts once it has `TRUSTED_SAMPLES` samples (or a
 * missing ack); until then the nearest smaller class's does, and an arm with no estimate
 * at all is ranked by its prior. best() treats arms
 * within a factor 1 / `tieRatio` of the best as tied and takes the lowest prior among
 * them (shm, then rdma, then tcp): on a loaded machine, scheduling delays that hit
 * every arm alike should not make the choice flap. The band widens with the message's
 * class (1 / tieRatio², 1 / tieRatio⁴): a larger probe's time is more the peer's busy
 * loop than the arm, and moving a large message to the slower arm costs the most (16 MiB
 * over tcp here: 200 ms, over shm: 5).
 *
 * One slow round trip raises an arm's estimate at once but does not by itself move the
 * traffic: an arm counts as clearly worse only when the least of its last
 * `FLOOR_SAMPLES` samples is too (its "floor"). A round trip that lost a time slice to
 * another process is noise that hits whichever arm it hits: two processes pinned to one
 * CPU, 64 calls in flight, timed both arms at 1–2 ms with one or the other 1.5x slower in
 * a round now and then, and each such round sent the calls to TCP, at a third of the
 * rate, until shm's estimate decayed. A missing ack fills the floor: it is believed at
 * once.
 *
 * ```ts
 * const bandit = new LatencyBandit()
 * const [best] = bandit.rank('host', ['tcp', 'shm'], sizeClassOf(frame.byteLength))
 * bandit.sample('host', 'shm', 0, 12)      // µs
 * bandit.fail('host', 'shm')               // masked for a while; rank() skips it
 * ```
 *
 * moolib's scheme (a softmax over "won against the others" EWMAs, latency per 128-byte
 * unit) is the reference point; this one is deterministic, which keeps tests honest.
 */
import type { TransportName } from '../transports/transport.js'

/** Size classes: up to 4 KiB, up to 1 MiB, larger. */
export const SIZE_CLASSES = ['small', 'medium', 'large'] as const
export type SizeClass = 0 | 1 | 2

export function sizeClassOf (bytes: number): SizeClass {
  return bytes <= 4096 ? 0 : bytes <= 1024 * 1024 ? 1 : 2
}

/** Bytes of probe padding per class, so a probe costs about what that class costs. */
export const PROBE_BYTES: readonly number[] = [0, 64 * 1024, 1024 * 1024]

export interface LatencyBanditOptions {
  /** Decay time constant of the estimate, ms (default 500). */
  tauMs?: number
  /** How long a failed arm is skipped, ms (default 1000). */
  maskMs?: number
  /** Estimate used before the first sample, µs. */
  priorsUs?: Partial<Record<TransportName, number>>
  /** Arms whose estimates are within best / tieRatio count as tied, for small messages; the lowest prior wins (default 0.7; squared for medium, to the fourth for large). */
  tieRatio?: number
}

class ArmState {
  readonly estimateUs: number[] = [NaN, NaN, NaN]
  readonly sampledAt: number[] = [0, 0, 0]
  readonly samples: number[] = [0, 0, 0]
  /** The class's last FLOOR_SAMPLES samples, in a ring indexed by the sample count. */
  readonly recentUs: number[][] = [[], [], []]
  readonly chosen: number[] = [0, 0, 0]
  /** The class's estimate decides (see TRUSTED_SAMPLES). */
  readonly trusted: boolean[] = [false, false, false]
  failures = 0
  missingAcks = 0
  maskedUntil = 0
}

export interface ArmInfo {
  transport: TransportName
  /** Estimate per size class, µs (null: no sample yet). */
  estimatesUs: Record<typeof SIZE_CLASSES[number], number | null>
  samples: Record<typeof SIZE_CLASSES[number], number>
  chosen: Record<typeof SIZE_CLASSES[number], number>
  failures: number
  missingAcks: number
  masked: boolean
}

const DEFAULT_PRIORS: Record<TransportName, number> = { shm: 20, rdma: 50, tcp: 500 }

/** Samples an arm's floor is the least of (see the top of the file). */
const FLOOR_SAMPLES = 3

/**
 * Samples a class needs before its own estimate decides. The larger classes are probed
 * every 1–2 s, and a probe's round trip includes however long the peer's loop was busy:
 * in the bench the first 1 MiB probes took about 40 ms on both arms, once 1.4x longer on
 * shm than on tcp, and that single pair sent 16 MiB echoes over TCP (200 ms each instead
 * of 5) for two seconds. The small class, probed every 100 ms, guides meanwhile.
 */
const TRUSTED_SAMPLES: readonly number[] = [1, 3, 3]

export class LatencyBandit {
  private readonly peers = new Map<string, Map<TransportName, ArmState>>()
  private readonly tauMs: number
  private readonly maskMs: number
  private readonly priors: Record<TransportName, number>
  /** Per size class. */
  private readonly tieRatios: readonly number[]
  /** Counts changes to any estimate or mask: a choice made at one version holds until the next (or until a mask runs out). */
  version = 0

  constructor (options: LatencyBanditOptions = {}) {
    this.tauMs = options.tauMs ?? 500
    this.maskMs = options.maskMs ?? 1000
    this.priors = { ...DEFAULT_PRIORS, ...options.priorsUs }
    const tie = options.tieRatio ?? 0.7
    this.tieRatios = [tie, tie ** 2, tie ** 4]
  }

  /** The arms in order of preference for a message of class `size`; masked arms go last. */
  rank (peer: string, arms: readonly TransportName[], size: SizeClass, now = Date.now()): TransportName[] {
    if (arms.length < 2) return [...arms]
    const cost = (arm: TransportName): number => {
      const state = this.arm(peer, arm)
      const masked = state.maskedUntil > now ? 1e12 : 0
      return masked + this.estimate(state, arm, size)
    }
    return [...arms].sort((x, y) => cost(x) - cost(y))
  }

  /**
   * Index of the best arm in `arms` for class `size` (masked arms only when all are):
   * the hot path's version of rank(), with no allocation.
   */
  best (peer: string, arms: ReadonlyArray<{ transport: TransportName }>, size: SizeClass, now: number): number {
    let bestCost = Infinity
    for (let i = 0; i < arms.length; i++) bestCost = Math.min(bestCost, this.cost(peer, arms[i].transport, size, now))
    // Among the arms not clearly worse than the best (within 1 / tieRatio of it, for this
    // size), the one cheaper by construction (lowest prior) wins: estimates that noise
    // cannot tell apart do not make the choice flap message by message.
    // An arm whose estimate is out of the band but whose floor is in it had one slow
    // round trip, not a slow arm: it stays tied.
    const limit = bestCost / this.tieRatios[size]
    let chosen = 0
    let chosenPrior = Infinity
    for (let i = 0; i < arms.length; i++) {
      const transport = arms[i].transport
      if (this.cost(peer, transport, size, now, true) <= limit && this.priors[transport] < chosenPrior) {
        chosen = i
        chosenPrior = this.priors[transport]
      }
    }
    return chosen
  }

  /** The arm's estimate, or with `floor` the lesser of it and its floor; masked arms cost 1e12 more. */
  private cost (peer: string, transport: TransportName, size: SizeClass, now: number, floor = false): number {
    const state = this.arm(peer, transport)
    const us = floor ? this.floor(state, transport, size) : this.estimate(state, transport, size)
    return (state.maskedUntil > now ? 1e12 : 0) + us
  }

  /** The arm carried a message of class `size`. */
  chose (peer: string, arm: TransportName, size: SizeClass): void {
    this.arm(peer, arm).chosen[size]++
  }

  /** A latency sample (µs) of a message of class `size` on `arm`. */
  sample (peer: string, arm: TransportName, size: SizeClass, us: number, now = Date.now()): void {
    this.version++
    const state = this.arm(peer, arm)
    const old = state.estimateUs[size]
    if (Number.isNaN(old) || us >= old) {
      state.estimateUs[size] = us
    } else {
      const w = Math.exp(-(now - state.sampledAt[size]) / this.tauMs)
      state.estimateUs[size] = old * w + us * (1 - w)
    }
    state.sampledAt[size] = now
    state.recentUs[size][state.samples[size] % FLOOR_SAMPLES] = us
    state.samples[size]++
    if (state.samples[size] >= TRUSTED_SAMPLES[size]) state.trusted[size] = true
  }

  /** No ack within `timeoutMs`: a sample equal to the timeout, believed at once. */
  missingAck (peer: string, arm: TransportName, size: SizeClass, timeoutMs: number): void {
    const state = this.arm(peer, arm)
    state.missingAcks++
    this.sample(peer, arm, size, timeoutMs * 1000)
    for (let i = 0; i < FLOOR_SAMPLES; i++) state.recentUs[size][i] = timeoutMs * 1000
    state.trusted[size] = true
  }

  /** A send on the arm threw: skip it for a while. */
  fail (peer: string, arm: TransportName, now = Date.now()): void {
    this.version++
    const state = this.arm(peer, arm)
    state.failures++
    state.maskedUntil = now + this.maskMs
  }

  forget (peer: string): void {
    this.version++
    this.peers.delete(peer)
  }

  info (peer: string, now = Date.now()): ArmInfo[] {
    const arms = this.peers.get(peer)
    if (arms == null) return []
    const byClass = <T>(f: (i: number) => T): Record<typeof SIZE_CLASSES[number], T> =>
      ({ small: f(0), medium: f(1), large: f(2) })
    return [...arms].map(([transport, s]) => ({
      transport,
      estimatesUs: byClass(i => Number.isNaN(s.estimateUs[i]) ? null : Math.round(s.estimateUs[i] * 10) / 10),
      samples: byClass(i => s.samples[i]),
      chosen: byClass(i => s.chosen[i]),
      failures: s.failures,
      missingAcks: s.missingAcks,
      masked: s.maskedUntil > now
    }))
  }

  /**
   * The best measured small-message latency to `peer` over its unmasked arms, µs;
   * undefined before any arm has a sample (priors are not measurements).
   */
  peerEstimateUs (peer: string, now = Date.now()): number | undefined {
    let best: number | undefined
    for (const state of this.peers.get(peer)?.values() ?? []) {
      const us = state.estimateUs[0]
      if (state.maskedUntil <= now && !Number.isNaN(us) && (best == null || us < best)) best = us
    }
    return best
  }

  /** The class's own estimate once trusted, else the nearest smaller class's, else the prior. */
  private estimate (state: ArmState, arm: TransportName, size: SizeClass): number {
    const c = deciding(state, size)
    return c < 0 ? this.priors[arm] : state.estimateUs[c]
  }

  /** The least of the last samples of the class estimate() reads (the prior when it reads none), and never above the estimate. */
  private floor (state: ArmState, arm: TransportName, size: SizeClass): number {
    const c = deciding(state, size)
    return c < 0 ? this.priors[arm] : Math.min(state.estimateUs[c], ...state.recentUs[c])
  }

  private arm (peer: string, arm: TransportName): ArmState {
    let arms = this.peers.get(peer)
    if (arms == null) this.peers.set(peer, arms = new Map())
    let state = arms.get(arm)
    if (state == null) arms.set(arm, state = new ArmState())
    return state
  }
}

/** The class whose samples decide for class `size`: its own once trusted, else the nearest smaller trusted one; -1 when none is. */
function deciding (state: ArmState, size: SizeClass): number {
  for (let c = size; c >= 0; c--) {
    if (state.trusted[c]) return c
  }
  return -1
}
