/**
 * Discovery bench, part 2: the membership protocol (src/cohort/membership, the code real
 * peers run) simulated in one process for large cohorts, on a simulated clock and network
 * with loss and delay. For each size: seconds and gossip rounds until 99.9 % of peers know
 * of a join and of a death, and the load per member (messages and bytes per second).
 *
 *   npm run build && node dist/bench/discovery/simulate.js [--sizes 1000,10000] [--loss 0.01] [--crypto]
 *
 * Prints a table and writes bench/results/discovery-sim-<time>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { SimulatedCohort } from './sim-network.js'

interface Row {
  peers: number
  lossRate: number
  delayMs: [number, number]
  crypto: boolean
  joinMs: number | null
  joinRounds: number | null
  deathMs: number | null
  deathRounds: number | null
  suspectMs: number | null
  msgsPerMemberPerSec: number
  bytesPerMemberPerSec: number
  meanMessageBytes: number
  wallSeconds: number
}

function arg (name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] != null ? process.argv[i + 1] : fallback
}

const sizes = arg('sizes', '1000,10000').split(',').map(Number)
const lossRate = Number(arg('loss', '0.01'))
const delayMs: [number, number] = [1, 20]
const crypto = process.argv.includes('--crypto')
const ROUND_MS = 200

export async function simulate (size: number): Promise<Row> {
  const wall = performance.now()
  const sim = await SimulatedCohort.create({ size, lossRate, delayMs, crypto, seed: size })
  sim.runFor(3_000) // settle: start phases spread, probes under way

  const loadStart = sim.now
  const messagesStart = sim.messages
  sim.runFor(5_000)
  const loadSeconds = (sim.now - loadStart) / 1000
  const steadyMessages = sim.messages - messagesStart

  // A join: a newcomer that knows one seed.
  sim.watch('newcomer')
  const joinAt = sim.now
  await sim.join('newcomer')
  const target = (): number => Math.ceil(0.999 * (sim.aliveCount() - 1))
  const joined = sim.runUntil(() => sim.knowing('newcomer', 'join') >= target(), 60_000)
  const joinMs = joined ? sim.now - joinAt : null

  // A death: a random member stops dead.
  const victim = `p${Math.floor(sim.random() * size)}`
  sim.watch(victim)
  const deathAt = sim.now
  sim.kill(victim)
  let suspectMs: number | null = null
  const died = sim.runUntil(() => {
    if (suspectMs == null && sim.knowing(victim, 'suspect') > 0) suspectMs = sim.now - deathAt
    return sim.knowing(victim, 'dead') >= Math.ceil(0.999 * sim.aliveCount(victim))
  }, 120_000)
  const deathMs = died ? sim.now - deathAt : null

  const perMemberPerSec = steadyMessages / size / loadSeconds
  return {
    peers: size,
    lossRate,
    delayMs,
    crypto,
    joinMs,
    joinRounds: joinMs == null ? null : round1(joinMs / ROUND_MS),
    deathMs,
    deathRounds: deathMs == null ? null : round1(deathMs / ROUND_MS),
    suspectMs,
    msgsPerMemberPerSec: round1(perMemberPerSec),
    bytesPerMemberPerSec: Math.round(perMemberPerSec * sim.meanMessageBytes),
    meanMessageBytes: Math.round(sim.meanMessageBytes),
    wallSeconds: round1((performance.now() - wall) / 1000)
  }
}

function round1 (x: number): number {
  return Math.round(x * 10) / 10
}

async function main (): Promise<void> {
  const rows: Row[] = []
  for (const size of sizes) {
    process.stderr.write(`simulating ${size} peers...\n`)
    rows.push(await simulate(size))
  }
  const head = ['peers', 'loss', 'join 99.9% (s)', 'rounds', 'death 99.9% (s)', 'rounds', 'first suspect (s)', 'msgs/member/s', 'bytes/member/s', 'wall (s)']
  const cells = rows.map(r => [String(r.peers), String(r.lossRate), fmt(r.joinMs), String(r.joinRounds ?? '-'), fmt(r.deathMs), String(r.deathRounds ?? '-'),
    fmt(r.suspectMs), String(r.msgsPerMemberPerSec), String(r.bytesPerMemberPerSec), String(r.wallSeconds)])
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map(c => c[i].length)))
  const line = (c: string[]): string => c.map((x, i) => x.padStart(widths[i])).join('  ')
  console.log(`discovery simulation: ${ROUND_MS} ms gossip rounds, delay ${delayMs[0]}-${delayMs[1]} ms, ` +
    `records ${crypto ? 'signed and verified with Ed25519' : 'NOT signed (--crypto to sign and verify)'}; load measured in steady state`)
  console.log(line(head))
  for (const c of cells) console.log(line(c))
  mkdirSync('bench/results', { recursive: true })
  const file = `bench/results/discovery-sim-${new Date().toISOString().replace(/[:.]/g, '-')}.json`
  writeFileSync(file, JSON.stringify({ rows }, null, 2))
  console.log(`wrote ${file}`)
}

function fmt (ms: number | null): string {
  return ms == null ? 'not reached' : (ms / 1000).toFixed(2)
}

if (process.argv[1]?.endsWith('simulate.js')) await main()
