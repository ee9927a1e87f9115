/**
 * Large payloads back to back through cohort over shm, long enough to see the steady state
 * the main bench's few repetitions do not reach: there every repetition of a fresh pair
 * writes arena pages for the first time (this VM allocates fresh shared pages at about
 * 1 GB/s), here the arena has been written once and its blocks come back as the views of
 * the other side are collected.
 *
 * ```sh
 * node dist/bench/shm/stream.js                      # 100 echoes of 16 MiB
 * BENCH_SHM_ARENA_BYTES=268435456 node dist/bench/shm/stream.js 100 16
 * ```
 *
 * Prints MB/s (counted both ways) as the median of the second half of the echoes and over
 * all of them, and how many payloads went inline through the ring for want of arena room.
 */
import { median, nowMs, spawnServer } from '../harness.js'
import { echoMbPerSec, payloadOf } from '../measure.js'
import { cohortShm } from './cohort-shm.js'

const count = Math.max(2, Number(process.argv[2] ?? 100))
const bytes = Math.max(1, Number(process.argv[3] ?? 16)) * 1024 * 1024

const server = await spawnServer(cohortShm.id)
const client = await cohortShm.connect(server.address)
try {
  const payload = payloadOf(bytes)
  const mbPerSec: number[] = []
  const t0 = nowMs()
  // Bounded by count and by a minute, whichever comes first.
  while (mbPerSec.length < count && nowMs() - t0 < 60_000) {
    const start = nowMs()
    const echoed = await client.call(payload)
    if (echoed.byteLength !== bytes || echoed[bytes - 1] !== payload[bytes - 1]) throw new Error('echo came back different')
    mbPerSec.push(echoMbPerSec(bytes, start))
  }
  const seconds = (nowMs() - t0) / 1000
  const links = (client.details?.() as { links: Array<{ transport: string, shm?: Record<string, number> }> } | undefined)?.links ?? []
  const shm = links.find(l => l.transport === 'shm')?.shm
  console.log(`${mbPerSec.length} echoes of ${bytes / 1024 / 1024} MiB, arena ${String(process.env.BENCH_SHM_ARENA_BYTES ?? 'default')}`)
  console.log(`  MB/s, median of the second half: ${median(mbPerSec.slice(mbPerSec.length >> 1)).toFixed(0)}`)
  console.log(`  MB/s, median of all: ${median(mbPerSec).toFixed(0)}; overall ${(2 * bytes * mbPerSec.length / seconds / 1e6).toFixed(0)}`)
  console.log(`  client's payloads inline for want of arena room: ${shm?.oobInline ?? '?'} of ${mbPerSec.length}; the server's are counted on its side`)
} finally {
  await client.close()
  await server.stop()
}
