/**
 * The demo `npm start` runs: an actor–learner loop on this machine, all real processes.
 *
 *   npm start                                   # 6 actors, 10 s
 *   node dist/demo/actor-learner.js --actors 3 --seconds 5 --json
 *
 * This process is the learner. It listens on 127.0.0.1:0 and serves
 * - `act`: the policy (a dense layer + softmax, demo/env.ts), batched: up to 16 actors'
 *   calls run as one call of the function, or fewer once the oldest has waited 2 ms;
 * - `trajectory`: a queue its `for await` loop drains, taking whatever trajectories have
 *   queued (dynamic batching) and making one policy-gradient step per transition;
 * - `policy`: the current weights, which the evaluators fetch.
 * It forks the actors (demo/actor.ts), each told only the learner's address; they join by
 * gossip, call a ring neighbour by name, and ask `evaluate` of whichever evaluator actor
 * asyncAny picks. Once a second it asks every actor for its `stats` and prints a line; at
 * the end it asks each to `stop`, then for its `report`, and prints a summary (and, with --json, one JSON line).
 * Children are killed on every way out: normal end, error, Ctrl-C.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Rpc, tensor, type Tensor } from '../src/index.js'
import type { ActorConfig, ActorReport, ActorTick } from './actor.js'
import { Policy } from './env.js'

const ACTOR_SCRIPT = fileURLToPath(new URL('./actor.js', import.meta.url))
const USAGE = `usage: npm start -- [--seconds N] [--actors N] [--envs N] [--json]
  --seconds N   how long the actors run, in seconds (default 10)
  --actors N    actor processes to fork, 1..32 (default 6)
  --envs N      environments per actor, each with one act call in flight, 1..64 (default 4)
  --json        end with one line of JSON holding the results`
const STARTUP_LIMIT_MS = 60_000
const ACT_BATCH = { batchSize: 16, maxWaitMs: 2 }
const TRAJECTORY_LENGTH = 32

interface Options { seconds: number, actors: number, envs: number, json: boolean }

class UsageError extends Error {}

function parseArgs (argv: string[]): Options {
  const options: Options = { seconds: 10, actors: 6, envs: 4, json: false }
  const limits = { seconds: [0.5, 3600], actors: [1, 32], envs: [1, 64] } as const
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2)
    if (flag === '--json' && inline === undefined) { options.json = true; continue }
    if (flag === '--help' || flag === '-h') { console.log(USAGE); process.exit(0) }
    const key = flag.replace(/^--/, '')
    if (!flag.startsWith('--') || !(key in limits)) throw new UsageError(`unknown argument '${argv[i]}'`)
    const text = inline ?? argv[++i]
    if (text === undefined) throw new UsageError(`${flag} needs a number`)
    const value = Number(text)
    const [min, max] = limits[key as keyof typeof limits]
    const integer = key !== 'seconds'
    if (text.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max) {
      throw new UsageError(`${flag} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, not '${text}'`)
    }
    options[key as 'seconds' | 'actors' | 'envs'] = value
  }
  return options
}

/** The forked actors; every way out of the demo goes through `killAll`. */
class ActorProcesses {
  readonly children: ChildProcess[] = []

  async start (configs: ActorConfig[]): Promise<Array<{ discoveredMs: number }>> {
    return await Promise.all(configs.map(async config => {
      const child = fork(ACTOR_SCRIPT, [JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      this.children.push(child)
      return await new Promise<{ discoveredMs: number }>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`${config.name} did not join the cohort within ${STARTUP_LIMIT_MS / 1000} s`)) }, STARTUP_LIMIT_MS)
        child.once('message', (m: any) => {
          clearTimeout(timer)
          m.ready === true ? resolve(m) : reject(new Error(`${config.name} failed to start: ${String(m.message)}`))
        })
        child.once('exit', code => { clearTimeout(timer); reject(new Error(`${config.name} exited (${String(code)}) before it was ready`)) })
      })
    }))
  }

  /** Lets the actors close their Rpc and exit; SIGKILLs any still there after `graceMs`. */
  async stop (graceMs: number): Promise<void> {
    const exited = this.children.map(async child => {
      if (child.exitCode != null || child.signalCode != null) return
      await new Promise(resolve => { child.once('exit', resolve); if (child.connected) child.disconnect() })
    })
    const timer = setTimeout(() => { this.killAll() }, graceMs)
    await Promise.all(exited)
    clearTimeout(timer)
  }

  killAll (): void {
    for (const child of this.children) if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL')
  }
}

interface LearnerStats { actCalls: number, actBatches: number, maxBatch: number, trajectoriesLearned: number, takes: number }

function percentile (sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]
}

const fmt = (n: number, digits = 0): string => Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '-'

