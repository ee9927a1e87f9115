/**
 * `npm run bench`: cohort over shared memory and over TCP against the stacks beneath
 * them (bare libp2p, raw unix socket, raw TCP), in one run, between two Node processes
 * on this host (each server is a forked child, see harness.ts).
 *
 * ```sh
 * npm run bench                              # all stacks
 * node dist/bench/index.js cohort raw-net    # some stacks, by id
 * node dist/bench/index.js cohort-shm raw-unix cohort raw-net   # the same-host comparison
 * BENCH_ROUNDS=1 npm run bench               # one round instead of three
 * ```
 *
 * The stacks run in interleaved rounds (cohort, libp2p, net, cohort, ...) and the table
 * shows the median of the rounds for each figure, so a burst of load from elsewhere on
 * the machine hits one round of every stack rather than all of one stack. Then cohort
 * and the bare libp2p stream are measured interleaved (runInterleaved), and cohort over
 * shm and the unix socket with client and server on one CPU (runPinned). Prints the
 * tables and writes bench/results/bench-<date>.json and bench/results/latest.json.
 */
import '../src/transports/tcp/polyfill.js' // before any libp2p module: Node 20 lacks Promise.withResolvers
import { cpus, loadavg } from 'node:os'
import { cpuTicks, machineFacts, median, nowMs, pinProcess, positiveIntFromEnv, processCpuMs, stealShare, spawnServer, textTable, withDeadline, writeReport, type EchoClient, type ServerProcess, type Stack } from './harness.js'
import { calibrate, describeCalibration, type Calibration } from './calibrate.js'
import { interleavedRoundTrips, pipelined, roundTrip, throughput, verifyEcho, type InterleavedOptions, type InterleavedResult, type PipelinedResult, type RoundTripResult, type ThroughputResult } from './measure.js'
import { STACKS, stackById } from './tcp/stacks.js'

const MiB = 1024 * 1024

/** Counts and time caps; the whole run stays under three minutes on 2 vCPUs even when something hangs. */
const CONFIG = {
  rounds: positiveIntFromEnv('BENCH_ROUNDS', 3),
  roundTrip: { payloadBytes: 64, warmup: 50_000, warmupMs: 1_000, calls: 3000, capMs: 8_000 },
  pipelined: { payloadBytes: 64, inFlight: 64, warmup: 1_000_000, warmupMs: 500, calls: 300_000, measureMs: 1_000, capMs: 8_000 },
  throughput1MiB: { payloadBytes: 1 * MiB, warmup: 30, warmupMs: 500, repetitions: 15, capMs: 6_000 },
  throughput16MiB: { payloadBytes: 16 * MiB, warmup: 16, warmupMs: 1_000, repetitions: 8, capMs: 10_000 },
  /** After the rounds: cohort and the bare libp2p stream, round trips in alternating blocks (see interleavedRoundTrips). */
  interleaved: { stacks: ['cohort', 'libp2p-stream'], payloadBytes: 64, warmup: 3000, warmupMs: 1_000, blockCalls: 200, blocks: 30, capMs: 15_000 },
  /** Last: these stacks with client and server on one CPU, one round each, then round trips interleaved (see runPinned). */
  pinned: { stacks: ['cohort-shm', 'raw-unix'], cpu: '0', payloadBytes: 64, warmup: 3000, warmupMs: 1_000, blockCalls: 200, blocks: 30, capMs: 15_000 },
  connectCapMs: 10_000,
  /** A section that overruns its own cap by this much is abandoned (a hang, not slowness). */
  hangGraceMs: 5_000,
  /**
   * No new round starts if, at the pace of the last one, it would end past this much time:
   * with the interleaved section after it (its cap and the hang grace, 20 s, plus a few
   * seconds to start and stop its processes) and the pinned one (usually about 10 s; at
   * most each section's cap, 32 s a stack) the run still ends before totalCapMs.
   */
  roundsBudgetMs: 150_000,
  /** Hard limit for the whole run. */
  totalCapMs: 250_000
}

