import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Rpc, RpcError, generateIdentity } from '../src/index.js'
import { encodeFrame, FrameType, PROTOCOL_VERSION } from '../src/codec/frame.js'
import { TcpTransport } from '../src/transports/tcp/tcp-transport.js'
import type { Link } from '../src/transports/transport.js'
import { PeerProcess, eventually } from './helpers/peer-process.js'

/**
 * A fixture host, and a raw link to it from a bare transport of this process that speaks
 * frames directly (no PeerDirectory), so a test can send what a real peer never would.
 */
async function hostAndRawLink (t: any, name: string): Promise<{ host: PeerProcess, transport: TcpTransport, link: Link, frames: unknown[][], closed: Promise<unknown> }> {
  const host = await PeerProcess.start({ rpc: { name }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const transport = new TcpTransport({ privateKey: await generateKeyPair('Ed25519'), maxFrameBytes: 1 << 20 })
  await transport.start([])
  t.teardown(async () => { await transport.stop() })
  const link = await transport.dial(host.addresses[0], AbortSignal.timeout(10_000))
  const frames: unknown[][] = []
  link.onFrame = frame => { frames.push(frame) }
  const closed = new Promise(resolve => { link.onClose = resolve })
  return { host, transport, link, frames, closed }
}

function hello (name: string, peerId: string): Uint8Array {
  return encodeFrame([FrameType.HELLO, { v: PROTOCOL_VERSION, name, peerId, incarnation: 'x', addrs: [], transports: ['tcp'] }])
}

test('security - a peer without the cohort key cannot connect; one with it can', async t => {
  const host = await PeerProcess.start({ rpc: { name: 'vault', cohortKey: 'sesame' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const stranger = new Rpc({ lookupTimeout: 2 })
  const wrongKey = new Rpc({ lookupTimeout: 2, cohortKey: 'not sesame' })
  const member = new Rpc({ cohortKey: 'sesame' })
  t.teardown(async () => { await Promise.all([stranger.close(), wrongKey.close(), member.close()]) })
  for (const rpc of [stranger, wrongKey, member]) rpc.connect(host.addresses[0])
  t.is(await member.async_('vault', 'add', 1, 2), 3)
  for (const rpc of [stranger, wrongKey]) {
    const err = await t.throwsAsync(rpc.async_('vault', 'add', 1, 2))
    t.is((err as RpcError).code, 'PEER_NOT_FOUND')
    t.truthy(rpc.debugInfo().connections[0].lastError)
  }
})

test('security - a second live peer claiming a taken name is refused with NAME_TAKEN', async t => {
  const hub = await PeerProcess.start({ rpc: { name: 'hub' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await hub.kill())
  const first = await PeerProcess.start({ rpc: { name: 'worker' }, connect: [hub.addresses[0]] })
  t.teardown(async () => await first.kill())
  t.is(await eventually(async () => await hub.call('worker', 'pid')), first.child.pid)
  const impostor = await PeerProcess.start({ rpc: { name: 'worker' }, connect: [hub.addresses[0]] })
  t.teardown(async () => await impostor.kill())
  const debug = await eventually(async () => {
    const info = await impostor.request('debug')
    if (info.counters.handshakes.refusalsReceived < 1) throw new Error('not refused yet')
    return info
  })
  t.is(debug.counters.handshakes.lastRefusal.code, 'NAME_TAKEN')
  // The cohort keeps the first holder.
  t.is(await hub.call('worker', 'pid'), first.child.pid)
})

test('security - a persisted identity keeps its peer id across restarts', async t => {
  const identity = await generateIdentity()
  const a = new Rpc({ identity })
  await a.listen('127.0.0.1:0')
  const idA = a.debugInfo().peerId
  await a.close()
  const b = new Rpc({ identity })
  await b.listen('127.0.0.1:0')
  t.is(b.debugInfo().peerId, idA)
  await b.close()
  t.throws(() => new Rpc({ identity: 'nope' as any }), undefined, 'a non-Uint8Array identity is refused at first use')
})

test('security - a HELLO that claims another peer id is refused (names are bound to the Noise key)', async t => {
  const { host, link, frames, closed } = await hostAndRawLink(t, 'guarded')
  const forged = (await generateKeyPair('Ed25519')).publicKey.toString()
  link.send(hello('mallory', forged))
  await closed
  const goodbye = frames.find(f => f[0] === FrameType.GOODBYE)
  t.truthy(goodbye)
  t.is(goodbye?.[1], 'UNAUTHORIZED')
  const info = await host.request('debug')
  t.false(info.peers.some((p: any) => p.name === 'mallory'))
})

test('handshake - a HELLO of another protocol version is refused with a GOODBYE saying both versions; the host serves others', async t => {
  const { host, transport, link, frames, closed } = await hostAndRawLink(t, 'versioned')
  link.send(encodeFrame([FrameType.HELLO, { v: PROTOCOL_VERSION + 1, name: 'future', peerId: transport.localPeerId, incarnation: 'x', addrs: [], transports: ['tcp'] }]))
  await closed
  const goodbye = frames.find(f => f[0] === FrameType.GOODBYE)
  t.is(goodbye?.[1], 'BAD_FRAME')
  t.is(goodbye?.[2], `protocol version ${PROTOCOL_VERSION + 1} is not supported (this peer speaks ${PROTOCOL_VERSION})`)
  const info = await host.request('debug')
  t.false(info.peers.some((p: any) => p.name === 'future'))
  const client = new Rpc()
  t.teardown(async () => { await client.close() })
  client.connect(host.addresses[0])
  t.is(await client.async_('versioned', 'add', 2, 3), 5)
})

test('security - garbage after the handshake closes that link; the callee stays up and serves others', async t => {
  const { host, transport, link, closed } = await hostAndRawLink(t, 'robust')
  link.send(hello('fuzzer', transport.localPeerId))
  link.send(encodeFrame([FrameType.CALL, 'not an id', 42]))
  link.send(Buffer.from([0, 0, 0, 4, 0xc1, 0xc1, 0xc1, 0xc1]))
  await closed
  const client = new Rpc()
  t.teardown(async () => { await client.close() })
  client.connect(host.addresses[0])
  t.is(await client.async_('robust', 'add', 2, 3), 5)
  const info = await host.request('debug')
  t.true(info.counters.served.badFrames >= 1)
})

test('debug - debugInfo lists peers, links, connections, endpoints and counters, and prints a table', async t => {
  const host = await PeerProcess.start({ rpc: { name: 'inspected' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const client = new Rpc({ name: 'inspector' })
  t.teardown(async () => { await client.close() })
  client.define('local', () => 1)
  client.connect(host.addresses[0])
  for (let i = 0; i < 10; i++) await client.async_('inspected', 'add', i, i)
  const info = client.debugInfo()
  const peer = info.peers.find(p => p.name === 'inspected')
  t.is(peer?.state, 'connected')
  t.is(peer?.links[0].transport, 'tcp')
  // The first calls go over tcp; once a shm link is up (same host), the bandit may pick it.
  t.true((peer?.links ?? []).reduce((n, l) => n + l.framesOut, 0) >= 11)
  t.is(info.connections[0].state, 'connected')
  t.is(info.connections[0].peer, 'inspected')
  t.deepEqual(info.endpoints.map(e => e.name), ['local'])
  t.is((info.counters.calls as any).succeeded, 10)
  const { loadShmNative } = await import('../src/transports/shm/native.js')
  t.deepEqual(info.transports.map(x => [x.name, x.available]), [['tcp', true], ['shm', loadShmNative().addon != null], ['rdma', false]])
  const text = info.print(false)
  t.regex(text, /inspected\s+connected/)
  t.regex(text, /rdma .*no device under \/sys\/class\/infiniband/)
})
