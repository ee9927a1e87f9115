/**
 * What a pair costs at rest: after 20,000 calls (at most 20 s), 1 s of quiet, then the
 * CPU time of both processes over 5 s in which nothing is called. The shm link should
 * cost nothing then (its pollers asleep on their doorbells): the shm link alone, with no
 * Rpc around it, shows that directly. A cohort pair still runs its membership protocol
 * (gossip every 200 ms, SWIM once a second), which the link alone and the raw unix
 * socket, measured in the same run, do not have. Part of `npm run bench`.
 *
 * ```sh
 * node dist/bench/shm/idle.js                 # cohort over shm, the shm link alone, cohort over TCP, raw unix socket
 * node dist/bench/shm/idle.js cohort-shm
 * ```
 *
 * Prints a table and writes bench/results/idle-<date>.json. Linux only: the server's CPU
 * time comes from /proc/<pid>/stat (in ticks of 10 ms).
 */
import '../../src/transports/tcp/polyfill.js' // before any libp2p module: Node 20 lacks Promise.withResolvers
import { machineFacts, nowMs, PROC_TICK_MS, processCpuMs, spawnServer, textTable, writeReport, type Stack } from '../harness.js'
import { payloadOf, warmUp } from '../measure.js'
import { stackById } from '../tcp/stacks.js'

const CONFIG = { calls: 20_000, callsCapMs: 20_000, quietMs: 1_000, restMs: 5_000 }
const DEFAULT_STACKS = ['cohort-shm', 'shm-link', 'cohort', 'raw-unix']

interface Row { stack: string, label: string, calls: number, clientCpuMs: number, serverCpuMs: number }

/** The server's CPU time so far, ms; this bench needs it (Linux's /proc). */
function serverCpuMs (pid: number): number {
  const ms = processCpuMs(pid)
  if (ms == null) throw new Error(`cannot read the CPU time of process ${pid} from /proc`)
  return ms
}

async function measure (stack: Stack): Promise<Row> {
  const server = await spawnServer(stack.id)
  try {
    const client = await stack.connect(server.address)
    try {
      const calls = await warmUp(client, payloadOf(64), CONFIG.calls, nowMs() + CONFIG.callsCapMs)
      await new Promise(resolve => setTimeout(resolve, CONFIG.quietMs))
      const client0 = process.cpuUsage()
      const server0 = serverCpuMs(server.pid)
      await new Promise(resolve => setTimeout(resolve, CONFIG.restMs))
      const used = process.cpuUsage(client0)
      return { stack: stack.id, label: stack.label, calls, clientCpuMs: (used.user + used.system) / 1000, serverCpuMs: serverCpuMs(server.pid) - server0 }
    } finally {
      await client.close()
    }
  } finally {
    await server.stop()
  }
}

async function main (): Promise<void> {
  const started = new Date()
  const ids = process.argv.length > 2 ? process.argv.slice(2) : DEFAULT_STACKS
  const rows: Row[] = []
  for (const id of ids) rows.push(await measure(stackById(id)))
  console.log('')
  console.log(`CPU time over ${CONFIG.restMs / 1000} s of rest, after up to ${CONFIG.calls.toLocaleString('en-US')} calls and ${CONFIG.quietMs / 1000} s of quiet (server: in ${PROC_TICK_MS} ms ticks).`)
  console.log('')
  console.log(textTable(['stack', 'client CPU ms', 'server CPU ms'], rows.map(r => [r.label, r.clientCpuMs.toFixed(1), r.serverCpuMs.toFixed(0)])))
  const report = { benchmark: 'idle', date: started.toISOString(), machine: machineFacts(), config: CONFIG, rows }
  console.log(`\nwrote ${writeReport('idle', started, report)}`)
}

const watchdog = setTimeout(() => { console.error('bench idle: passed 2 minutes; giving up'); process.exit(2) }, 120_000).unref()
main().then(() => { clearTimeout(watchdog) }, (err: Error) => { console.error(err); process.exit(1) })
