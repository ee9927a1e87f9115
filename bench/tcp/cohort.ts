/**
 * cohort over TCP, as a user would write it: a server Rpc named 'server' defines
 * `echo`; the client connects and calls it with a Uint8Array, which travels as raw
 * msgpack bin bytes inside cohort's frames. `cohort-spin` is the same with `spin: true`
 * on both sides (busy-polling after traffic, see src/transports/loop-spinner.ts).
 */
import { Rpc } from '../../src/index.js'
import type { EchoClient, EchoServer, Stack } from '../harness.js'

const SERVER_NAME = 'server'

async function serve (spin: boolean): Promise<EchoServer> {
  // TCP only: on one host the bandit would otherwise move to shared memory (bench/shm/).
  const rpc = new Rpc({ transports: ['tcp'], spin })
  rpc.setName(SERVER_NAME)
  rpc.define('echo', (x: Uint8Array) => x)
  await rpc.listen('127.0.0.1:0')
  const address = rpc.addresses()[0]
  if (address == null) throw new Error('cohort server: addresses() is empty after listen()')
  return { address, close: async () => { await rpc.close() } }
}

async function connectTo (address: string, spin: boolean): Promise<EchoClient> {
  const rpc = new Rpc({ transports: ['tcp'], spin })
  rpc.connect(address)
  return {
    call: payload => rpc.async_<Uint8Array>(SERVER_NAME, 'echo', payload),
    close: async () => { await rpc.close() },
    details: () => {
      const info = rpc.debugInfo()
      return { counters: info.counters, links: info.peers.flatMap(p => p.links) }
    }
  }
}

export const cohort: Stack = {
  id: 'cohort',
  label: 'cohort (Rpc over TCP)',
  serve: async () => await serve(false),
  connect: async address => await connectTo(address, false)
}

export const cohortSpin: Stack = {
  id: 'cohort-spin',
  label: 'cohort over TCP, spin: true',
  serve: async () => await serve(true),
  connect: async address => await connectTo(address, true)
}
