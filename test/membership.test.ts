import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Packr } from 'msgpackr'
import { Membership, MessageKind, type MembershipDeps } from '../src/cohort/membership/membership.js'
import { ed25519RecordSigner, ed25519RecordVerifier, recordFromWire, recordToWire, type PeerRecord } from '../src/cohort/membership/peer-record.js'
import { SimulatedCohort } from '../bench/discovery/sim-network.js'

const packr = new Packr({ useRecords: false })

/** A membership with a real key whose outgoing messages are collected. */
async function member (name: string, incarnation = 1000, privateKey?: Awaited<ReturnType<typeof generateKeyPair>>): Promise<{ m: Membership, sent: Array<[string, unknown[]]>, lost: PeerRecord[], key: Awaited<ReturnType<typeof generateKeyPair>> }> {
  const key = privateKey ?? await generateKeyPair('Ed25519')
  const sent: Array<[string, unknown[]]> = []
  const lost: PeerRecord[] = []
  let now = 0
  const deps: MembershipDeps = {
    now: () => (now += 10),
    random: Math.random,
    send: (to, msg) => { sent.push([to, msg]); return true },
    canReach: () => true,
    signer: ed25519RecordSigner(key),
    verifier: ed25519RecordVerifier,
    events: { nameLost: holder => { lost.push(holder) } }
  }
  const m = new Membership({ name, peerId: key.publicKey.toString(), incarnation, host: { bootId: 'b', uid: 1 }, addrs: [['tcp', ['127.0.0.1:1']]], fns: ['f'] }, deps)
  m.start()
  return { m, sent, lost, key }
}

function entryOf (m: Membership, rank = 0): unknown {
  return [recordToWire(m.record), rank]
}

test('membership - a signed record verifies and any change to it is rejected and counted', async t => {
  const a = await member('a')
  const b = await member('b')
  b.m.receive('a', [MessageKind.DELTA, [entryOf(a.m)], []])
  t.is(b.m.get('a')?.state, 'alive')
  t.is(b.m.counters.recordsAccepted, 1)

  const c = await member('c')
  const forged = recordToWire(c.m.record)
  forged[4] = [['tcp', ['6.6.6.6:1']]] // other addresses under c's signature
  b.m.receive('a', [MessageKind.DELTA, [[forged, 0]], []])
  const stolen = recordToWire({ ...c.m.record, version: 9 }) // a newer version c never signed
  b.m.receive('a', [MessageKind.DELTA, [[stolen, 0]], []])
  const otherKey = recordToWire({ ...c.m.record, peerId: a.m.record.peerId }) // c's key under a's peer id
  b.m.receive('a', [MessageKind.DELTA, [[otherKey, 0]], []])
  const corrupt = recordToWire(c.m.record)
  corrupt[9] = new Uint8Array(corrupt[9]).map((x, i) => i === 3 ? x ^ 1 : x)
  b.m.receive('a', [MessageKind.DELTA, [[corrupt, 0]], []])
  t.is(b.m.counters.recordsRejected, 4)
  t.is(b.m.get('c'), undefined)
  t.is(b.m.get('a')?.record.addrs[0][1][0], '127.0.0.1:1')

  b.m.receive('a', [MessageKind.DELTA, [['garbage', 0], [recordToWire(c.m.record), 7]], []])
  b.m.receive('a', 'not a message')
  t.is(b.m.counters.malformed, 3)
  t.is(b.m.get('c'), undefined)
  t.truthy(recordFromWire(recordToWire(c.m.record)))
})

