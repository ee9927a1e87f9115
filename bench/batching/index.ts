/**
 * Batching section of `npm run bench`: one function served unbatched and with
 * batchSize 1, 8, 32 and 128, called by 64 concurrent callers in another process;
 * calls/s and p50 latency for each, all in one run.
 *
 * ```sh
 * node dist/bench/batching/index.js          # after npm run build
 * BENCH_ROUNDS=1 node dist/bench/batching/index.js
 * ```
 *
 * Three functions, because on a CPU a dense layer's cost grows with the batch:
 * - `dense`: y = W x + b with W 256x256, in plain TypeScript, row by row (cost per call
 *   the same batched or not; batching saves only the per-call RPC work);
 * - `kernel`: the same dense layer, plus a fixed 1 ms wait per run whatever the batch
 *   (Atomics.wait: the thread idles, as it does while a GPU runs a kernel);
 * - `fixed`: only that 1 ms wait, then y = x: a fixed-cost function, the case batching
 *   is for (a device whose run costs the same for 1 or 128 rows).
 *
 * Prints a table and writes bench/results/batching-<date>.json.
 */
import '../../src/transports/tcp/polyfill.js'
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Rpc, tensor, type Tensor } from '../../src/index.js'
import { machineFacts, median, nowMs, percentile, positiveIntFromEnv, textTable, withDeadline, writeReport } from '../harness.js'

const WIDTH = 256
const CALLERS = 64
const BATCH_SIZES = [undefined, 1, 8, 32, 128] as const
const FUNCTIONS = ['dense', 'kernel', 'fixed'] as const
const KERNEL_WAIT_MS = 1
/** A partial batch waits at most this long; 64 callers never fill a batch of 128. */
const MAX_WAIT_MS = 2
const CONFIG = {
  rounds: positiveIntFromEnv('BENCH_ROUNDS', 2),
  /** Each measurement stops at this many calls or this much time, whichever comes first. */
  maxCalls: 40_000,
  measureMs: 2_500,
  warmupMs: 400
}

type Fn = typeof FUNCTIONS[number]

const weights = Float32Array.from({ length: WIDTH * WIDTH }, (_, i) => Math.sin(i) / WIDTH)
const bias = Float32Array.from({ length: WIDTH }, (_, i) => Math.cos(i))

/** y = W x + b for each of the `rows` rows of x (shape [rows, 256]). */
function dense (x: Float32Array, rows: number): Float32Array {
  const y = new Float32Array(rows * WIDTH)
  for (let r = 0; r < rows; r++) {
    const xo = r * WIDTH
    for (let i = 0; i < WIDTH; i++) {
      let sum = bias[i]
      const wo = i * WIDTH
      for (let j = 0; j < WIDTH; j++) sum += weights[wo + j] * x[xo + j]
      y[xo + i] = sum
    }
  }
  return y
}

const idle = new Int32Array(new SharedArrayBuffer(4))
function run (fn: Fn, x: Tensor): Tensor {
  const rows = x.shape.length === 2 ? x.shape[0] : 1
  if (fn !== 'dense') Atomics.wait(idle, 0, 0, KERNEL_WAIT_MS)
  if (fn === 'fixed') return x
  return tensor(dense(x.data as Float32Array, rows), x.shape)
}

function endpointName (fn: Fn, batchSize: number | undefined): string {
  return `${fn}/${batchSize ?? 'none'}`
}

async function serve (): Promise<void> {
  const rpc = new Rpc({ name: 'batch-server' })
  for (const fn of FUNCTIONS) {
    for (const batchSize of BATCH_SIZES) {
      const opts = batchSize == null ? undefined : { batchSize, maxWaitMs: MAX_WAIT_MS }
      rpc.define(endpointName(fn, batchSize), (x: Tensor) => run(fn, x), opts)
    }
  }
  await rpc.listen('127.0.0.1:0')
  process.send?.({ address: rpc.addresses()[0] })
  process.on('disconnect', () => { void rpc.close().then(() => process.exit(0)) })
}

interface Measurement {
  fn: Fn
  batchSize: number | 'none'
  round: number
  calls: number
  callsPerSec: number
  p50Us: number
  p99Us: number
}