/** One stack's figures from one round. */
interface StackRun {
  round: number
  /** From connect() to the first echoed 64-byte call: dial, handshakes, lookup. */
  connectMs?: number
  roundTrip64B?: RoundTripResult
  pipelined64?: PipelinedResult
  throughput1MiB?: ThroughputResult
  throughput16MiB?: ThroughputResult
  /** 'killed' when the server process did not exit by itself after close(). */
  serverExit?: 'exited' | 'killed'
  /** How long the client's close() and the server process's close-and-exit took. */
  closeMs?: { client?: number, server: number }
  /** The client's own counters, taken before close() (cohort only). */
  clientDetails?: unknown
  /** Share of the CPUs' time the hypervisor took for other guests while this stack was measured (see stealShare). */
  stealShare?: number
  /** Set when a section hung: its calls may still be in flight, so later sections of this round are skipped. */
  hung?: boolean
  errors: string[]
}

/** The figures of the table: for each, the median over the rounds that produced it. */
interface Summary {
  p50Us?: number
  p99Us?: number
  callsPerSec?: number
  mbPerSec1MiB?: number
  mbPerSec16MiB?: number
  connectMs?: number
  stealShare?: number
}

interface StackResult {
  stack: string
  label: string
  summary: Summary
  runs: StackRun[]
}

const watchdog = setTimeout(() => {
  console.error(`bench: the whole run passed ${CONFIG.totalCapMs / 1000} s; giving up`)
  process.exit(2)
}, CONFIG.totalCapMs).unref()

const unhandled: string[] = []
process.on('unhandledRejection', reason => {
  const text = reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason)
  unhandled.push(text)
  console.error('bench: unhandled rejection:', reason)
})

async function section<T> (run: StackRun, name: string, capMs: number, measure: () => Promise<T>): Promise<T | undefined> {
  if (run.hung === true) {
    log(`    ${name}: skipped (an earlier section hung)`)
    return undefined
  }
  const t0 = nowMs()
  const hangMs = capMs + CONFIG.hangGraceMs
  try {
    const value = await withDeadline(measure(), hangMs, name)
    log(`    ${name}: ${describe(value)} (${((nowMs() - t0) / 1000).toFixed(1)} s)`)
    return value
  } catch (err) {
    if (nowMs() - t0 >= hangMs) run.hung = true
    run.errors.push(`${name}: ${(err as Error).message}`)
    log(`    ${name}: FAILED ${(err as Error).message}`)
    return undefined
  }
}

/**
 * A client of `stack` connected to `server`, then checked with one echo, each within the
 * connect cap. `connected` gets the client before the check, so the caller closes it
 * whether or not the check passes.
 */
async function connectChecked (stack: Stack, server: ServerProcess, connected: (client: EchoClient) => void): Promise<EchoClient> {
  const client = await withDeadline(stack.connect(server.address), CONFIG.connectCapMs, `connect ${stack.id}`)
  connected(client)
  await withDeadline(verifyEcho(client, 64), CONFIG.connectCapMs, `first call ${stack.id}`)
  return client
}

/** Closes a client within 5 s; a failure or overrun goes into `errors`. */
async function closeClient (client: EchoClient, errors: string[]): Promise<void> {
  await withDeadline(client.close(), 5_000, 'client close()').catch((err: Error) => { errors.push(err.message) })
}

/** Stops a server process; one that had to be killed goes into `errors`. */
async function stopServer (server: ServerProcess, errors: string[]): Promise<'exited' | 'killed'> {
  const exit = await server.stop()
  if (exit === 'killed') errors.push('server process did not exit after close(); killed')
  return exit
}

