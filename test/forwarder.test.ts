import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Packr } from 'msgpackr'
import { decodeValue, encodeFrame, FrameType, HEADER_BYTES } from '../src/codec/frame.js'
import { Membership } from '../src/cohort/membership/membership.js'
import { ed25519RecordSigner, ed25519RecordVerifier, recordToWire } from '../src/cohort/membership/peer-record.js'
import { Forwarder } from '../src/router/forwarder.js'

type Key = Awaited<ReturnType<typeof generateKeyPair>>

async function node (name: string, incarnation = 1000): Promise<{ key: Key, membership: Membership, sent: Array<[string, unknown[]]>, delivered: Array<[string, unknown[]]>, forwarder: Forwarder }> {
  const key = await generateKeyPair('Ed25519')
  const sent: Array<[string, unknown[]]> = []
  const delivered: Array<[string, unknown[]]> = []
  const membership = new Membership({ name, peerId: key.publicKey.toString(), incarnation, host: { bootId: 'b', uid: 0 }, addrs: [], fns: [] },
    { now: Date.now, random: Math.random, send: () => true, canReach: () => true, signer: ed25519RecordSigner(key), verifier: ed25519RecordVerifier })
  const forwarder = new Forwarder({
    selfName: () => name,
    privateKey: key,
    membership,
    linkedTo: peer => peer === 'hop',
    linked: () => ['hop'],
    sendDirect: (peer, frame) => { sent.push([peer, decodeValue(frame.subarray(HEADER_BYTES)) as unknown[]]); return true },
    deliver: (source, _peerId, frame) => { delivered.push([source, frame]) }
  })
  return { key, membership, sent, delivered, forwarder }
}

test('forwarding - the destination checks the source signature: tampered, re-signed or unknown-source frames are dropped', async t => {
  const a = await node('a')
  const d = await node('d')
  const inner = encodeFrame([FrameType.CALL, 7, 'echo', [1], 1000, 7])
  t.false(a.forwarder.forward('d', inner)) // d unknown: no route
  a.membership.merge('hop', [recordToWire(d.membership.record), 0]) // gossip brought d's record through 'hop'
  t.true(a.forwarder.forward('d', inner))
  const [hop, wrapped] = a.sent[0]
  t.is(hop, 'hop')
  t.is(wrapped[0], FrameType.FORWARD)

  // Delivered: d did not know a, but the record rides along and verifies.
  d.forwarder.receive('hop', wrapped)
  t.is(d.delivered.length, 1)
  t.deepEqual(d.delivered[0], ['a', [FrameType.CALL, 7, 'echo', [1], 1000, 7]])

  // The inner frame altered on the way.
  const altered = [...wrapped]
  altered[4] = encodeFrame([FrameType.CALL, 7, 'echo', [666], 1000, 7])
  d.forwarder.receive('hop', altered)
  // Redirected: the signature covers the destination.
  const other = await node('other')
  const redirected = [...wrapped]
  redirected[2] = 'other'
  other.forwarder.receive('hop', redirected)
  // A forwarder (m) that signs a frame as if from 'a' with its own key.
  const m = await node('m')
  const forged = [...wrapped]
  forged[5] = m.key.sign(new Packr({ useRecords: false, moreTypes: false }).pack(['cohort/forward/v1', 'a', 'd', wrapped[4]])) as Uint8Array
  d.forwarder.receive('hop', forged)
  t.is(d.delivered.length, 1)
  t.is(d.forwarder.counters.badSignature, 2)
  t.is(other.forwarder.counters.badSignature, 1)

  // A source the destination cannot know: no record, or a record for a's name under m's key (a holds it).
  const stranger = [...wrapped]
  stranger[1] = 'nobody'
  stranger[6] = undefined
  d.forwarder.receive('hop', stranger)
  t.is(d.forwarder.counters.unknownSource, 1)
  const impostor = await node('a', 5000)
  const fake = [...wrapped]
  fake[6] = recordToWire(impostor.membership.record)
  d.forwarder.receive('hop', fake)
  t.is(d.membership.get('a')?.record.peerId, a.key.publicKey.toString())
  t.is(d.delivered.length, 2) // the genuine frame again (a replay; the callee's dedup runs a call id once)

  // Relay: not for us, passed on with one hop less; at zero hops, dropped.
  const relay = await node('r')
  relay.forwarder.receive('x', wrapped)
  t.is(relay.forwarder.counters.noRoute, 1) // it does not know d
  relay.membership.merge('hop', [recordToWire(d.membership.record), 0])
  relay.forwarder.receive('x', wrapped)
  t.is(relay.sent[0][0], 'hop')
  t.is(relay.sent[0][1][3], (wrapped[3] as number) - 1)
  const spent = [...wrapped]
  spent[3] = 0
  relay.forwarder.receive('x', spent)
  t.is(relay.forwarder.counters.hopLimit, 1)
  relay.forwarder.receive('x', [FrameType.FORWARD, 'a'])
  t.is(relay.forwarder.counters.malformed, 1)
})