async function main (options: Options, actors: ActorProcesses): Promise<void> {
  const policy = new Policy()
  const stats: LearnerStats = { actCalls: 0, actBatches: 0, maxBatch: 0, trajectoriesLearned: 0, takes: 0 }
  const learnedBy = new Map<string, Set<number>>()
  let duplicates = 0

  const rpc = new Rpc({ name: 'learner' })
  rpc.define('act', (obs: Tensor) => {
    const n = obs.shape[0]
    stats.actCalls += n
    stats.actBatches++
    stats.maxBatch = Math.max(stats.maxBatch, n)
    return policy.act(obs)
  }, ACT_BATCH)
  rpc.define('policy', () => ({ weights: tensor(policy.weights, [policy.bias.length, policy.weights.length / policy.bias.length]), bias: tensor(policy.bias), version: policy.version }))
  const trajectories = rpc.defineQueue<[{ actor: string[], seq: number[], obs: Tensor, actions: Tensor, rewards: Tensor }]>('trajectory', { batchSize: 16, dynamicBatching: true })
  const learning = (async () => {
    for await (const [reply, batch] of trajectories) {
      policy.learn(batch.obs, batch.actions, batch.rewards)
      stats.takes++
      for (let i = 0; i < batch.actor.length; i++) {
        const seen = learnedBy.get(batch.actor[i]) ?? new Set()
        if (seen.has(batch.seq[i])) duplicates++
        seen.add(batch.seq[i])
        learnedBy.set(batch.actor[i], seen)
        stats.trajectoriesLearned++
      }
      reply({ version: policy.version })
    }
  })()

  try {
    await rpc.listen('127.0.0.1:0')
    const address = rpc.addresses()[0]
    const names = Array.from({ length: options.actors }, (_, i) => `actor-${i}`)
    const evaluators = names.filter((_, i) => i % 3 === 0)
    console.log(`cohort demo: learner on ${address}; ${options.actors} actor processes x ${options.envs} envs, ${options.seconds} s`)
    console.log(`act: batchSize ${ACT_BATCH.batchSize}, maxWaitMs ${ACT_BATCH.maxWaitMs}; evaluate defined on ${evaluators.join(', ')}`)

    const t0 = Date.now()
    const joined = await actors.start(names.map((name, index) => ({
      name,
      index,
      learner: address,
      actors: options.actors,
      envs: options.envs,
      trajectoryLength: TRAJECTORY_LENGTH,
      evaluator: evaluators.includes(name),
      evaluateEvery: 4
    })))
    const discovered = joined.map(j => j.discoveredMs).sort((a, b) => a - b)
    console.log(`actors forked and joined in ${fmt((Date.now() - t0) / 1000, 1)} s: given only the learner's address, each saw all ${options.actors + 1} peers alive by gossip ` +
      `${fmt(discovered[0])}–${fmt(discovered[discovered.length - 1])} ms after it started, then called its ring neighbour by name`)

    await Promise.all(names.map(async name => await rpc.async_(name, 'start')))
    const runStart = Date.now()
    const header = `${'t s'.padStart(4)}  ${'steps/s'.padStart(8)}  ${'act calls/s'.padStart(11)}  ${'mean batch'.padStart(10)}  ${'traj learned'.padStart(12)}  ${'p50 act ms'.padStart(10)}  ${'reward'.padStart(6)}`
    console.log(header)
    const rewardBySecond: number[] = []
    let last = { at: runStart, actCalls: 0, actBatches: 0 }
    const seconds = Math.ceil(options.seconds)
    for (let second = 1; second <= seconds; second++) {
      // Ticks on the second from the start, whatever the polls cost; the last one at the end.
      const at = runStart + Math.min(second, options.seconds) * 1000
      await new Promise(resolve => setTimeout(resolve, Math.max(0, at - Date.now())))
      const ticks = await Promise.all(names.map(async name => await rpc.async_<ActorTick>(name, 'stats')))
      const now = Date.now()
      const dt = (now - last.at) / 1000
      // Each actor counts its steps over its own interval between two polls.
      const stepsPerSec = ticks.reduce((s, t) => s + t.steps / Math.max(1e-3, t.intervalMs / 1000), 0)
      const steps = ticks.reduce((s, t) => s + t.steps, 0)
      const reward = ticks.reduce((s, t) => s + t.rewardSum, 0) / Math.max(1, steps)
      rewardBySecond.push(reward)
      const latency = Float32Array.from(ticks.flatMap(t => [...t.actLatencyMs])).sort()
      const calls = stats.actCalls - last.actCalls
      const batches = stats.actBatches - last.actBatches
      console.log(`${String(second).padStart(4)}  ${fmt(stepsPerSec).padStart(8)}  ${fmt(calls / dt).padStart(11)}  ${fmt(calls / Math.max(1, batches), 1).padStart(10)}  ${fmt(stats.trajectoriesLearned).padStart(12)}  ${fmt(percentile(latency, 0.5), 2).padStart(10)}  ${fmt(reward, 2).padStart(6)}`)
      last = { at: now, actCalls: stats.actCalls, actBatches: stats.actBatches }
    }

    await Promise.all(names.map(async name => await rpc.async_(name, 'stop')))
    const reports = await Promise.all(names.map(async name => await rpc.async_<ActorReport>(name, 'report')))
    const info = rpc.debugInfo()
    const learnerMembership = Object.fromEntries(info.membership.map(m => [m.name, m.state]))
    const shm = info.transports.find(tr => tr.name === 'shm')
    const shmNote = shm?.available === true ? 'shm available on this host (native addon built)' : `shm unavailable here (${shm?.reason ?? 'unknown'}), so TCP carries everything`
    await actors.stop(5_000)
    await rpc.close()
    await learning

    printSummary(options, reports, stats, learnedBy, duplicates, policy, learnerMembership, rewardBySecond, shmNote)
    if (options.json) {
      console.log(JSON.stringify({
        ok: true,
        options,
        learner: {
          ...stats,
          meanBatch: stats.actCalls / Math.max(1, stats.actBatches),
          policyVersion: policy.version,
          duplicates,
          learnedByActor: Object.fromEntries([...learnedBy].map(([name, seqs]) => [name, seqs.size])),
          membership: learnerMembership
        },
        rewardBySecond,
        actors: reports
      }))
    }
  } finally {
    actors.killAll()
    await rpc.close()
  }
}

