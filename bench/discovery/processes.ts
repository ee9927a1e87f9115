/**
 * Discovery bench, part 1: real peers in separate processes on this machine, each started
 * knowing only a seed's address.
 *
 * - calls: time from the last peer's start until each peer has called every other by name
 *   (p50/p99/max over peers);
 * - join: a peer started after the cohort settled; time until each member's membership
 *   table holds it alive;
 * - death: a peer killed with SIGKILL; time until each member's table marks it dead;
 * - gossip load in steady state: bytes and messages sent per peer per second.
 *
 *   npm run build && node dist/bench/discovery/processes.js [--peers 32]
 *
 * Prints a table and writes bench/results/discovery-processes-<time>.json.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const SCRIPT = fileURLToPath(new URL('./peer.js', import.meta.url))

class Child {
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>()
  constructor (readonly name: string, readonly process: ChildProcess, readonly addresses: string[]) {
    process.on('message', (msg: any) => {
      const waiter = this.pending.get(msg.id)
      if (waiter == null) return
      this.pending.delete(msg.id)
      msg.ok === true ? waiter.resolve(msg.value) : waiter.reject(new Error(msg.message))
    })
    process.once('exit', () => { for (const w of this.pending.values()) w.reject(new Error(`${name} exited`)) })
  }

  static async start (name: string, connect: string[]): Promise<Child> {
    const child = fork(SCRIPT, [JSON.stringify({ name, connect })], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const hello = await new Promise<any>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`${name} did not start`)) }, 60_000)
      child.once('message', (m: any) => { clearTimeout(timer); resolve(m.value) })
      child.once('exit', () => { clearTimeout(timer); reject(new Error(`${name} exited at start`)) })
    })
    return new Child(name, child, hello.addresses)
  }

  async request<T = any> (op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++
    return await new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.process.send({ id, op, ...args })
    })
  }
}

function arg (name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] != null ? process.argv[i + 1] : fallback
}

function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

function summary (values: Array<number | null>): { p50: number, p99: number, max: number, missing: number } {
  const ok = values.filter((v): v is number => v != null)
  return { p50: percentile(ok, 50), p99: percentile(ok, 99), max: Math.max(...ok), missing: values.length - ok.length }
}

async function main (): Promise<void> {
  const count = Number(arg('peers', '32'))
  const children: Child[] = []
  const stopAll = (): void => { for (const c of children) c.process.kill('SIGKILL') }
  process.on('exit', stopAll)
  try {
    const seed = await Child.start('seed', [])
    children.push(seed)
    // Start the rest in parallel batches: each knows only the seed's address.
    const rest: Child[] = []
    for (let i = 1; i < count; i += 8) {
      const batch = await Promise.all(Array.from({ length: Math.min(8, count - i) }, async (_, j) => await Child.start(`peer-${i + j}`, [seed.addresses[0]])))
      rest.push(...batch)
    }
    children.push(...rest)
    const lastStart = Date.now()
    const names = children.map(c => c.name)
    const callDone = await Promise.all(children.map(async c => await c.request<number>('callAll', { peers: names })))
    const calls = summary(callDone.map(t => t - lastStart))
    const afterCalls = await Promise.all(children.map(async c => await c.request('stats')))
    const dials = afterCalls.reduce((s, a) => s + a.dials, 0)
    const dialFailures = afterCalls.reduce((s, a) => s + a.dialFailures, 0)
    const forwarded = afterCalls.reduce((s, a) => s + a.forwarded, 0)
    const dialErrors = [...new Set(afterCalls.map(a => a.lastDialError).filter(e => e != null))].slice(0, 3)
    if (dialErrors.length > 0) console.log(`some dial errors: ${dialErrors.join(' | ')}`)

    // Steady-state gossip load over 10 s.
    await new Promise(resolve => setTimeout(resolve, 2_000))
    const before = await Promise.all(children.map(async c => await c.request('stats')))
    await new Promise(resolve => setTimeout(resolve, 10_000))
    const after = await Promise.all(children.map(async c => await c.request('stats')))
    const seconds = (after[0].at - before[0].at) / 1000
    const bytesPerPeerPerSec = after.reduce((s, a, i) => s + a.bytesOut - before[i].bytesOut, 0) / children.length / seconds
    const msgsPerPeerPerSec = after.reduce((s, a, i) => s + a.messagesOut - before[i].messagesOut, 0) / children.length / seconds

    // A join after the cohort settled.
    const joinWatch = children.map(async c => await c.request<number | null>('waitKnows', { name: 'late-joiner', state: 'alive', limitMs: 30_000 }))
    const joinStart = Date.now()
    const joiner = await Child.start('late-joiner', [seed.addresses[0]])
    const joinReady = Date.now() // the joiner listens and has begun to connect to the seed
    children.push(joiner)
    const join = summary((await Promise.all(joinWatch)).map(t => t == null ? null : t - joinStart))
    const joinFromReady = summary((await Promise.all(joinWatch)).map(t => t == null ? null : Math.max(0, t - joinReady)))

    // A death.
    const victim = children[Math.floor(children.length / 2)]
    const survivors = children.filter(c => c !== victim)
    const deathWatch = survivors.map(async c => await c.request<number | null>('waitKnows', { name: victim.name, state: 'dead', limitMs: 60_000 }))
    await new Promise(resolve => setTimeout(resolve, 200))
    const killedAt = Date.now()
    victim.process.kill('SIGKILL')
    const death = summary((await Promise.all(deathWatch)).map(t => t == null ? null : t - killedAt))

    const result = {
      peers: count,
      callsAllPairsMs: calls,
      callPhase: { dials, dialFailures, forwardedFrames: forwarded },
      joinKnownMs: join,
      joinKnownFromReadyMs: joinFromReady,
      loadAverage: (await import('node:os')).loadavg(),
      deathKnownMs: death,
      gossipBytesPerPeerPerSec: Math.round(bytesPerPeerPerSec),
      gossipMessagesPerPeerPerSec: Math.round(msgsPerPeerPerSec * 10) / 10
    }
    console.log(`discovery, real processes: ${count} peers on ${(await import('node:os')).cpus().length} CPUs, each started knowing only the seed's address`)
    const rows = [
      ['every peer has called every other by name, from the last start', calls],
      ['a late joiner is alive in every table, from its fork()', join],
      ['... from the moment it is listening and connecting to the seed', joinFromReady],
      ['a SIGKILLed peer is dead in every table, from the kill', death]
    ] as const
    console.log(`${'measure'.padEnd(66)}  ${'p50 ms'.padStart(7)}  ${'p99 ms'.padStart(7)}  ${'max ms'.padStart(7)}  missing`)
    for (const [label, s] of rows) console.log(`${label.padEnd(66)}  ${String(s.p50).padStart(7)}  ${String(s.p99).padStart(7)}  ${String(s.max).padStart(7)}  ${s.missing}`)
    console.log(`during the all-pairs calls: ${dials} on-demand dials, ${dialFailures} failed, ${forwarded} frames forwarded`)
    console.log(`machine load average (1, 5, 15 min) at the end: ${result.loadAverage.map(x => x.toFixed(1)).join(', ')} (other work on the machine skews these figures)`)
    console.log(`gossip load in steady state: ${result.gossipBytesPerPeerPerSec} bytes and ${result.gossipMessagesPerPeerPerSec} messages sent per peer per second`)
    mkdirSync('bench/results', { recursive: true })
    const file = `bench/results/discovery-processes-${new Date().toISOString().replace(/[:.]/g, '-')}.json`
    writeFileSync(file, JSON.stringify(result, null, 2))
    console.log(`wrote ${file}`)
  } finally {
    stopAll()
  }
}

await main()
process.exit(0)
