/**
 * The demo's world: a tiny deterministic environment the actors step, and the policy the
 * learner serves and trains. Plain TypeScript, no RPC here.
 *
 * ```ts
 * const env = new RingChase(seed)
 * const policy = new Policy()
 * const out = policy.act(tensor(env.observe(), [1, OBS_SIZE]))   // a batch of one
 * const reward = env.step(sampleAction(out.probs.row(0).data as Float32Array, rng))
 * ```
 *
 * RingChase: an agent on a ring of 16 cells chases a target. Each step it moves left,
 * stays, or moves right; the reward is how much closer (by the shorter way round) it got:
 * +1, 0 or -1. On reaching the target a new one appears. The best action is a linear
 * function of the observation, so a single dense layer can learn it, and the mean reward
 * climbs from about 0 (a uniform policy) towards 1 as the learner trains.
 */
import { tensor, type Tensor } from '../src/index.js'
import { seededRandom } from '../src/cohort/membership/seeded-random.js'

export const RING = 16
/** Observation: cos/sin of the agent's cell, cos/sin of the target's, "target is left", "target is right", distance / 8, 1. */
export const OBS_SIZE = 8
/** Actions: 0 left, 1 stay, 2 right. */
export const ACTIONS = 3
/** Learning rate of the policy-gradient step. */
const LEARNING_RATE = 0.02

export class RingChase {
  private agent: number
  private target: number
  private readonly random: () => number

  constructor (seed: number) {
    this.random = seededRandom(seed)
    this.agent = Math.floor(this.random() * RING)
    this.target = this.newTarget()
  }

  /** Writes the observation into `out` (length OBS_SIZE) at `offset`. */
  observe (out = new Float32Array(OBS_SIZE), offset = 0): Float32Array {
    const delta = this.delta()
    const angle = (cell: number): number => 2 * Math.PI * cell / RING
    out[offset] = Math.cos(angle(this.agent))
    out[offset + 1] = Math.sin(angle(this.agent))
    out[offset + 2] = Math.cos(angle(this.target))
    out[offset + 3] = Math.sin(angle(this.target))
    out[offset + 4] = delta < 0 ? 1 : 0
    out[offset + 5] = delta > 0 ? 1 : 0
    out[offset + 6] = Math.abs(delta) / (RING / 2)
    out[offset + 7] = 1
    return out
  }

  /** Moves by `action` (0 left, 1 stay, 2 right); returns the reward. */
  step (action: number): number {
    const before = Math.abs(this.delta())
    this.agent = (this.agent + action - 1 + RING) % RING
    const after = Math.abs(this.delta())
    if (after === 0) this.target = this.newTarget()
    return before - after
  }

  /** Signed shortest way from agent to target: negative is left. */
  private delta (): number {
    let d = (this.target - this.agent + RING) % RING
    if (d > RING / 2) d -= RING
    return d
  }

  private newTarget (): number {
    let t = this.agent
    while (t === this.agent) t = Math.floor(this.random() * RING)
    return t
  }
}

/** Samples an action from `probs` with the actor's own PRNG. */
export function sampleAction (probs: ArrayLike<number>, random: () => number): number {
  let u = random()
  for (let a = 0; a < probs.length - 1; a++) {
    u -= probs[a]
    if (u < 0) return a
  }
  return probs.length - 1
}

export interface ActResult {
  /** Greedy action per row, int32 [n]. */
  action: Tensor
  /** Softmax over the actions per row, float32 [n, ACTIONS]. */
  probs: Tensor
  /** How many updates the weights have had. */
  version: number
}

/**
 * One dense layer, logits = W obs + b, then softmax. `act` takes a batch of observations;
 * `learn` takes a batch of trajectories and makes one REINFORCE step per transition with a
 * running-mean baseline, in order, so the same trajectories in the same order always give
 * the same weights.
 */
export class Policy {
  readonly weights = new Float32Array(ACTIONS * OBS_SIZE)
  readonly bias = new Float32Array(ACTIONS)
  version = 0
  private baseline = 0

  act (obs: Tensor): ActResult {
    const n = obs.shape[0]
    const x = obs.data as Float32Array
    const probs = new Float32Array(n * ACTIONS)
    const action = new Int32Array(n)
    for (let r = 0; r < n; r++) {
      this.probsInto(x, r * OBS_SIZE, probs, r * ACTIONS)
      let best = 0
      for (let a = 1; a < ACTIONS; a++) if (probs[r * ACTIONS + a] > probs[r * ACTIONS + best]) best = a
      action[r] = best
    }
    return { action: tensor(action, [n]), probs: tensor(probs, [n, ACTIONS]), version: this.version }
  }

  /** obs float32 [n, steps, OBS_SIZE], actions int32 [n, steps], rewards float32 [n, steps]. */
  learn (obs: Tensor, actions: Tensor, rewards: Tensor): void {
    const [n, steps] = actions.shape
    const x = obs.data as Float32Array
    const a = actions.data as Int32Array
    const r = rewards.data as Float32Array
    const p = new Float32Array(ACTIONS)
    for (let i = 0; i < n * steps; i++) {
      const advantage = r[i] - this.baseline
      this.baseline += 0.01 * (r[i] - this.baseline)
      this.probsInto(x, i * OBS_SIZE, p, 0)
      // Gradient of log softmax(a) w.r.t. the logits: onehot(a) - p.
      for (let k = 0; k < ACTIONS; k++) {
        const g = LEARNING_RATE * advantage * ((k === a[i] ? 1 : 0) - p[k])
        this.bias[k] += g
        for (let j = 0; j < OBS_SIZE; j++) this.weights[k * OBS_SIZE + j] += g * x[i * OBS_SIZE + j]
      }
    }
    this.version++
  }

  private probsInto (x: Float32Array, xo: number, out: Float32Array, oo: number): void {
    let max = -Infinity
    for (let k = 0; k < ACTIONS; k++) {
      let logit = this.bias[k]
      for (let j = 0; j < OBS_SIZE; j++) logit += this.weights[k * OBS_SIZE + j] * x[xo + j]
      out[oo + k] = logit
      if (logit > max) max = logit
    }
    let sum = 0
    for (let k = 0; k < ACTIONS; k++) {
      out[oo + k] = Math.exp(out[oo + k] - max)
      sum += out[oo + k]
    }
    for (let k = 0; k < ACTIONS; k++) out[oo + k] /= sum
  }
}

/** Greedy episode of `steps` steps with the given weights: the evaluators' score. */
export function evaluate (weights: Float32Array, bias: Float32Array, seed: number, steps: number): number {
  const policy = new Policy()
  policy.weights.set(weights)
  policy.bias.set(bias)
  const env = new RingChase(seed)
  const obs = new Float32Array(OBS_SIZE)
  let total = 0
  for (let s = 0; s < steps; s++) {
    env.observe(obs)
    const { action } = policy.act(tensor(obs, [1, OBS_SIZE]))
    total += env.step((action.data as Int32Array)[0])
  }
  return total / steps
}