/** One round of one stack: a fresh server process (on `cpu` only, when given), a fresh client, every section. */
async function runStack (stack: Stack, round: number, cpu?: string): Promise<StackRun> {
  const run: StackRun = { round, errors: [] }
  log(`  ${stack.label}`)
  let server
  try {
    server = await spawnServer(stack.id, cpu)
  } catch (err) {
    run.errors.push((err as Error).message)
    log(`    FAILED ${(err as Error).message}`)
    return run
  }
  let client: EchoClient | undefined
  try {
    const t0 = nowMs()
    const c = await connectChecked(stack, server, connected => { client = connected })
    run.connectMs = nowMs() - t0
    log(`    connected to ${server.address} (server pid ${server.pid}) in ${run.connectMs.toFixed(1)} ms`)
    const ticks = cpuTicks()
    run.roundTrip64B = await section(run, '64 B round trip', CONFIG.roundTrip.capMs, async () => await roundTrip(c, CONFIG.roundTrip))
    run.pipelined64 = await section(run, '64 B pipelined x64', CONFIG.pipelined.capMs, async () => await pipelined(c, CONFIG.pipelined))
    run.throughput1MiB = await section(run, '1 MiB echo', CONFIG.throughput1MiB.capMs, async () => await throughput(c, CONFIG.throughput1MiB))
    run.throughput16MiB = await section(run, '16 MiB echo', CONFIG.throughput16MiB.capMs, async () => await throughput(c, CONFIG.throughput16MiB))
    run.stealShare = stealShare(ticks, cpuTicks())
    if (run.stealShare != null) log(`    steal: ${percent(run.stealShare)} of the CPUs' time went to other guests while measured`)
  } catch (err) {
    run.errors.push((err as Error).message)
    log(`    FAILED ${(err as Error).message}`)
  } finally {
    let clientCloseMs: number | undefined
    if (client != null) {
      run.clientDetails = client.details?.()
      const t0 = nowMs()
      await closeClient(client, run.errors)
      clientCloseMs = nowMs() - t0
    }
    const t0 = nowMs()
    run.serverExit = await stopServer(server, run.errors)
    run.closeMs = { client: clientCloseMs, server: nowMs() - t0 }
  }
  return run
}

interface InterleavedRun {
  stacks: string[]
  /** Where the processes ran while measured. */
  placement?: string
  results?: Record<string, InterleavedResult>
  /** The first stack's p50 and p99 over the second's. */
  p50Ratio?: number
  p99Ratio?: number
  stealShare?: number
  errors: string[]
}

/**
 * The TCP round trip of cohort and the bare libp2p stream measured together: both pairs
 * connected at once, blocks of calls taken in turn. The rounds above measure one stack
 * after another, and their p50s drift apart with the machine's load.
 *
 * While measured, the client runs on CPU 0 and both servers on CPU 1, so that both pairs
 * have the same placement: left to the scheduler, one server would share the client's CPU
 * and the other not, for a whole run, and the ratio moved 0.89–1.26x between runs of one
 * evening. Placed so, eight runs gave 1.03–1.30x (the highest with 9% of the CPUs' time
 * stolen by other guests), and one with 10–18% stolen 2.26x.
 */
