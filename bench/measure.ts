/**
 * The three measurements, written once against `EchoClient` so every stack runs the
 * very same loops: sequential round-trip latency, pipelined call rate, and payload
 * throughput. Every loop is bounded by a count and by a deadline.
 *
 * ```ts
 * const lat = await roundTrip(client, { payloadBytes: 64, warmup: 50_000, warmupMs: 1000, calls: 3000, capMs: 15_000 })
 * console.log(lat.p50Us, lat.p99Us)
 * ```
 */
import { randomFillSync } from 'node:crypto'
import { median, nowMs, percentile, type EchoClient } from './harness.js'

export function payloadOf (bytes: number): Uint8Array {
  return randomFillSync(new Uint8Array(bytes))
}

/**
 * Throws unless `echoed` is as long as `payload`. A plain function after the loop's own
 * `await client.call()`, as a user's loop would be: an async helper around the call put
 * a second promise and resumption into every sample, the harness's cost and not the
 * stack's (50-100 ns a call in a micro loop).
 */
function checkLength (echoed: Uint8Array, payload: Uint8Array): void {
  if (echoed.byteLength !== payload.byteLength) {
    throw new Error(`echo returned ${echoed.byteLength} bytes for a payload of ${payload.byteLength}`)
  }
}

/** Up to `count` echoes of `payload`, stopping at `endMs`: the warm-up before a measurement's samples. Returns the echoes made. */
export async function warmUp (client: EchoClient, payload: Uint8Array, count: number, endMs: number): Promise<number> {
  let made = 0
  while (made < count && nowMs() < endMs) {
    checkLength(await client.call(payload), payload)
    made++
  }
  return made
}

/** One echo compared byte for byte: each stack must really carry the payload, not just its length. */
export async function verifyEcho (client: EchoClient, bytes: number): Promise<void> {
  const payload = payloadOf(bytes)
  const echoed = await client.call(payload)
  if (Buffer.compare(Buffer.from(echoed.buffer, echoed.byteOffset, echoed.byteLength), Buffer.from(payload.buffer)) !== 0) {
    throw new Error(`echo of ${bytes} bytes came back with different content (${echoed.byteLength} bytes)`)
  }
}

export interface RoundTripOptions {
  payloadBytes: number
  /**
   * Calls before the samples, and at most how long they may take: the round trip is the
   * first thing measured on a fresh pair, and until V8 has optimised the hot paths each
   * call costs several times what it does afterwards. Some thousands of calls may not be
   * enough: over shm, 3,000 calls sampled after 5,000 gave a p50 of 6.8–7.5 µs, the next
   * 3,000 on the same pair 5.3–7.0 and later ones 3.9–5.8 (three pairs).
   */
  warmup: number
  warmupMs: number
  calls: number
  capMs: number
}

export interface RoundTripResult {
  p50Us: number
  p99Us: number
  meanUs: number
  minUs: number
  maxUs: number
  /** Measured calls; fewer than asked when the time cap ended the loop. */
  samples: number
}

/** One call at a time; each sample is the time from `call` to the echoed bytes. */
export async function roundTrip (client: EchoClient, opts: RoundTripOptions): Promise<RoundTripResult> {
  const payload = payloadOf(opts.payloadBytes)
  const deadline = nowMs() + opts.capMs
  await warmUp(client, payload, opts.warmup, Math.min(deadline, nowMs() + opts.warmupMs))
  const us: number[] = []
  while (us.length < opts.calls && nowMs() < deadline) {
    const t0 = nowMs()
    checkLength(await client.call(payload), payload)
    us.push((nowMs() - t0) * 1000)
  }
  return roundTripResult(us)
}

function roundTripResult (us: number[]): RoundTripResult {
  us.sort((a, b) => a - b)
  return {
    p50Us: percentile(us, 0.5),
    p99Us: percentile(us, 0.99),
    meanUs: us.reduce((s, x) => s + x, 0) / us.length,
    minUs: us[0],
    maxUs: us[us.length - 1],
    samples: us.length
  }
}

export interface InterleavedOptions {
  payloadBytes: number
  /** Warm-up calls of each client, and at most how long each client's may take. */
  warmup: number
  warmupMs: number
  /** Calls in a row on one client before the next client's turn... */
  blockCalls: number
  /** ...and turns of every client. */
  blocks: number
  capMs: number
}

export interface InterleavedResult extends RoundTripResult {
  /** CPU time per call of the client process over its blocks (µs), the client's share only. */
  clientCpuUsPerCall: number
  /** CPU time per call of the server process over the client's blocks (µs; 10 ms ticks), undefined where unknown. */
  serverCpuUsPerCall?: number
}

/**
 * The round trip of several clients at once, each measured in short blocks taken in turn
 * (A B C, B C A, C A B, ...), so that whatever else the machine does in those seconds
 * falls on every client alike. Measured one after the other, a stack's p50 moved by 20%
 * and more between runs a minute apart on this VM, enough to turn a ratio either way.
 *
 * `serverCpuMs[i]` reads the CPU time of client i's server so far (ms), for CPU per call
 * on each side.
 */