async function measure (rpc: Rpc, fn: Fn, batchSize: number | undefined, round: number): Promise<Measurement> {
  const name = endpointName(fn, batchSize)
  const inputs = Array.from({ length: CALLERS }, (_, c) => tensor(Float32Array.from({ length: WIDTH }, (_, j) => Math.sin(c * WIDTH + j))))
  // Every result is checked against the function applied alone, so a fast wrong answer cannot pass.
  const expected = inputs.map(x => (fn === 'fixed' ? x : run('dense', x)).data as Float32Array)
  const latencies: number[] = []
  let calls = 0
  let measuring = false
  let stopAt = nowMs() + CONFIG.warmupMs
  const caller = async (c: number): Promise<void> => {
    while (calls < CONFIG.maxCalls && nowMs() < stopAt) {
      const t0 = nowMs()
      const y = await rpc.async_<Tensor>('batch-server', name, inputs[c])
      const us = (nowMs() - t0) * 1000
      const got = y.data as Float32Array
      if (y.size !== WIDTH || !got.every((v, j) => v === expected[c][j])) throw new Error(`${name}: caller ${c} got a wrong result`)
      if (measuring) {
        latencies.push(us)
        calls++
      }
    }
  }
  await Promise.all(Array.from({ length: CALLERS }, async (_, c) => { await caller(c) }))
  measuring = true
  const t0 = nowMs()
  stopAt = t0 + CONFIG.measureMs
  await Promise.all(Array.from({ length: CALLERS }, async (_, c) => { await caller(c) }))
  const seconds = (nowMs() - t0) / 1000
  latencies.sort((a, b) => a - b)
  return { fn, batchSize: batchSize ?? 'none', round, calls, callsPerSec: calls / seconds, p50Us: percentile(latencies, 0.5), p99Us: percentile(latencies, 0.99) }
}

async function main (): Promise<void> {
  const started = new Date()
  const child = fork(fileURLToPath(import.meta.url), ['serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const address = await withDeadline(new Promise<string>(resolve => { child.once('message', (m: any) => { resolve(m.address) }) }), 20_000, 'batch server start')
  const rpc = new Rpc({ timeout: 60 })
  rpc.connect(address)
  const runs: Measurement[] = []
  try {
    for (let round = 1; round <= CONFIG.rounds; round++) {
      console.log(`round ${round}/${CONFIG.rounds}`)
      for (const fn of FUNCTIONS) {
        for (const batchSize of BATCH_SIZES) {
          const m = await withDeadline(measure(rpc, fn, batchSize, round), CONFIG.measureMs + CONFIG.warmupMs + 30_000, endpointName(fn, batchSize))
          console.log(`  ${endpointName(fn, batchSize).padEnd(12)} ${Math.round(m.callsPerSec).toLocaleString('en-US').padStart(8)} calls/s  p50 ${Math.round(m.p50Us).toLocaleString('en-US')} µs`)
          runs.push(m)
        }
      }
    }
  } finally {
    await rpc.close()
    child.disconnect()
  }

  const rows = FUNCTIONS.flatMap(fn => BATCH_SIZES.map(batchSize => {
    const mine = runs.filter(r => r.fn === fn && r.batchSize === (batchSize ?? 'none'))
    return { fn, batchSize: batchSize ?? 'none', callsPerSec: median(mine.map(r => r.callsPerSec)), p50Us: median(mine.map(r => r.p50Us)), p99Us: median(mine.map(r => r.p99Us)) }
  }))
  const base = (fn: Fn): number => rows.find(r => r.fn === fn && r.batchSize === 'none')?.callsPerSec ?? NaN
  console.log('')
  console.log(`Batching: ${CALLERS} concurrent callers in another process, float32 [${WIDTH}] in and out, maxWaitMs ${MAX_WAIT_MS}; median of ${CONFIG.rounds} round(s).`)
  console.log(`dense: 256x256 layer in plain TypeScript, cost grows with the batch.  kernel: the same plus a fixed ${KERNEL_WAIT_MS} ms idle wait per run (a device kernel).`)
  console.log(`fixed: only the ${KERNEL_WAIT_MS} ms wait (y = x), a fixed-cost function.`)
  console.log('')
  const cells = rows.map(r => [r.fn, String(r.batchSize), Math.round(r.callsPerSec).toLocaleString('en-US'), (r.callsPerSec / base(r.fn)).toFixed(2), Math.round(r.p50Us).toLocaleString('en-US'), Math.round(r.p99Us).toLocaleString('en-US')])
  console.log(textTable(['function', 'batch', 'calls/s', 'x unbatched', 'p50 µs', 'p99 µs'], cells, 2))
  for (const fn of FUNCTIONS) {
    const b1 = rows.find(r => r.fn === fn && r.batchSize === 1)?.callsPerSec ?? NaN
    console.log(`${fn}: batchSize 1 costs ${((1 - b1 / base(fn)) * 100).toFixed(1)} % of unbatched calls/s`)
  }

  const report = {
    benchmark: 'batching',
    date: started.toISOString(),
    machine: machineFacts(),
    config: { ...CONFIG, callers: CALLERS, width: WIDTH, maxWaitMs: MAX_WAIT_MS, kernelWaitMs: KERNEL_WAIT_MS },
    summary: rows,
    runs
  }
  console.log(`\nwrote ${writeReport('batching', started, report)}`)
}

if (process.argv[2] === 'serve') {
  void serve()
} else {
  const watchdog = setTimeout(() => { console.error('bench batching: passed 5 minutes; giving up'); process.exit(2) }, 300_000).unref()
  main().then(() => { clearTimeout(watchdog) }, (err: Error) => { console.error(err); process.exit(1) })
}