async function runInterleaved (stacks: Stack[], options: InterleavedOptions = CONFIG.interleaved, placement: Placement = { client: '0', servers: '1' }): Promise<InterleavedRun> {
  const run: InterleavedRun = { stacks: stacks.map(s => s.id), errors: [] }
  const { blockCalls, blocks } = options
  log(`interleaved round trips: ${stacks.map(s => s.label).join(', ')} (blocks of ${blockCalls} calls in turn, ${blocks} each)`)
  const servers: ServerProcess[] = []
  const clients: EchoClient[] = []
  try {
    // Servers start placed (taskset -c), so each knows its CPUs from the start; this
    // process pins itself. taskset missing: nothing is placed.
    const placed = cpus().length >= 2 && pinProcess(process.pid, placement.client)
    for (const stack of stacks) {
      const server = await spawnServer(stack.id, placed ? placement.servers : undefined)
      servers.push(server)
      await connectChecked(stack, server, client => { clients.push(client) })
    }
    run.placement = placed ? `client on CPU ${placement.client}, both servers on CPU ${placement.servers}` : 'as the scheduler placed them (taskset failed)'
    log(`    placement: ${run.placement}`)
    const ticks = cpuTicks()
    const measured = await withDeadline(interleavedRoundTrips(clients, options, servers.map(server => () => processCpuMs(server.pid))), options.capMs + CONFIG.hangGraceMs, 'interleaved round trips')
    run.stealShare = stealShare(ticks, cpuTicks())
    run.results = Object.fromEntries(stacks.map((stack, i) => [stack.id, measured[i]]))
    run.p50Ratio = ratio(measured[0]?.p50Us, measured[1]?.p50Us)
    run.p99Ratio = ratio(measured[0]?.p99Us, measured[1]?.p99Us)
    for (const stack of stacks) log(`    ${stack.label}: ${describe(run.results[stack.id])}`)
    if (run.stealShare != null) log(`    steal: ${percent(run.stealShare)}`)
  } catch (err) {
    run.errors.push((err as Error).message)
    log(`    FAILED ${(err as Error).message}`)
  } finally {
    pinProcess(process.pid, allCpus())
    for (const client of clients) await closeClient(client, run.errors)
    for (const server of servers) await stopServer(server, run.errors)
  }
  return run
}

interface PinnedRun {
  cpu: string
  /** Set when the section did not run, and why. */
  skipped?: string
  results: StackResult[]
  /** cohort over shm against the unix socket, pinned, one round each: p50 (lower = cohort faster) and calls/s (higher = cohort faster). */
  p50Ratio?: number
  callsPerSecRatio?: number
  /** Round trips of both pairs at once, blocks in turn, all four processes on the CPU. */
  interleaved?: InterleavedRun
}

/** Where runInterleaved puts the client (this process) and the servers, in taskset's list syntax. */
interface Placement {
  client: string
  servers: string
}

/**
 * Client and server on one CPU, as `taskset -c 0 node dist/bench/index.js cohort-shm
 * raw-unix` runs them: this process is pinned for the section and each server starts
 * pinned, one round of each stack. Neither side can answer while the other runs, so the
 * shm link does not spin: this measures its doorbell path against the unix socket's
 * wake-ups (issue 4: no slower than the socket). Then the round trips again, both pairs
 * at once in blocks taken in turn: pinned, either stack's p50 moves between about 15 and
 * 25 µs from one minute to the next (the socket's too), so one round each can turn the
 * ratio either way.
 */
async function runPinned (stacks: Stack[]): Promise<PinnedRun> {
  const { cpu } = CONFIG.pinned
  const run: PinnedRun = { cpu, results: [] }
  if (!pinProcess(process.pid, cpu)) {
    run.skipped = 'taskset failed'
    log(`pinned to CPU ${cpu}: skipped (${run.skipped})`)
    return run
  }
  log(`pinned to CPU ${cpu}: ${stacks.map(s => s.label).join(', ')} (client and server on that CPU, one round each)`)
  try {
    for (const stack of stacks) {
      const stackRun = await runStack(stack, 1, cpu)
      run.results.push({ stack: stack.id, label: stack.label, summary: summarize([stackRun]), runs: [stackRun] })
    }
    run.interleaved = await runInterleaved(stacks, CONFIG.pinned, { client: cpu, servers: cpu })
  } finally {
    pinProcess(process.pid, allCpus())
  }
  const [shm, socket] = run.results.map(r => r.summary)
  run.p50Ratio = ratio(shm?.p50Us, socket?.p50Us)
  run.callsPerSecRatio = ratio(shm?.callsPerSec, socket?.callsPerSec)
  return run
}

/** Every CPU of this machine, in taskset's list syntax. */
function allCpus (): string {
  return `0-${cpus().length - 1}`
}

