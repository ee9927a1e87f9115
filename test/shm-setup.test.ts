import test from 'ava'
import { decodeValue } from '../src/codec/frame.js'
import { ShmTransport } from '../src/transports/shm/shm-transport.js'
import { loadShmNative } from '../src/transports/shm/native.js'
import type { Link } from '../src/transports/transport.js'
import { farEnd, startFarEnd } from './helpers/transport-compliance.js'

const shm = loadShmNative().addon != null ? test : test.skip

shm('shm setup - a wrong token gets no segment, and the one-time offer cannot be tried again', async t => {
  const { child, ready } = await startFarEnd('shm')
  const end = farEnd(child, undefined as unknown as Link)
  t.teardown(end.kill)
  const offer = decodeValue(ready.offer.subarray(4)) as unknown[]
  const forged = [...offer]
  const token = Uint8Array.from(offer[2] as Uint8Array)
  token[0] ^= 0xff
  forged[2] = token
  const attacker = new ShmTransport({ maxFrameBytes: 1 << 20, localPeerId: () => 'attacker' })
  t.teardown(async () => { await attacker.stop() })
  let links = 0
  attacker.onInbound(link => { links++; link.close() })
  const via = { transport: 'tcp', send: () => {} } as unknown as Link
  attacker.onOffer({ name: 'child', peerId: 'child' }, forged, via)
  // The offering side refuses the token and hangs up; ours sees the hang-up.
  for (let i = 0; i < 100 && attacker.counters.failed === 0; i++) await new Promise(resolve => setTimeout(resolve, 100))
  t.is(attacker.counters.failed, 1)
  const status = await end.status()
  t.is(status.shm?.established, 0)
  t.regex(String(status.shm?.lastError), /wrong token/)
  // The listener took its one connection and is gone: even the right token is too late.
  const late = new ShmTransport({ maxFrameBytes: 1 << 20, localPeerId: () => 'late' })
  t.teardown(async () => { await late.stop() })
  late.onInbound(link => { links++; link.close() })
  late.onOffer({ name: 'child', peerId: 'child' }, offer, via)
  t.is(late.counters.failed, 1)
  t.regex(late.lastError ?? '', /ECONNREFUSED|Connection refused/)
  t.is(links, 0)
})

shm('shm setup - a malformed offer is refused without a connection attempt', t => {
  const transport = new ShmTransport({ maxFrameBytes: 1 << 20, localPeerId: () => 'me' })
  const via = { transport: 'tcp', send: () => {} } as unknown as Link
  transport.onOffer({ name: 'p', peerId: 'p' }, [7, '../../etc/passwd', new Uint8Array(32)], via)
  transport.onOffer({ name: 'p', peerId: 'p' }, [7, 'cohort-shm-00000000000000000000000000000000', 'short'], via)
  transport.onOffer({ name: 'p', peerId: 'p' }, [7, 'cohort-shm-00000000000000000000000000000000', new Uint8Array(32)], { ...via, transport: 'shm' } as unknown as Link)
  t.is(transport.counters.failed, 3)
  t.is(transport.counters.accepted, 0)
  t.regex(transport.lastError ?? '', /malformed SHM_OFFER/)
})
