/**
 * The small shared harness of the benchmarks: clocks, percentiles, deadlines, and the
 * parent/child handshake that puts each server in its own Node process.
 *
 * ```ts
 * // parent
 * const server = await spawnServer('raw-net')        // forks dist/bench/server.js raw-net
 * const client = await stack.connect(server.address)
 * ...
 * await server.stop()                                // asks, then kills if it must
 * ```
 *
 * The child side (`serveInChild`) answers over the IPC channel fork() opens:
 *
 * ```
 *  parent                              child (dist/bench/server.js <stack>)
 *    fork ───────────────────────────►  serve()
 *         ◄──────────────── { type: 'ready', address }
 *    ... benchmark over TCP ...
 *    { type: 'stop' } ───────────────►  close(), disconnect, exit by itself
 *         ◄──────────────── exit (or SIGKILL after a grace period)
 * ```
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { arch, cpus, loadavg, platform, release, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'
import { dirname, join, relative } from 'node:path'

/** Monotonic clock in milliseconds, sub-microsecond resolution. */
export function nowMs (): number {
  return performance.now()
}

/** The value at quantile `q` (0..1) of an ascending array, nearest-rank. */
export function percentile (sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil(q * sorted.length) - 1
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]
}

export function median (values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 0.5)
}

/** A positive integer from the environment variable `name`, `fallback` when it is unset; anything else throws. */
export function positiveIntFromEnv (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw == null || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got '${raw}'`)
  return value
}

/** `rows` under `header` in aligned columns: the first `left` columns to the left, the rest to the right. */
export function textTable (header: string[], rows: string[][], left = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(row => row[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i < left ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ')
  return [line(header), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

/** The machine's CPU time so far, in clock ticks summed over its CPUs (Linux: /proc/stat). */
export interface CpuTicks { steal: number, total: number }

/** Undefined where /proc/stat cannot be read. */
export function cpuTicks (): CpuTicks | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    const [user, nice, system, idle, iowait, irq, softirq, steal] = fields
    const total = user + nice + system + idle + iowait + irq + softirq + steal
    return Number.isFinite(total) && total > 0 ? { steal, total } : undefined
  } catch {
    return undefined
  }
}

/**
 * The share of the CPUs' time between two readings that the hypervisor gave to other
 * guests (steal): on a shared VM the figures of a run taken while it was high are slower
 * for every stack, and say more about the neighbours than about the code.
 */
export function stealShare (from: CpuTicks | undefined, to: CpuTicks | undefined): number | undefined {
  if (from == null || to == null || to.total <= from.total) return undefined
  return (to.steal - from.steal) / (to.total - from.total)
}

/** The clock tick of /proc's CPU times (USER_HZ, 100 on Linux), ms. */
export const PROC_TICK_MS = 10

/**
 * CPU time process `pid` has used so far, in ms (Linux: utime + stime of /proc/<pid>/stat,
 * in ticks of PROC_TICK_MS); undefined where it cannot be read.
 */
export function processCpuMs (pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    // Fields after the command name, which may hold spaces: state is the first, utime the 12th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * PROC_TICK_MS
  } catch {
    return undefined
  }
}

/** What every report says of the machine it ran on. */
export function machineFacts (): Record<string, unknown> {
  const list = cpus()
  // Node's own flags (V8's heap sizing among them) move the figures; the servers inherit them through fork().
  return { cpus: list.length, model: list[0]?.model ?? 'unknown', node: process.version, nodeFlags: process.execArgv, platform: platform(), release: release(), arch: arch(), totalMemBytes: totalmem(), loadAverageAfter: loadavg() }
}

/**
 * Writes `report` to bench/results/<name>-<date>.json (and latest.json with `latest`);
 * returns the file's path from the working directory.
 */
export function writeReport (name: string, date: Date, report: unknown, latest = false): string {
  const dir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${name}-${date.toISOString().replace(/:/g, '-')}.json`)
  const json = JSON.stringify(report, null, 2) + '\n'
  writeFileSync(file, json)
  if (latest) writeFileSync(join(dir, 'latest.json'), json)
  return relative(process.cwd(), file)
}

/**
 * Pins every thread of process `pid` to `cpus` (taskset's list: '1', '0-1'). False when it
 * cannot (no taskset here, or it failed): the caller measures unpinned and says so.
 */