function summarize (runs: StackRun[]): Summary {
  const med = (pick: (r: StackRun) => number | undefined): number | undefined => {
    const values = runs.map(pick).filter((v): v is number => v != null && Number.isFinite(v))
    return values.length > 0 ? median(values) : undefined
  }
  return {
    p50Us: med(r => r.roundTrip64B?.p50Us),
    p99Us: med(r => r.roundTrip64B?.p99Us),
    callsPerSec: med(r => r.pipelined64?.callsPerSec),
    mbPerSec1MiB: med(r => r.throughput1MiB?.mbPerSec),
    mbPerSec16MiB: med(r => r.throughput16MiB?.mbPerSec),
    connectMs: med(r => r.connectMs),
    stealShare: med(r => r.stealShare)
  }
}

function describe (value: unknown): string {
  if (value == null || typeof value !== 'object') return String(value)
  const v = value as Partial<InterleavedResult & PipelinedResult & ThroughputResult>
  if (v.p50Us != null) {
    const cpu = v.clientCpuUsPerCall != null ? `; CPU per call ${fmt(v.clientCpuUsPerCall, 0)} µs client, ${fmt(v.serverCpuUsPerCall, 0)} µs server` : ''
    return `p50 ${fmt(v.p50Us, 1)} µs, p99 ${fmt(v.p99Us, 1)} µs over ${v.samples ?? 0} calls${cpu}`
  }
  if (v.callsPerSec != null) return `${fmt(v.callsPerSec, 0)} calls/s over ${v.calls ?? 0} calls`
  if (v.mbPerSec != null) return `${fmt(v.mbPerSec, 1)} MB/s (median of ${v.samplesMbPerSec?.length ?? 0} after warm-up; the first echo ${fmt(v.coldMbPerSec, 1)})`
  return JSON.stringify(value)
}