function printSummary (options: Options, reports: ActorReport[], stats: LearnerStats, learnedBy: Map<string, Set<number>>, duplicates: number,
  policy: Policy, learnerMembership: Record<string, string>, rewardBySecond: number[], shmNote: string): void {
  const steps = reports.reduce((s, r) => s + r.steps, 0)
  const sent = reports.reduce((s, r) => s + r.trajectoriesSent, 0)
  console.log('')
  console.log(`learner: ${fmt(stats.actCalls)} act calls in ${fmt(stats.actBatches)} batches (mean ${fmt(stats.actCalls / Math.max(1, stats.actBatches), 1)}, largest ${stats.maxBatch}); ` +
    `${fmt(stats.trajectoriesLearned)} of ${fmt(sent)} trajectories learned in ${fmt(stats.takes)} queue takes, ${duplicates} twice; policy v${policy.version}; ` +
    `reward ${fmt(rewardBySecond[0] ?? NaN, 2)} in the first second, ${fmt(rewardBySecond[rewardBySecond.length - 1] ?? NaN, 2)} in the last`)
  const rows = reports.map(r => {
    const total = Object.values(r.learnerLink.chosen).reduce((s, n) => s + n, 0)
    const arms = Object.entries(r.learnerLink.chosen).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1])
    const alive = Object.values(r.membership).filter(s => s === 'alive').length
    const evals = Object.entries(r.evaluatedBy).sort().map(([name, count]) => `${name} ${count}`).join(', ')
    return [
      r.name,
      fmt(r.steps),
      `${r.trajectoriesSent}/${learnedBy.get(r.name)?.size ?? 0}`,
      `${r.evaluationsAsked}${evals === '' ? '' : ` (${evals})`}`,
      arms.map(([arm, n]) => `${arm} ${n * 100 < total ? '<1' : Math.round(100 * n / total)}%`).join(', ') || 'none',
      `${alive}/${Object.keys(r.membership).length} alive`,
      r.directPeers.join(' ') || '-'
    ]
  })
  const head = ['actor', 'steps', 'traj sent/learned', 'evals asked (served by)', 'msgs to learner by', 'members seen', 'direct links (besides learner)']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
  console.log(line(head))
  for (const row of rows) console.log(line(row))
  const learnerAlive = Object.values(learnerMembership).filter(s => s === 'alive').length
  console.log(`${shmNote}; learner saw ${learnerAlive}/${Object.keys(learnerMembership).length} members alive; every actor knew only the learner's address, total ${fmt(steps)} steps in ${options.seconds} s`)
}

let options: Options
try {
  options = parseArgs(process.argv.slice(2))
} catch (err) {
  if (!(err instanceof UsageError)) throw err
  console.error(`actor-learner: ${err.message}\n${USAGE}`)
  process.exit(2)
}

const actors = new ActorProcesses()
process.on('exit', () => { actors.killAll() })
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\nactor-learner: ${signal}, stopping the actors`)
    actors.killAll()
    process.exit(signal === 'SIGINT' ? 130 : 143)
  })
}
const watchdog = setTimeout(() => {
  console.error('actor-learner: still running long after its time; giving up')
  actors.killAll()
  process.exit(1)
}, (options.seconds + 120) * 1000).unref()

main(options, actors).then(() => {
  clearTimeout(watchdog)
  process.exit(0)
}, (err: Error) => {
  console.error(`actor-learner: ${err.stack ?? err.message}`)
  actors.killAll()
  process.exit(1)
})