export function pinProcess (pid: number, cpus: string): boolean {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** Rejects with a clear message when `promise` takes longer than `ms`; the work itself is not stopped. */
export async function withDeadline<T> (promise: PromiseLike<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`)) }, ms)
  })
  try {
    return await Promise.race([promise, expired])
  } finally {
    clearTimeout(timer)
  }
}

/** What a stack's server side hands back once it listens. */
export interface EchoServer {
  /** The address a client of the same stack dials. */
  address: string
  close: () => Promise<void>
}

/** One client connection: `call` sends a payload and resolves with the echoed bytes. */
export interface EchoClient {
  call: (payload: Uint8Array) => PromiseLike<Uint8Array>
  close: () => Promise<void>
  /** Optional counters kept in the JSON report (cohort: its debugInfo counters and link stats). */
  details?: () => unknown
}

/** A stack under test: one file per stack in bench/tcp/ exports one of these. */
export interface Stack {
  /** Used on the command line of the child and as the JSON key. */
  id: string
  /** The row label of the table. */
  label: string
  serve: () => Promise<EchoServer>
  connect: (address: string) => Promise<EchoClient>
}

type ParentMessage = { type: 'stop' }
type ChildMessage = { type: 'ready', address: string } | { type: 'failed', message: string }

const SERVER_ENTRY = join(dirname(fileURLToPath(import.meta.url)), 'server.js')
const READY_TIMEOUT_MS = 15_000
const STOP_GRACE_MS = 5_000

export interface ServerProcess {
  address: string
  pid: number
  /** Asks the child to close and exit; kills it if it has not exited after a grace period. Says which happened. */
  stop: () => Promise<'exited' | 'killed'>
}

/**
 * Forks `dist/bench/server.js <stackId>` and waits until it reports its address; on `cpu`
 * only, from its start, when given (`taskset -c`).
 */
export async function spawnServer (stackId: string, cpu?: string): Promise<ServerProcess> {
  const pinned = cpu == null ? {} : { execPath: 'taskset', execArgv: ['-c', cpu, process.execPath] }
  const child = fork(SERVER_ENTRY, [stackId], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...pinned })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  try {
    const address = await withDeadline(new Promise<string>((resolve, reject) => {
      child.once('message', (msg: ChildMessage) => {
        if (msg.type === 'ready') resolve(msg.address)
        else reject(new Error(`${stackId} server failed to start: ${msg.message}`))
      })
      child.once('exit', code => { reject(new Error(`${stackId} server exited with code ${String(code)} before it was ready`)) })
    }), READY_TIMEOUT_MS, `${stackId} server start`)
    return { address, pid: child.pid ?? -1, stop: async () => await stopChild(child, exited) }
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
}

async function stopChild (child: ChildProcess, exited: Promise<void>): Promise<'exited' | 'killed'> {
  if (child.exitCode != null || child.signalCode != null) return 'exited'
  if (child.connected) child.send({ type: 'stop' } satisfies ParentMessage)
  let timer: NodeJS.Timeout | undefined
  const graceOver = new Promise<boolean>(resolve => { timer = setTimeout(() => { resolve(false) }, STOP_GRACE_MS) })
  const clean = await Promise.race([exited.then(() => true), graceOver])
  clearTimeout(timer)
  if (clean) return 'exited'
  child.kill('SIGKILL')
  await exited
  return 'killed'
}

/**
 * The child side: starts the server, reports its address, and on 'stop' (or when the
 * parent goes away) closes it and lets the process end by itself. If something still
 * holds the event loop open after close(), that is reported and the process is ended.
 */
export function serveInChild (stack: Stack): void {
  let server: EchoServer | undefined
  let stopping = false
  const stop = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    const t0 = nowMs()
    try {
      await withDeadline(server?.close() ?? Promise.resolve(), STOP_GRACE_MS - 1000, `${stack.id} server close()`)
    } catch (err) {
      console.error(`[${stack.id} server] ${(err as Error).message}`)
    }
    if (process.connected) process.disconnect()
    // Unref'd: fires only if something other than this timer still keeps the loop alive.
    setTimeout(() => {
      console.error(`[${stack.id} server] still alive ${Math.round(nowMs() - t0)} ms after close(); open resources: ${process.getActiveResourcesInfo().join(', ')}`)
      process.exit(0)
    }, 2_000).unref()
  }
  process.on('message', (msg: ParentMessage) => { if (msg.type === 'stop') void stop() })
  process.on('disconnect', () => { void stop() })
  process.on('unhandledRejection', reason => { console.error(`[${stack.id} server] unhandled rejection:`, reason) })
  stack.serve().then(s => {
    server = s
    process.send?.({ type: 'ready', address: s.address } satisfies ChildMessage)
  }, (err: Error) => {
    process.send?.({ type: 'failed', message: err.stack ?? err.message } satisfies ChildMessage)
    process.exitCode = 1
    if (process.connected) process.disconnect()
  })
}
