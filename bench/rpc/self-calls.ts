/**
 * The Rpc's own cost per call, with no transport: an Rpc calling a function of its own
 * (the loopback path: the call and the reply are encoded, decoded, dispatched and settled
 * as over a link, but no link carries them), 64 calls in flight. One process, so the CPU
 * time per call is the caller's and the callee's work together, free of the wake-ups and
 * system calls that blur the two-process figures on a small VM. Part of `npm run bench`.
 *
 * ```sh
 * node dist/bench/rpc/self-calls.js            # after npm run build
 * BENCH_ROUNDS=3 node dist/bench/rpc/self-calls.js
 * ```
 *
 * Prints a table and writes bench/results/self-calls-<date>.json.
 */
import '../../src/transports/tcp/polyfill.js' // before any libp2p module: Node 20 lacks Promise.withResolvers
import { Rpc } from '../../src/index.js'
import { calibrate, describeCalibration } from '../calibrate.js'
import { machineFacts, median, nowMs, positiveIntFromEnv, textTable, writeReport } from '../harness.js'

const IN_FLIGHT = 64
const CONFIG = {
  rounds: positiveIntFromEnv('BENCH_ROUNDS', 5),
  warmupCalls: 20_000,
  /** Each round stops at this many calls or this much time, whichever comes first. */
  calls: 200_000,
  roundMs: 3_000
}

/** What each call carries (its result is the same value, echoed). */
const PAYLOADS: Record<string, () => unknown> = {
  'Uint8Array 64 B': () => new Uint8Array(64),
  'small object': () => ({ step: 7, action: 'left', reward: -0.5, done: false }),
  'Float32Array 1 KiB': () => new Float32Array(256)
}

interface Round { callsPerSec: number, cpuUsPerCall: number }

async function measure (rpc: Rpc, payload: unknown): Promise<Round> {
  let started = 0
  let ended = 0
  const deadline = nowMs() + CONFIG.roundMs
  const cpu0 = process.cpuUsage()
  const t0 = nowMs()
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (started < CONFIG.calls && nowMs() < deadline) {
      started++
      await rpc.async_(rpc.getName(), 'echo', payload)
      ended++
    }
  }))
  const seconds = (nowMs() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  return { callsPerSec: ended / seconds, cpuUsPerCall: (cpu.user + cpu.system) / ended }
}

async function main (): Promise<void> {
  const started = new Date()
  const speed = await calibrate()
  const rpc = new Rpc({ name: 'self' })
  rpc.define('echo', (x: unknown) => x)
  const rows: Array<{ payload: string, callsPerSec: number, cpuUsPerCall: number, rounds: Round[] }> = []
  try {
    for (const [label, make] of Object.entries(PAYLOADS)) {
      const payload = make()
      for (let i = 0; i < CONFIG.warmupCalls; i++) await rpc.async_('self', 'echo', payload)
      const rounds: Round[] = []
      for (let r = 0; r < CONFIG.rounds; r++) rounds.push(await measure(rpc, payload))
      rows.push({ payload: label, callsPerSec: median(rounds.map(r => r.callsPerSec)), cpuUsPerCall: median(rounds.map(r => r.cpuUsPerCall)), rounds })
    }
  } finally {
    await rpc.close()
  }

  console.log('')
  console.log(`Rpc calling itself (no transport), ${IN_FLIGHT} calls in flight; median of ${CONFIG.rounds} round(s). CPU: caller and callee together.`)
  console.log('')
  const cells = rows.map(r => [r.payload, Math.round(r.callsPerSec).toLocaleString('en-US'), r.cpuUsPerCall.toFixed(2)])
  console.log(textTable(['payload', 'calls/s', 'CPU µs/call'], cells))
  console.log(describeCalibration(speed))

  const report = {
    benchmark: 'self-calls',
    date: started.toISOString(),
    machine: { ...machineFacts(), speed },
    config: { ...CONFIG, inFlight: IN_FLIGHT },
    summary: rows
  }
  console.log(`\nwrote ${writeReport('self-calls', started, report)}`)
}

const watchdog = setTimeout(() => { console.error('bench self-calls: passed 2 minutes; giving up'); process.exit(2) }, 120_000).unref()
main().then(() => { clearTimeout(watchdog) }, (err: Error) => { console.error(err); process.exit(1) })
