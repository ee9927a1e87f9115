/**
 * cohort over shared memory: the same echo as bench/tcp/cohort.ts, between two processes
 * on this host, measured only once the shm link is up (the first calls go over TCP
 * while the segment is being set up). The bandit picks the arm per message as usual.
 * BENCH_SHM_ARENA_BYTES sets both sides' `shmArenaBytes` (default: the Rpc's, 256 MiB).
 */
import { Rpc } from '../../src/index.js'
import type { EchoClient, EchoServer, Stack } from '../harness.js'

const SERVER_NAME = 'server'
const ARENA_BYTES = process.env.BENCH_SHM_ARENA_BYTES == null ? undefined : Number(process.env.BENCH_SHM_ARENA_BYTES)

async function serve (): Promise<EchoServer> {
  const rpc = new Rpc({ name: SERVER_NAME, shmArenaBytes: ARENA_BYTES })
  rpc.define('echo', (x: Uint8Array) => x)
  await rpc.listen('127.0.0.1:0')
  return { address: rpc.addresses()[0], close: async () => { await rpc.close() } }
}

async function connectTo (address: string): Promise<EchoClient> {
  const rpc = new Rpc({ shmArenaBytes: ARENA_BYTES })
  rpc.connect(address)
  await rpc.async_(SERVER_NAME, 'echo', new Uint8Array(1))
  const deadline = Date.now() + 10_000
  for (;;) {
    const info = rpc.debugInfo()
    if (info.peers.some(p => p.links.some(l => l.transport === 'shm'))) break
    if (Date.now() > deadline) {
      const shm = info.transports.find(t => t.name === 'shm')
      await rpc.close()
      throw new Error(`no shm link after 10 s (shm available: ${String(shm?.available)} ${shm?.reason ?? ''} ${shm?.lastError ?? ''})`)
    }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return {
    call: payload => rpc.async_<Uint8Array>(SERVER_NAME, 'echo', payload),
    close: async () => { await rpc.close() },
    details: () => {
      const info = rpc.debugInfo()
      return { counters: info.counters, links: info.peers.flatMap(p => p.links), bandit: info.peers.map(p => p.bandit) }
    }
  }
}

export const cohortShm: Stack = {
  id: 'cohort-shm',
  label: 'cohort (Rpc over shm)',
  serve,
  connect: connectTo
}