function fmt (value: number | undefined, digits: number): string {
  if (value == null || !Number.isFinite(value)) return '—'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function percent (share: number | undefined): string {
  return share == null ? '—' : `${(share * 100).toFixed(1)}%`
}

function log (line: string): void {
  console.log(line)
}

function table (results: StackResult[]): string {
  const header = ['stack', 'p50 µs', 'p99 µs', 'calls/s @64', 'MB/s 1MiB', 'MB/s 16MiB', 'steal']
  const rows = results.map(r => [
    r.label,
    fmt(r.summary.p50Us, 1),
    fmt(r.summary.p99Us, 1),
    fmt(r.summary.callsPerSec, 0),
    fmt(r.summary.mbPerSec1MiB, 1),
    fmt(r.summary.mbPerSec16MiB, 1),
    percent(r.summary.stealShare)
  ])
  return textTable(header, rows)
}

function jsUs (c: Calibration): string {
  return c.jsWorkUs.toFixed(2)
}

function ratio (a: number | undefined, b: number | undefined): number | undefined {
  return a != null && b != null && b !== 0 ? a / b : undefined
}

async function main (): Promise<void> {
  const wanted = process.argv.slice(2)
  const stacks = wanted.length > 0 ? wanted.map(stackById) : STACKS
  const started = new Date()
  const t0 = nowMs()
  const loadBefore = loadavg()
  if (loadBefore[0] > cpus().length) {
    log(`note: load average is ${loadBefore[0].toFixed(2)} on ${cpus().length} CPUs; other work on this machine will blur the figures`)
  }
  if (process.execArgv.length > 0) log(`note: node runs with ${process.execArgv.join(' ')} (the servers too); the README's table is without flags`)
  const speed = await calibrate()
  log(describeCalibration(speed))
  const runs = new Map<Stack, StackRun[]>(stacks.map(s => [s, []]))
  // The host's speed moves by the minute: each round is calibrated again, and the run once
  // more at its end, so that a slow round can be told from a slow build.
  const speedByRound: Calibration[] = []
  for (let round = 1; round <= CONFIG.rounds; round++) {
    const roundStart = nowMs()
    const roundSpeed = round === 1 ? speed : await calibrate()
    speedByRound.push(roundSpeed)
    log(`round ${round}/${CONFIG.rounds} (${jsUs(roundSpeed)} µs of JavaScript per calibration round)`)
    for (const stack of stacks) runs.get(stack)?.push(await runStack(stack, round))
    const elapsed = nowMs() - t0
    if (round < CONFIG.rounds && elapsed + (nowMs() - roundStart) > CONFIG.roundsBudgetMs) {
      log(`stopping after round ${round}: another round would pass the ${CONFIG.roundsBudgetMs / 1000} s budget`)
      break
    }
  }
  const results: StackResult[] = stacks.map(stack => {
    const stackRuns = runs.get(stack) ?? []
    return { stack: stack.id, label: stack.label, summary: summarize(stackRuns), runs: stackRuns }
  })
  const roundsRun = Math.max(...results.map(r => r.runs.length))

  const bare = results.find(r => r.stack === 'libp2p-stream')?.summary
  const ratiosOf = (id: string): Record<string, number | undefined> => {
    const cohort = results.find(r => r.stack === id)?.summary
    return {
      p50: ratio(cohort?.p50Us, bare?.p50Us),
      p99: ratio(cohort?.p99Us, bare?.p99Us),
      callsPerSec: ratio(cohort?.callsPerSec, bare?.callsPerSec),
      mbPerSec1MiB: ratio(cohort?.mbPerSec1MiB, bare?.mbPerSec1MiB),
      mbPerSec16MiB: ratio(cohort?.mbPerSec16MiB, bare?.mbPerSec16MiB)
    }
  }
  const ratios = ratiosOf('cohort')
  const spinRatios = ratiosOf('cohort-spin')
  const pairStacks = CONFIG.interleaved.stacks.filter(id => stacks.some(s => s.id === id)).map(stackById)
  const interleaved = pairStacks.length === CONFIG.interleaved.stacks.length ? await runInterleaved(pairStacks) : undefined
  const pinnedStacks = CONFIG.pinned.stacks.filter(id => stacks.some(s => s.id === id)).map(stackById)
  const pinned = pinnedStacks.length === CONFIG.pinned.stacks.length ? await runPinned(pinnedStacks) : undefined
  const speedAtEnd = await calibrate()

  console.log('')
  console.log(`Client and server in two Node processes on this host (TCP stacks on loopback; shm and unix socket same-host); each figure is the median of ${roundsRun} round(s).`)
  console.log('p50/p99: 64 B echo, one call at a time.  calls/s: 64 B echo, 64 calls in flight.')
  console.log('MB/s: 10^6 payload bytes per second counted BOTH ways (sent + echoed), median of repetitions after warm-up echoes (the first echo of each size is in the log above and the JSON).')
  console.log(describeCalibration(speed))
  console.log(`µs of JavaScript per calibration round, before each round: ${speedByRound.map(jsUs).join(', ')}; after the last: ${jsUs(speedAtEnd)}`)
  console.log('steal: the share of the CPUs\' time the hypervisor gave other guests while the stack was measured (median of the rounds); a run where it is high is slow for every stack.')
  console.log('')
  console.log(table(results))
  console.log('')
  const times = (r: number | undefined): string => r == null ? 'n/a' : `${fmt(r, 2)}x`
  console.log(`cohort / bare libp2p:  p50 ${times(ratios.p50)} (higher = cohort slower)   calls/s ${times(ratios.callsPerSec)} (lower = cohort slower)`)
  if (spinRatios.p50 != null) console.log(`cohort spin: true / bare libp2p:  p50 ${times(spinRatios.p50)}   p99 ${times(spinRatios.p99)}   calls/s ${times(spinRatios.callsPerSec)}`)
  if (interleaved?.results != null) {
    const [c, b] = CONFIG.interleaved.stacks.map(id => (interleaved.results as Record<string, InterleavedResult>)[id])
    console.log(`interleaved (both pairs at once, blocks of ${CONFIG.interleaved.blockCalls} calls in turn, ${interleaved.placement ?? ''}): cohort p50 ${fmt(c.p50Us, 1)} µs, p99 ${fmt(c.p99Us, 1)}; bare libp2p p50 ${fmt(b.p50Us, 1)} µs, p99 ${fmt(b.p99Us, 1)};  p50 ${times(interleaved.p50Ratio)}   p99 ${times(interleaved.p99Ratio)}`)
    console.log(`  CPU per call (client, server): cohort ${fmt(c.clientCpuUsPerCall, 0)}, ${fmt(c.serverCpuUsPerCall, 0)} µs; bare libp2p ${fmt(b.clientCpuUsPerCall, 0)}, ${fmt(b.serverCpuUsPerCall, 0)} µs (the server's in 10 ms ticks)`)
  }
  if (pinned != null && pinned.skipped == null) {
    console.log('')
    console.log(`pinned: client and server both on CPU ${pinned.cpu}, one round each`)
    console.log(table(pinned.results))
    console.log(`cohort over shm / unix socket, pinned:  p50 ${times(pinned.p50Ratio)} (higher = cohort slower)   calls/s ${times(pinned.callsPerSecRatio)} (lower = cohort slower)`)
    const pi = pinned.interleaved
    if (pi?.results != null) {
      const [a, b] = CONFIG.pinned.stacks
      console.log(`pinned, interleaved (both pairs at once, blocks of ${CONFIG.pinned.blockCalls} calls in turn, ${pi.placement ?? ''}): cohort over shm p50 ${fmt(pi.results[a].p50Us, 1)} µs, unix socket ${fmt(pi.results[b].p50Us, 1)};  p50 ${times(pi.p50Ratio)}`)
    }
  }
  for (const r of results) for (const run of r.runs) for (const e of run.errors) console.log(`! ${r.stack} round ${run.round}: ${e}`)
  for (const r of pinned?.results ?? []) for (const e of r.runs[0].errors) console.log(`! pinned ${r.stack}: ${e}`)
  for (const e of pinned?.interleaved?.errors ?? []) console.log(`! pinned, interleaved: ${e}`)
  for (const e of interleaved?.errors ?? []) console.log(`! interleaved round trips: ${e}`)
  for (const u of unhandled) console.log(`! unhandled rejection: ${u}`)

  const report = {
    benchmark: 'same-host',
    date: started.toISOString(),
    durationSeconds: (nowMs() - t0) / 1000,
    machine: { ...machineFacts(), loadAverageBefore: loadBefore, speed, speedByRound, speedAtEnd },
    units: {
      latency: 'microseconds, 64-byte payload, sequential calls',
      callsPerSec: '64-byte payload, 64 calls in flight, one message per call',
      mbPerSec: '10^6 payload bytes per second, counted both ways (request + echo), median of repetitions after warm-up echoes; coldMbPerSec: the first echo',
      summary: 'median over rounds of each figure'
    },
    config: CONFIG,
    results,
    ratiosCohortOverBareLibp2p: ratios,
    ratiosCohortSpinOverBareLibp2p: spinRatios,
    interleavedRoundTrip: interleaved,
    pinned,
    unhandledRejections: unhandled
  }
  console.log(`\nwrote ${writeReport('bench', started, report, true)} and latest.json`)
  if (unhandled.length > 0 || (interleaved?.errors.length ?? 0) > 0 || (pinned?.interleaved?.errors.length ?? 0) > 0 || [...results, ...(pinned?.results ?? [])].some(r => r.runs.some(run => run.errors.length > 0))) process.exitCode = 1
}

main().then(() => {
  clearTimeout(watchdog)
  // Everything is closed: the process should now end by itself. Say so if it does not.
  setTimeout(() => {
    console.error(`bench: still alive 3 s after closing everything; open resources: ${process.getActiveResourcesInfo().join(', ')}`)
    process.exit(process.exitCode ?? 0)
  }, 3_000).unref()
}, (err: Error) => {
  console.error(err)
  process.exit(1)
})
