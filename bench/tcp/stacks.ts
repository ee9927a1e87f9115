/** The stacks compared, in table order. */
import '../../src/transports/tcp/polyfill.js' // before any libp2p module: Node 20 lacks Promise.withResolvers
import type { Stack } from '../harness.js'
import { cohort } from './cohort.js'
import { libp2pStream } from './libp2p-stream.js'
import { rawNet } from './raw-net.js'

export const STACKS: Stack[] = [cohort, libp2pStream, rawNet]

export function stackById (id: string): Stack {
  const stack = STACKS.find(s => s.id === id)
  if (stack == null) throw new Error(`unknown stack '${id}'; known: ${STACKS.map(s => s.id).join(', ')}`)
  return stack
}
