/**
 * One actor of the demo, in its own process (forked by actor-learner.ts). It knows only the
 * learner's address; gossip tells it who else is in the cohort.
 *
 *   node dist/demo/actor.js '{"name":"actor-0","learner":"127.0.0.1:40123","actors":6,"envs":4,...}'
 *
 * Each of its environments loops: observe, call the learner's batched `act`, sample an
 * action, step; every `trajectoryLength` steps it sends the trajectory to the learner's
 * `trajectory` queue. Every few trajectories it asks some evaluator (any peer that defines
 * `evaluate`, picked by asyncAny) to score the current policy. The learner drives it by
 * calling its functions by name: `start`, `stats`, `stop`, `report`.
 */
import { Rpc, tensor, type Future, type Tensor } from '../src/index.js'
import { seededRandom } from '../src/cohort/membership/seeded-random.js'
import { evaluate, OBS_SIZE, RingChase, sampleAction } from './env.js'

export interface ActorConfig {
  name: string
  index: number
  learner: string
  actors: number
  envs: number
  trajectoryLength: number
  evaluator: boolean
  /** Ask for an evaluation after every this many trajectories of this actor. */
  evaluateEvery: number
}

/** What `stats` returns: counts since the previous `stats` call. */
export interface ActorTick {
  /** ms since the previous `stats` call (or since `start`). */
  intervalMs: number
  steps: number
  rewardSum: number
  /** Round trip of each `act` call, ms. */
  actLatencyMs: Float32Array
}

/** What `report` returns once every actor has stopped and every call has ended. */
export interface ActorReport {
  name: string
  pid: number
  steps: number
  trajectoriesSent: number
  trajectoriesAcked: number
  trajectoryErrors: number
  evaluationsAsked: number
  /** Evaluator name -> evaluations it returned to this actor. */
  evaluatedBy: Record<string, number>
  evaluationErrors: number
  lastScore: number | null
  /** Evaluations this actor served, by caller. */
  evaluationsServed: Record<string, number>
  /** From debugInfo(): how the link to the learner carried its messages. */
  learnerLink: { links: string[], chosen: Record<string, number> }
  /** Peers this actor has a direct link with (it dialled only the learner). */
  directPeers: string[]
  /** The membership table this actor saw: name -> state. */
  membership: Record<string, string>
  /** ms from start until this actor's table held the learner and every actor alive. */
  discoveredMs: number
  /** Name of the ring neighbour this actor called by name once discovery was done, and its answer. */
  neighbour: { name: string, answer: string }
}

const config = JSON.parse(process.argv[2] ?? '{}') as ActorConfig
const startedAt = Date.now()
const rpc = new Rpc({ name: config.name })
// The parent gone (killed, crashed) means the demo is over: never outlive it.
process.on('disconnect', () => { void rpc.close().finally(() => process.exit(0)) })

let running = false
let steps = 0
let tick: ActorTick = { intervalMs: 0, steps: 0, rewardSum: 0, actLatencyMs: new Float32Array(0) }
let tickStart = performance.now()
let latencies: number[] = []
let trajectoriesSent = 0
let trajectoriesAcked = 0
let trajectoryErrors = 0
let evaluationsAsked = 0
let evaluationErrors = 0
let lastScore: number | null = null
const evaluatedBy: Record<string, number> = {}
const evaluationsServed: Record<string, number> = {}
const pending = new Set<Promise<unknown>>()
let loops: Array<Promise<void>> = []
const random = seededRandom(1000 + config.index)

function track (future: Future<unknown>, onValue: (value: any) => void, onError: () => void): Promise<unknown> {
  const p: Promise<unknown> = Promise.resolve(future).then(onValue, onError).finally(() => { pending.delete(p) })
  pending.add(p)
  return p
}

