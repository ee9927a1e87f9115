import test from 'ava'
import { generateIdentity } from '../src/index.js'
import { PeerProcess, RemoteError, eventually } from './helpers/peer-process.js'

/** Generous waits: the machine may be loaded by other tests. */
const RPC = { lookupTimeout: 30, timeout: 60 }

async function start (t: { teardown: (fn: () => Promise<unknown>) => void }, config: Parameters<typeof PeerProcess.start>[0]): Promise<PeerProcess> {
  const peer = await PeerProcess.start({ listen: '127.0.0.1:0', ...config, rpc: { ...RPC, ...config.rpc } })
  t.teardown(async () => await peer.kill())
  return peer
}

function member (debug: any, name: string): any {
  return debug.membership.find((m: any) => m.name === name)
}

test.serial('discovery - a chain A-B-C-D where each knows only its neighbour: A calls D by name, then dials it directly', async t => {
  const d = await start(t, { rpc: { name: 'D' } })
  const c = await start(t, { rpc: { name: 'C' }, connect: [d.addresses[0]] })
  const b = await start(t, { rpc: { name: 'B' }, connect: [c.addresses[0]] })
  const a = await start(t, { rpc: { name: 'A' }, connect: [b.addresses[0]] })
  t.is(await a.call('D', 'whoami'), 'D')
  t.is(await d.call('A', 'whoami'), 'A')
  const debug = await a.request('debug')
  const dEntry = member(debug, 'D')
  t.is(dEntry.state, 'alive')
  t.true(dEntry.directLink)
  t.not(dEntry.learnedFrom, 'D') // learned through gossip, not from D itself
  t.deepEqual(dEntry.addresses[0], ['tcp', d.addresses])
  t.true(debug.counters.gossip.recordsAccepted >= 3)
})

test.serial('discovery - a star of 20 peers that know only the seed: every peer calls every other by name, exact sums', async t => {
  const seed = await start(t, { rpc: { name: 'seed' } })
  const n = 20
  const peers = await Promise.all(Array.from({ length: n }, async (_, i) =>
    await start(t, { rpc: { name: `star-${i}` }, connect: [seed.addresses[0]], value: i + 1 })))
  const names = peers.map(p => p.name)
  const sums = await Promise.all(peers.map(async p => await p.request('sumAll', { peers: names }).catch(async (err: Error) => {
    const debug = await p.request('debug').catch(() => undefined)
    t.log(p.name, err.message, JSON.stringify({ gossip: debug?.counters.gossip, forwarding: debug?.counters.forwarding, calls: debug?.counters.calls }))
    throw err
  })))
  t.deepEqual(sums, Array.from({ length: n }, () => n * (n + 1) / 2))
  // Ring all-reduce by name: each peer forwards a running sum to its successor.
  let running = 0
  for (let i = 0; i < n; i++) running = await peers[i].call(names[(i + 1) % n], 'add', running, i + 1)
  t.is(running, n * (n + 1) / 2)
})

test.serial('discovery - a SIGKILLed peer is marked dead by every member, calls to it fail fast, and a restart under its name is called again', async t => {
  const seed = await start(t, { rpc: { name: 'hub' } })
  const others = await Promise.all(['x', 'y', 'z'].map(async name => await start(t, { rpc: { name, timeout: 600, lookupTimeout: 3 }, connect: [seed.addresses[0]] })))
  const victim = await start(t, { rpc: { name: 'victim' }, connect: [seed.addresses[0]] })
  const [x] = others
  t.is(await x.call('victim', 'whoami'), 'victim')
  const inFlight = x.call('victim', 'sleep', 500_000).then(() => 'returned', (err: RemoteError) => err.code)
  await new Promise(resolve => setTimeout(resolve, 300))
  await victim.kill('SIGKILL')
  t.is(await inFlight, 'PEER_NOT_FOUND') // long before its 600 s deadline
  for (const peer of [seed, ...others]) {
    await eventually(async () => {
      const entry = member(await peer.request('debug'), 'victim')
      if (entry?.state !== 'dead') throw new Error(`${peer.name} sees victim ${String(entry?.state)}`)
    }, 120, 250)
  }
  const late = await t.throwsAsync(x.call('victim', 'whoami'))
  t.is((late as RemoteError).code, 'PEER_NOT_FOUND')

  // A new process (new key) under the dead peer's name joins and is called again.
  const reborn = await start(t, { rpc: { name: 'victim' }, connect: [seed.addresses[0]] })
  const pid = await eventually(async () => await x.call('victim', 'pid'), 120, 250)
  t.is(pid, reborn.child.pid)
})