test('membership - a suspicion of a live peer is refuted with a higher version', async t => {
  const a = await member('a')
  const b = await member('b')
  b.m.receive('a', [MessageKind.DELTA, [entryOf(a.m)], []])
  const before = a.m.record.version
  a.m.receive('b', [MessageKind.SYN, [], [entryOf(a.m, 1)]])
  t.is(a.m.counters.refutations, 1)
  t.is(a.m.record.version, before + 1)
  t.true(ed25519RecordVerifier.verify(a.m.record))
  // b had it suspect; the refutation wins over the suspicion.
  b.m.merge('x', [recordToWire({ ...a.m.record, version: before }), 1])
  t.is(b.m.get('a')?.state, 'suspect')
  b.m.merge('a', entryOf(a.m))
  t.is(b.m.get('a')?.state, 'alive')
})

test('membership - a name stays with its first live key; a restart with the same key takes it back; a new key only after death', async t => {
  const holder = await member('name', 1000)
  const thief = await member('name', 2000)
  const observer = await member('obs')
  observer.m.merge('holder', entryOf(holder.m))
  observer.m.merge('thief', entryOf(thief.m))
  t.is(observer.m.get('name')?.record.peerId, holder.m.record.peerId)
  t.is(observer.m.counters.nameConflicts, 1)
  // The later claimant hears of the holder and learns that it lost the name.
  thief.m.merge('obs', entryOf(holder.m))
  t.is(thief.lost.length, 1)
  t.is(thief.lost[0].peerId, holder.m.record.peerId)
  // The holder hears of the thief: it keeps the name.
  holder.m.merge('obs', entryOf(thief.m))
  t.is(holder.lost.length, 0)

  // Same key, new process (higher incarnation): taken back at once.
  const restarted = await member('name', 3000, holder.key)
  observer.m.merge('x', entryOf(restarted.m))
  t.is(observer.m.get('name')?.record.incarnation, 3000)
  holder.m.merge('x', entryOf(restarted.m))
  t.is(holder.lost.length, 1)

  // A new key while the holder lives: refused; once it is dead: accepted, and the dead key stays buried.
  const newcomer = await member('name', 4000)
  observer.m.merge('x', entryOf(newcomer.m))
  t.is(observer.m.get('name')?.record.peerId, holder.m.record.peerId)
  observer.m.merge('x', entryOf(restarted.m, 2))
  t.is(observer.m.get('name')?.state, 'dead')
  observer.m.merge('x', entryOf(newcomer.m))
  t.is(observer.m.get('name')?.record.peerId, newcomer.m.record.peerId)
  observer.m.merge('x', entryOf(restarted.m))
  t.is(observer.m.get('name')?.record.peerId, newcomer.m.record.peerId)
})

test('membership - gossip messages stay bounded however large the table', async t => {
  const sim = await SimulatedCohort.create({ size: 1500, lossRate: 0, delayMs: [1, 2], crypto: false })
  const sizes: number[] = []
  const peer = sim.peers.get('p1')!.membership
  // Lots of news at once: many joins.
  for (let i = 0; i < 200; i++) await sim.join(`new${i}`)
  const send = (peer as any).deps.send
  ;(peer as any).deps.send = (to: string, msg: unknown[]) => { sizes.push(packr.pack(msg).byteLength); return send(to, msg) }
  sim.runFor(3000)
  t.true(sizes.length > 10)
  const max = Math.max(...sizes)
  t.true(max < 16 * 1024, `largest message ${max} bytes`)
})

test('membership - a simulated join reaches every peer, and a death is known to every peer', async t => {
  const sim = await SimulatedCohort.create({ size: 300, lossRate: 0.05, delayMs: [1, 20], crypto: false, seed: 7 })
  sim.runFor(2000)
  sim.watch('late')
  await sim.join('late')
  t.true(sim.runUntil(() => sim.knowing('late', 'join') >= sim.aliveCount() - 1, 30_000))
  sim.watch('p5')
  sim.kill('p5')
  t.true(sim.runUntil(() => sim.knowing('p5', 'dead') >= sim.aliveCount('p5'), 60_000))
  // And it learned the cohort: anti-entropy fills its table.
  sim.runFor(20_000)
  t.true(sim.peers.get('late')!.membership.table.size > 250)
})
