/** The stacks compared, in table order (same-host shm and unix socket beside the TCP ones). */
import '../../src/transports/tcp/polyfill.js' // before any libp2p module: Node 20 lacks Promise.withResolvers
import type { Stack } from '../harness.js'
import { cohort, cohortSpin } from './cohort.js'
import { libp2pStream } from './libp2p-stream.js'
import { rawNet } from './raw-net.js'
import { cohortShm } from '../shm/cohort-shm.js'
import { rawUnix } from '../shm/raw-unix.js'
import { shmLink } from '../shm/shm-link.js'

export const STACKS: Stack[] = [cohortShm, shmLink, cohort, cohortSpin, libp2pStream, rawUnix, rawNet]

export function stackById (id: string): Stack {
  const stack = STACKS.find(s => s.id === id)
  if (stack == null) throw new Error(`unknown stack '${id}'; known: ${STACKS.map(s => s.id).join(', ')}`)
  return stack
}