test.serial('discovery - a restart with the same persisted identity takes its name back at once', async t => {
  const identity = Array.from(await generateIdentity())
  const seed = await start(t, { rpc: { name: 'anchor' } })
  const caller = await start(t, { rpc: { name: 'caller' }, connect: [seed.addresses[0]] })
  const first = await start(t, { rpc: { name: 'keeper', identity }, connect: [seed.addresses[0]] })
  t.is(await caller.call('keeper', 'pid'), first.child.pid)
  await first.kill('SIGKILL')
  // Restarted at once, before the cohort can have declared the old process dead.
  const second = await start(t, { rpc: { name: 'keeper', identity }, connect: [seed.addresses[0]] })
  const pid = await eventually(async () => await caller.call('keeper', 'pid'), 40, 250)
  t.is(pid, second.child.pid)
  const entry = member(await seed.request('debug'), 'keeper')
  t.is(entry.state, 'alive')
})

test.serial('discovery - a second peer claiming a live name under another key is refused with NAME_TAKEN', async t => {
  const seed = await start(t, { rpc: { name: 'root' } })
  const holder = await start(t, { rpc: { name: 'dup' }, connect: [seed.addresses[0]] })
  const witness = await start(t, { rpc: { name: 'witness' }, connect: [seed.addresses[0]] })
  // The witness knows 'dup' only through gossip.
  await eventually(async () => {
    if (member(await witness.request('debug'), 'dup')?.state !== 'alive') throw new Error('witness does not know dup yet')
  }, 120, 250)
  const thief = await start(t, { rpc: { name: 'dup', lookupTimeout: 2 }, connect: [witness.addresses[0]] })
  const refusal = await eventually(async () => {
    const r = (await thief.request('debug')).counters.handshakes.lastRefusal
    if (r == null) throw new Error('not refused yet')
    return r
  }, 120, 250)
  t.is(refusal.code, 'NAME_TAKEN')
  // The refused peer is told through onNameTaken.
  const told = await eventually(async () => {
    const events: string[] = await thief.request('nameTaken')
    if (events.length === 0) throw new Error('not told yet')
    return events
  }, 40, 250)
  t.regex(told[0], /^NAME_TAKEN: .*dup/)
  t.is(await seed.call('dup', 'pid'), holder.child.pid)
  t.is(await witness.call('dup', 'pid'), holder.child.pid)
  const err = await t.throwsAsync(thief.call('root', 'whoami'))
  t.is((err as RemoteError).code, 'PEER_NOT_FOUND')
})

test.serial('discovery - asyncAny calls a live peer that defines the function, never one that does not', async t => {
  const seed = await start(t, { rpc: { name: 'pool' } })
  await start(t, { rpc: { name: 'worker-1' }, connect: [seed.addresses[0]], extraFns: ['work'] })
  await start(t, { rpc: { name: 'worker-2' }, connect: [seed.addresses[0]], extraFns: ['work'] })
  const client = await start(t, { rpc: { name: 'boss', lookupTimeout: 3 }, connect: [seed.addresses[0]] })
  const seen = new Set<string>()
  await Promise.all(Array.from({ length: 40 }, async () => { seen.add(await client.request('callAny', { fn: 'work' })) }))
  t.true(seen.size >= 1)
  for (const name of seen) t.true(name === 'worker-1' || name === 'worker-2', name)
  const missing = await t.throwsAsync(client.request('callAny', { fn: 'nobody-defines-this' }), { instanceOf: RemoteError })
  t.is((missing as RemoteError).code, 'FUNCTION_NOT_FOUND')
  // syncAny blocks the caller's thread and reaches a definer through its gossiped addresses.
  const blocking = await client.request('syncAny', { fn: 'work' })
  t.true(blocking === 'worker-1' || blocking === 'worker-2', blocking)
  const none = await t.throwsAsync(client.request('syncAny', { fn: 'nobody-defines-this' }), { instanceOf: RemoteError })
  t.is((none as RemoteError).code, 'FUNCTION_NOT_FOUND')
})

test.serial('discovery - two peers that do not listen reach each other by forwarding through the peer both connect to', async t => {
  const hub = await start(t, { rpc: { name: 'relay-hub' } })
  const left = await start(t, { rpc: { name: 'dial-only-1' }, listen: undefined, connect: [hub.addresses[0]] })
  const right = await start(t, { rpc: { name: 'dial-only-2' }, listen: undefined, connect: [hub.addresses[0]] })
  t.is(await left.call('dial-only-2', 'whoami'), 'dial-only-2')
  t.is(await right.call('dial-only-1', 'add', 2, 3), 5)
  const debug = await left.request('debug')
  t.true(debug.counters.forwarding.originated >= 1)
  t.is(debug.counters.forwarding.badSignature, 0)
  t.true((await hub.request('debug')).counters.forwarding.relayed >= 2)
})