async function envLoop (envIndex: number): Promise<void> {
  const env = new RingChase(config.index * 100 + envIndex)
  const length = config.trajectoryLength
  let obs = new Float32Array(length * OBS_SIZE)
  let actions = new Int32Array(length)
  let rewards = new Float32Array(length)
  let t = 0
  let inFlight: Promise<unknown> | undefined
  while (running) {
    env.observe(obs, t * OBS_SIZE)
    const t0 = performance.now()
    const out = await rpc.async_<{ action: Tensor, probs: Tensor, version: number }>('learner', 'act', tensor(obs.subarray(t * OBS_SIZE, (t + 1) * OBS_SIZE), [OBS_SIZE]))
    latencies.push(performance.now() - t0)
    actions[t] = sampleAction(out.probs.data as Float32Array, random)
    rewards[t] = env.step(actions[t])
    tick.rewardSum += rewards[t]
    tick.steps++
    steps++
    if (++t < length) continue
    // One trajectory in flight per environment at most: the learner's pace holds us back.
    await inFlight
    const seq = trajectoriesSent++
    inFlight = track(rpc.async_('learner', 'trajectory', {
      actor: config.name,
      seq,
      obs: tensor(obs, [length, OBS_SIZE]),
      actions: tensor(actions, [length]),
      rewards: tensor(rewards, [length])
    }), () => { trajectoriesAcked++ }, () => { trajectoryErrors++ })
    if (trajectoriesSent % config.evaluateEvery === 0) askForEvaluation(seq)
    obs = new Float32Array(length * OBS_SIZE)
    actions = new Int32Array(length)
    rewards = new Float32Array(length)
    t = 0
  }
  await inFlight
}

function askForEvaluation (seed: number): void {
  evaluationsAsked++
  track(rpc.asyncAny('evaluate', seed, config.name), (r: { score: number, evaluator: string }) => {
    evaluatedBy[r.evaluator] = (evaluatedBy[r.evaluator] ?? 0) + 1
    lastScore = r.score
  }, () => { evaluationErrors++ })
}

rpc.define('start', () => {
  running = true
  tickStart = performance.now()
  loops = Array.from({ length: config.envs }, async (_, i) => { await envLoop(i) })
  return true
})

rpc.define('stats', (): ActorTick => {
  const now = performance.now()
  tick.actLatencyMs = Float32Array.from(latencies)
  tick.intervalMs = now - tickStart
  const out = tick
  tick = { intervalMs: 0, steps: 0, rewardSum: 0, actLatencyMs: new Float32Array(0) }
  tickStart = now
  latencies = []
  return out
})

rpc.define('stop', async () => {
  running = false
  await Promise.all(loops)
  while (pending.size > 0) await Promise.all(pending)
  return true
})

// Asked only once every actor has stopped: by then every evaluation any actor asked for has
// been answered, so what this one served is final too.
rpc.define('report', (): ActorReport => {
  const info = rpc.debugInfo()
  const learner = info.peers.find(p => p.name === 'learner')
  const chosen: Record<string, number> = {}
  for (const arm of learner?.bandit ?? []) chosen[arm.transport] = arm.chosen.small + arm.chosen.medium + arm.chosen.large
  return {
    name: config.name,
    pid: process.pid,
    steps,
    trajectoriesSent,
    trajectoriesAcked,
    trajectoryErrors,
    evaluationsAsked,
    evaluatedBy,
    evaluationErrors,
    lastScore,
    evaluationsServed,
    learnerLink: { links: learner?.links.map(l => l.transport) ?? [], chosen },
    directPeers: info.peers.filter(p => p.name !== 'learner' && p.links.length > 0).map(p => p.name).sort(),
    membership: Object.fromEntries(info.membership.map(m => [m.name, m.state])),
    discoveredMs,
    neighbour
  }
})

rpc.define('ping', () => `${config.name} here`)

if (config.evaluator) {
  // An evaluator pulls the newest weights from the learner and scores them greedily on a
  // fresh environment; which evaluator serves a call is asyncAny's choice.
  rpc.define('evaluate', async (seed: number, from: string) => {
    evaluationsServed[from] = (evaluationsServed[from] ?? 0) + 1
    const p = await rpc.async_<{ weights: Tensor, bias: Tensor, version: number }>('learner', 'policy')
    const score = evaluate(p.weights.data as Float32Array, p.bias.data as Float32Array, seed, 64)
    return { score, version: p.version, evaluator: config.name }
  })
}

let discoveredMs = -1
let neighbour = { name: '', answer: '' }

async function join (): Promise<void> {
  await rpc.listen('127.0.0.1:0')
  rpc.connect(config.learner)
  const everyone = ['learner', ...Array.from({ length: config.actors }, (_, i) => `actor-${i}`)]
  for (;;) {
    const alive = new Set(rpc.debugInfo().membership.filter(m => m.state === 'alive').map(m => m.name))
    if (everyone.every(name => alive.has(name))) break
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  discoveredMs = Date.now() - startedAt
  // A peer it never dialled, found by name alone.
  const name = `actor-${(config.index + 1) % config.actors}`
  neighbour = { name, answer: await rpc.async_<string>(name, 'ping') }
  process.send?.({ ready: true, discoveredMs })
}

join().catch((err: Error) => {
  process.send?.({ ready: false, message: err.message })
  process.exit(1)
})