export async function interleavedRoundTrips (clients: EchoClient[], opts: InterleavedOptions, serverCpuMs: Array<() => number | undefined> = []): Promise<InterleavedResult[]> {
  const payload = payloadOf(opts.payloadBytes)
  const deadline = nowMs() + opts.capMs
  for (const client of clients) await warmUp(client, payload, opts.warmup, Math.min(deadline, nowMs() + opts.warmupMs))
  const us: number[][] = clients.map(() => [])
  const clientCpuUs = clients.map(() => 0)
  const serverCpu = clients.map((): number | undefined => 0)
  for (let block = 0; block < opts.blocks && nowMs() < deadline; block++) {
    for (let turn = 0; turn < clients.length; turn++) {
      const index = (block + turn) % clients.length
      const server0 = serverCpuMs[index]?.()
      const cpu0 = process.cpuUsage()
      for (let i = 0; i < opts.blockCalls; i++) {
        const t0 = nowMs()
        checkLength(await clients[index].call(payload), payload)
        us[index].push((nowMs() - t0) * 1000)
      }
      const cpu = process.cpuUsage(cpu0)
      clientCpuUs[index] += cpu.user + cpu.system
      const server1 = serverCpuMs[index]?.()
      const sum = serverCpu[index]
      serverCpu[index] = sum == null || server0 == null || server1 == null ? undefined : sum + server1 - server0
    }
  }
  return us.map((samples, i) => {
    const calls = samples.length
    const server = serverCpu[i]
    return {
      ...roundTripResult(samples),
      clientCpuUsPerCall: clientCpuUs[i] / calls,
      serverCpuUsPerCall: server == null ? undefined : server * 1000 / calls
    }
  })
}

export interface PipelinedOptions {
  payloadBytes: number
  inFlight: number
  /**
   * Calls before the measured ones, and at most how long they may take. The pipelined
   * paths (many frames per read, many replies per turn) are not the round trip's: over
   * shm the first 30,000 pipelined calls ran at 150–280k calls/s and the next ones at
   * 300–500k, in the same pair, while V8 optimised them.
   */
  warmup: number
  warmupMs: number
  /** Measured calls, and at most how long they may take (the rate is of the calls made by then). */
  calls: number
  measureMs: number
  capMs: number
}

export interface PipelinedResult {
  callsPerSec: number
  /** Calls completed in the measured phase. */
  calls: number
  seconds: number
}

/**
 * `inFlight` lanes, each issuing its next call when its previous one completes, so
 * exactly `inFlight` calls are outstanding until the count or the deadline runs out.
 */
export async function pipelined (client: EchoClient, opts: PipelinedOptions): Promise<PipelinedResult> {
  const payload = payloadOf(opts.payloadBytes)
  const run = async (total: number, deadline: number): Promise<number> => {
    let issued = 0
    let completed = 0
    const lane = async (): Promise<void> => {
      while (issued < total && nowMs() < deadline) {
        issued++
        checkLength(await client.call(payload), payload)
        completed++
      }
    }
    await Promise.all(Array.from({ length: opts.inFlight }, lane))
    return completed
  }
  const capEnd = nowMs() + opts.capMs
  await run(opts.warmup, Math.min(capEnd, nowMs() + opts.warmupMs))
  const t0 = nowMs()
  const calls = await run(opts.calls, Math.min(capEnd, t0 + opts.measureMs))
  const seconds = (nowMs() - t0) / 1000
  return { callsPerSec: calls / seconds, calls, seconds }
}

export interface ThroughputOptions {
  payloadBytes: number
  /**
   * Echoes before the samples, and at most how long they may take: the first echoes of a
   * fresh pair also pay for buffers, windows and arena pages written for the first time,
   * which later ones do not (the first alone is reported as `coldMbPerSec`).
   */
  warmup: number
  warmupMs: number
  /** Samples taken; each is one echo round trip of the payload. */
  repetitions: number
  capMs: number
}

export interface ThroughputResult {
  /** Median over samples of 2 × payload bytes (sent and echoed) / round-trip seconds, in 10^6 bytes/s. */
  mbPerSec: number
  samplesMbPerSec: number[]
  /** The first echo of the payload on this connection, the same way. */
  coldMbPerSec: number
}

/** 10^6 bytes per second of an echo of `bytes` that began at `startMs`, counted both ways (sent and echoed). */
export function echoMbPerSec (bytes: number, startMs: number): number {
  return (2 * bytes) / ((nowMs() - startMs) / 1000) / 1e6
}

/** Echo round trips of one large Uint8Array; bytes are counted both ways. */
export async function throughput (client: EchoClient, opts: ThroughputOptions): Promise<ThroughputResult> {
  const payload = payloadOf(opts.payloadBytes)
  const deadline = nowMs() + opts.capMs
  const coldStart = nowMs()
  await verifyEcho(client, opts.payloadBytes) // also the warm-up: buffers, windows and JIT
  const coldMbPerSec = echoMbPerSec(payload.byteLength, coldStart)
  await warmUp(client, payload, opts.warmup, Math.min(deadline, nowMs() + opts.warmupMs))
  const samples: number[] = []
  while (samples.length < opts.repetitions && nowMs() < deadline) {
    const t0 = nowMs()
    checkLength(await client.call(payload), payload)
    samples.push(echoMbPerSec(payload.byteLength, t0))
  }
  return { mbPerSec: median(samples), samplesMbPerSec: samples, coldMbPerSec }
}
