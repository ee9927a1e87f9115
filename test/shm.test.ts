import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import test, { type ExecutionContext } from 'ava'
import { Rpc, tensor } from '../src/index.js'
import { loadShmNative } from '../src/transports/shm/native.js'
import { PeerProcess, eventually } from './helpers/peer-process.js'

const shm = loadShmNative().addon != null ? test : test.skip

/** Fails the test if it leaves anything in /dev/shm (the segment is a memfd: it never should). */
function noDevShmLeftovers (t: ExecutionContext): void {
  const before = new Set(readdirSync('/dev/shm'))
  t.teardown(() => {
    const added = readdirSync('/dev/shm').filter(name => !before.has(name))
    if (added.length > 0) throw new Error(`left in /dev/shm: ${added.join(', ')}`)
  })
}

/**
 * The shared-memory segments process `pid` still maps or holds an fd of (memfds named
 * cohort-shm, see native/cohort_shm.cc). Arenas are left out: their mappings go with the
 * last view read from them, at the collector's pace.
 */
function segmentsOf (pid: number): string[] {
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter(line => line.includes('memfd:cohort-shm'))
  const fds = readdirSync(`/proc/${pid}/fd`).map(fd => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { return '' } }).filter(target => target.includes('memfd:cohort-shm'))
  return [...maps, ...fds]
}

/** A host and a client process on this machine; resolves once the client's shm link to the host is up. */
interface PairOptions {
  /** Rpc options of the client, and of the host (whose name is `host`). */
  client?: Record<string, unknown>
  hostRpc?: Record<string, unknown>
  /** The client's environment. */
  env?: Record<string, string>
  /** Both processes run on this CPU only (taskset). */
  cpu?: number
}

async function pair (t: ExecutionContext, host: string, options: PairOptions = {}): Promise<{ host: PeerProcess, client: PeerProcess }> {
  const { client = {}, hostRpc = {}, env, cpu } = options
  noDevShmLeftovers(t)
  const h = await PeerProcess.start({ rpc: { ...hostRpc, name: host }, listen: '127.0.0.1:0' }, undefined, { cpu })
  t.teardown(async () => await h.kill())
  const c = await PeerProcess.start({ rpc: client, connect: [h.addresses[0]], env }, undefined, { cpu })
  t.teardown(async () => await c.kill())
  await eventually(async () => await c.call(host, 'add', 1, 2))
  return { host: h, client: c }
}

function links (info: any, peer: string, transport: string): any[] {
  return info.peers.find((p: any) => p.name === peer)?.links.filter((l: any) => l.transport === transport) ?? []
}

function arm (info: any, peer: string, transport: string): any {
  return info.peers.find((p: any) => p.name === peer)?.bandit.find((a: any) => a.transport === transport)
}

async function shmUp (client: PeerProcess, peer: string): Promise<void> {
  await eventually(async () => {
    if (links(await client.request('debug'), peer, 'shm').length === 0) throw new Error('no shm link yet')
  }, 40, 250)
}

shm('shm - two processes on one host set up shared memory by themselves and the bandit sends on it', async t => {
  const { host, client } = await pair(t, 'shm-host')
  await shmUp(client, 'shm-host')
  // One segment, mapped once in each process; its fd was closed once mapped.
  for (const peer of [host, client]) t.is(segmentsOf(peer.child.pid as number).length, 1)
  t.deepEqual(await client.request('calls', { peer: 'shm-host', fn: 'echo', args: [new Uint8Array(64)], count: 500, concurrency: 4 }), { ok: 500 })
  const info = await client.request('debug')
  const [link] = links(info, 'shm-host', 'shm')
  // Most of them: on this shared, loaded machine a load spike may divert a few to tcp.
  t.true(link.framesOut >= 300, `shm carried ${link.framesOut} frames`)
  t.true(arm(info, 'shm-host', 'shm').chosen.small > arm(info, 'shm-host', 'tcp').chosen.small)
  t.true(info.transports.find((x: any) => x.name === 'shm').available)
})

shm('shm - two processes pinned to one CPU answer every call, and ring each other once per run of calls', async t => {
  // A peer asleep on our own CPU is rung once this side has written all its turn's calls.
  const { client } = await pair(t, 'shm-pinned', { cpu: 0 })
  await shmUp(client, 'shm-pinned')
  t.deepEqual(await client.request('calls', { peer: 'shm-pinned', fn: 'echo', args: [new Uint8Array(64)], count: 20_000, concurrency: 64 }), { ok: 20_000 })
  t.deepEqual(await client.request('calls', { peer: 'shm-pinned', fn: 'add', args: [2, 3], count: 500, concurrency: 1 }), { ok: 500 })
  const [link] = links(await client.request('debug'), 'shm-pinned', 'shm')
  t.true(link.framesOut >= 10_000, `shm carried ${String(link.framesOut)} frames`)
  t.true(link.shm.ringsDeferred > 0, `rings held to the end of a run: ${String(link.shm.ringsDeferred)} of ${String(link.shm.rung)}`)
})

shm('shm - a host with three shm peers serves all of them at once', async t => {
  // Three links polled by one loop, each of which may wait on its ring within a turn.
  const { host, client } = await pair(t, 'shm-many')
  const others = await Promise.all([1, 2].map(async () => {
    const c = await PeerProcess.start({ rpc: {}, connect: [host.addresses[0]] })
    t.teardown(async () => await c.kill())
    await eventually(async () => await c.call('shm-many', 'add', 1, 2))
    return c
  }))
  const clients = [client, ...others]
  for (const c of clients) await shmUp(c, 'shm-many')
  const results = await Promise.all(clients.map(async c => await c.request('calls', { peer: 'shm-many', fn: 'echo', args: [new Uint8Array(64)], count: 1000, concurrency: 8 })))
  t.deepEqual(results, [{ ok: 1000 }, { ok: 1000 }, { ok: 1000 }])
  for (const c of clients) t.true(links(await c.request('debug'), 'shm-many', 'shm')[0].framesOut > 0)
})

shm('shm - setTransports([tcp]) sends everything over TCP; allowing shm again uses it again', async t => {
  const { client } = await pair(t, 'shm-switch')
  await shmUp(client, 'shm-switch')
  await client.request('setTransports', { transports: ['tcp'] })
  const before = links(await client.request('debug'), 'shm-switch', 'shm')[0].framesOut
  t.deepEqual(await client.request('calls', { peer: 'shm-switch', fn: 'add', args: [1, 2], count: 200, concurrency: 4 }), { ok: 200 })
  const after = await client.request('debug')
  // Only answers to the host's own probes (PONG) may still leave on shm, not 200 calls.
  t.true(links(after, 'shm-switch', 'shm')[0].framesOut - before < 50)
  t.true(links(after, 'shm-switch', 'tcp')[0].framesOut >= 200)
  await client.request('setTransports', { transports: ['tcp', 'shm'] })
  t.deepEqual(await client.request('calls', { peer: 'shm-switch', fn: 'add', args: [1, 2], count: 200, concurrency: 4 }), { ok: 200 })
  t.true(links(await client.request('debug'), 'shm-switch', 'shm')[0].framesOut > before)
})

shm('shm - the segment torn down mid-traffic: calls fail over to TCP, none lost, each runs once', async t => {
  const { host, client } = await pair(t, 'shm-torn')
  await shmUp(client, 'shm-torn')
  const running = client.request('calls', { peer: 'shm-torn', fn: 'count', count: 3000, concurrency: 32 })
  await new Promise(resolve => setTimeout(resolve, 150))
  t.is(await host.request('dropShm'), 1)
  t.deepEqual(await running, { ok: 3000 })
  // At-most-once across the failover: the callee ran each call exactly once.
  t.is(await client.call('shm-torn', 'getCount'), 3000)
  const info = await client.request('debug')
  t.is(info.counters.calls.succeeded, info.counters.calls.started)
  // The pair sets shared memory up again by itself.
  await shmUp(client, 'shm-torn')
})

shm('shm - a corrupted ring header closes the link, both processes live on, calls go over TCP', async t => {
  const { host, client } = await pair(t, 'shm-corrupt')
  await shmUp(client, 'shm-corrupt')
  const running = client.request('calls', { peer: 'shm-corrupt', fn: 'count', count: 2000, concurrency: 16 })
  await new Promise(resolve => setTimeout(resolve, 100))
  t.is(await host.request('corruptShm'), 1)
  t.deepEqual(await running, { ok: 2000 })
  t.is(await client.call('shm-corrupt', 'getCount'), 2000)
  await eventually(async () => {
    if (links(await client.request('debug'), 'shm-corrupt', 'shm').length !== 0) throw new Error('shm link still open')
  }, 20, 250)
  // Both still answer.
  t.is(await client.call('shm-corrupt', 'add', 2, 2), 4)
  t.true((await host.request('debug')).peers.length >= 1)
})

shm('shm - a peer killed mid-write: the link closes, calls end with an error, the survivor works on', async t => {
  // Arenas too small for the payloads, so they go inline and stream through the ring.
  const arena = { shmArenaBytes: 2 ** 16 }
  const { host, client } = await pair(t, 'shm-dies', { client: { ...arena, lookupTimeout: 0.2 }, hostRpc: arena })
  await shmUp(client, 'shm-dies')
  const served = async (): Promise<number> => (await host.request('debug')).counters.served.calls
  const before = await served()
  // 32 MiB echoes stream through the 4 MiB ring in pieces; kill the host once it has
  // answered a few, while the next ones cross. (A sleep before the kill let every call
  // end first on a fast day.)
  const running = client.request('bigCalls', { peer: 'shm-dies', bytes: 32 * 1024 * 1024, count: 60, concurrency: 2 })
  await eventually(async () => { if (await served() - before < 3) throw new Error('not under way yet') }, 200, 20)
  await host.kill('SIGKILL')
  const outcomes = await running
  const total = Object.values(outcomes as Record<string, number>).reduce((a, b) => a + b, 0)
  t.is(total, 60)
  t.true((outcomes.ok ?? 0) >= 1, JSON.stringify(outcomes))
  t.is(outcomes.CORRUPT, undefined)
  t.true((outcomes.PEER_NOT_FOUND ?? 0) >= 1, JSON.stringify(outcomes))
  const info = await client.request('debug')
  t.is(links(info, 'shm-dies', 'shm').length, 0)
  t.is(await client.call('shm-dies', 'add', 1, 1).catch((err: any) => err.code), 'PEER_NOT_FOUND')
  // The survivor let the segment go: the last mapping of a memfd was all that kept it.
  t.deepEqual(segmentsOf(client.child.pid as number), [])
})

shm('shm - without the addon (COHORT_SHM_DISABLE=1) debugInfo says why and calls go over TCP', async t => {
  const { client } = await pair(t, 'shm-none', { env: { COHORT_SHM_DISABLE: '1' } })
  t.deepEqual(await client.request('calls', { peer: 'shm-none', fn: 'add', args: [1, 2], count: 50 }), { ok: 50 })
  const info = await client.request('debug')
  const entry = info.transports.find((x: any) => x.name === 'shm')
  t.false(entry.available)
  t.regex(entry.reason, /COHORT_SHM_DISABLE/)
  t.is(links(info, 'shm-none', 'shm').length, 0)
})

shm('bandit - an emulated RDMA arm slower than shm is not used; made faster, the bandit moves to it', async t => {
  const { client } = await pair(t, 'bandit-host', { client: { emulateRdma: { latencyUs: 200_000 } } })
  await shmUp(client, 'bandit-host')
  const calls = { peer: 'bandit-host', fn: 'add', args: [1, 2], count: 400, concurrency: 2 }
  // Traffic long enough for a few probe rounds (every 100 ms).
  for (let i = 0; i < 3; i++) t.deepEqual(await client.request('calls', calls), { ok: 400 })
  let info = await client.request('debug')
  const slow = arm(info, 'bandit-host', 'rdma')
  t.true(slow.estimatesUs.small >= 400_000)
  const shmBefore = arm(info, 'bandit-host', 'shm').chosen.small
  const rdmaBefore = slow.chosen.small
  t.deepEqual(await client.request('calls', calls), { ok: 400 })
  info = await client.request('debug')
  t.log(JSON.stringify(info.peers[0].bandit))
  // Settled: nearly everything on shm (a load spike on this shared machine may divert a few).
  const onShm = arm(info, 'bandit-host', 'shm').chosen.small - shmBefore
  const onRdma = arm(info, 'bandit-host', 'rdma').chosen.small - rdmaBefore
  t.true(onShm > 4 * onRdma, `settled on shm: ${onShm} on shm, ${onRdma} on rdma`)

  await client.request('setRdmaLatency', { latencyUs: 1 })
  await eventually(async () => {
    await client.request('calls', calls)
    const now = await client.request('debug')
    const before = arm(now, 'bandit-host', 'rdma').chosen.small
    await client.request('calls', calls)
    const after = await client.request('debug')
    if (arm(after, 'bandit-host', 'rdma').chosen.small - before < 300) throw new Error(`not on rdma yet: ${JSON.stringify(after.peers[0].bandit)}`)
  }, 40, 100)
  t.regex(info.transports.find((x: any) => x.name === 'rdma').reason, /EMULATED/)
})

shm('shm - a Buffer arrives as a Buffer and a Uint8Array as a Uint8Array, over shm and over tcp, both ways', async t => {
  noDevShmLeftovers(t)
  const host = await PeerProcess.start({ rpc: { name: 'kinds-host' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const rpc = new Rpc()
  t.teardown(async () => { await rpc.close() })
  rpc.connect(host.addresses[0])
  await eventually(async () => {
    await rpc.async_('kinds-host', 'add', 1, 2)
    if (links(rpc.debugInfo(), 'kinds-host', 'shm').length === 0) throw new Error('no shm link yet')
  }, 40, 250)
  for (const transport of ['shm', 'tcp']) {
    rpc.setTransports([transport])
    await host.request('setTransports', { transports: [transport] })
    const before = links(rpc.debugInfo(), 'kinds-host', transport)[0].framesOut
    // The second of each pair holds a Map, which takes msgpackr's path rather than the small-tree codec's.
    for (const extra of [[], [new Map([[1, Buffer.from([5])]])]]) {
      const args = [Buffer.from([1]), new Uint8Array([2]), { b: Buffer.from([3]) }, ...extra]
      t.deepEqual(await rpc.async_('kinds-host', 'kinds', ...args), ['Buffer', 'Uint8Array', 'Object', ...extra.map(() => 'Map')], transport)
      const [buffer, array, object, map] = await rpc.async_<[Buffer, Uint8Array, { b: Buffer }, Map<number, Buffer>?]>('kinds-host', 'echo', args)
      t.true(Buffer.isBuffer(buffer) && Buffer.isBuffer(object.b) && (map == null || Buffer.isBuffer(map.get(1))), `${transport}, ${extra.length}`)
      t.is(array.constructor, Uint8Array)
      t.deepEqual([buffer[0], array[0], object.b[0], map?.get(1)?.[0]], [1, 2, 3, extra.length > 0 ? 5 : undefined])
    }
    t.true(links(rpc.debugInfo(), 'kinds-host', transport)[0].framesOut >= before + 4, `the calls went over ${transport}`)
  }
})

test('rdma - the stub arm is unavailable with its reason and never gets a link, a choice or a frame, traffic or not', async t => {
  const rpc = new Rpc()
  t.teardown(async () => { await rpc.close() })
  const info = rpc.debugInfo()
  const rdma = info.transports.find(x => x.name === 'rdma')
  t.false(rdma?.available)
  t.is(rdma?.reason, 'no device under /sys/class/infiniband')
  t.true(rdma?.enabled)
  // Enabled (the default) between two processes with traffic of every size class.
  const host = await PeerProcess.start({ rpc: { name: 'no-rdma' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  rpc.connect(host.addresses[0])
  await eventually(async () => await rpc.async_('no-rdma', 'add', 1, 2))
  for (const bytes of [64, 100 * 1024, 2 * 1024 * 1024]) {
    const payload = new Uint8Array(bytes).fill(3)
    for (let i = 0; i < 20; i++) t.is((await rpc.async_<Uint8Array>('no-rdma', 'echo', payload)).byteLength, bytes)
  }
  for (const peerInfo of [rpc.debugInfo().peers.find(p => p.name === 'no-rdma'), (await host.request('debug')).peers.find((p: any) => p.name === rpc.getName())]) {
    t.truthy(peerInfo)
    t.false(peerInfo.links.some((l: any) => l.transport === 'rdma'))
    const arm = peerInfo.bandit.find((a: any) => a.transport === 'rdma')
    if (arm != null) t.deepEqual(Object.values(arm.chosen).reduce((a: number, b: any) => a + Number(b), 0), 0)
    t.true(peerInfo.bandit.some((a: any) => Object.values(a.chosen).some((n: any) => n > 0)))
  }
})

/** The client's shm link counters (see ShmLink.details). */
async function shmDetails (peer: PeerProcess, remote: string): Promise<Record<string, number>> {
  return links(await peer.request('debug'), remote, 'shm')[0].shm
}

const MiB = 1024 * 1024

const asRoot = process.getuid?.() === 0 ? shm : test.skip

asRoot('shm - a peer of another user on the same host is never offered shared memory; calls go over TCP', async t => {
  noDevShmLeftovers(t)
  // uid 65534 (nobody): same kernel and boot, another user, so another host identity.
  const host = await PeerProcess.start({ rpc: { name: 'other-user' }, listen: '127.0.0.1:0' }, undefined, { uid: 65534 })
  t.teardown(async () => await host.kill())
  const client = await PeerProcess.start({ rpc: {}, connect: [host.addresses[0]] })
  t.teardown(async () => await client.kill())
  await eventually(async () => await client.call('other-user', 'add', 1, 2))
  t.deepEqual(await client.request('calls', { peer: 'other-user', fn: 'echo', args: [new Uint8Array(64)], count: 300, concurrency: 4 }), { ok: 300 })
  // Either side would have offered at once on connecting (the one with the smaller peer id).
  await new Promise(resolve => setTimeout(resolve, 500))
  for (const [peer, remote] of [[client, 'other-user'], [host, client.name]] as const) {
    const info = await peer.request('debug')
    t.is(links(info, remote, 'shm').length, 0)
    t.true(links(info, remote, 'tcp').length >= 1)
    const counters = info.transports.find((x: any) => x.name === 'shm').counters
    t.is(counters.offered + counters.accepted + counters.failed, 0, JSON.stringify(counters))
  }
})

shm('shm arena - large byte values of every kind cross out of band, byte for byte; small ones stay in the ring', async t => {
  const arena = { shmArenaBytes: 256 * MiB }
  const { host, client } = await pair(t, 'oob-kinds', { client: arena, hostRpc: arena })
  await shmUp(client, 'oob-kinds')
  // Only shm both ways, so no call or reply leaves on tcp (the host's bandit would move
  // replies to tcp whenever a loaded machine made shm look slower) and every counter below is exact.
  await client.request('setTransports', { transports: ['shm'] })
  await host.request('setTransports', { transports: ['shm'] })
  const before = await shmDetails(client, 'oob-kinds')
  t.deepEqual(await client.request('oobEcho', { peer: 'oob-kinds', names: ['small'] }), [])
  const afterSmall = await shmDetails(client, 'oob-kinds')
  t.is(afterSmall.oobSent, before.oobSent)
  t.is(afterSmall.oobReceived, before.oobReceived)
  t.deepEqual(await client.request('oobEcho', { peer: 'oob-kinds' }), [])
  const after = await shmDetails(client, 'oob-kinds')
  // u8, buf, f32, big64, ab, tensor, nested (5 MiB bytes and an int32 tensor), huge: 9 each way.
  t.is(after.oobSent - afterSmall.oobSent, 9)
  t.is(after.oobReceived - afterSmall.oobReceived, 9)
  t.is(after.oobInline, 0)
  t.true(after.oobSentBytes - afterSmall.oobSentBytes > 40 * MiB)
  t.is((await shmDetails(host, client.name)).oobReceived, after.oobSent)
  // A received value's buffer is its block and nothing more; a tensor adopts it without a copy.
  const big = new Uint8Array(MiB).fill(1)
  t.deepEqual(await client.call('oob-kinds', 'bufferOf', big.subarray(100, 100 + 512 * 1024)), [512 * 1024, 512 * 1024, 0])
  t.deepEqual(await client.call('oob-kinds', 'bufferOf', tensor(new Float32Array(big.buffer), [512, 512])), [MiB, MiB, 0])
})

shm('shm arena - a value the callee keeps stays intact while the arena is reused; the caller changing its buffer after the call changes nothing', async t => {
  // An arena smaller than the 60 payloads together, so blocks must be reused.
  const arena = { shmArenaBytes: 64 * MiB }
  const { client } = await pair(t, 'oob-keep', { client: arena, hostRpc: arena })
  await shmUp(client, 'oob-keep')
  await client.request('setTransports', { transports: ['shm'] })
  t.is(await client.request('oobKeep', { peer: 'oob-keep', bytes: 3 * MiB, calls: 60 }), 'ok')
  for (const bytes of [100 * 1024, 16 * MiB]) t.true(await client.request('oobMutate', { peer: 'oob-keep', bytes }))
  const details = await shmDetails(client, 'oob-keep')
  // 60 calls of 3 MiB went through a 64 MiB arena: blocks were reused.
  t.true(details.oobSent >= 60, JSON.stringify(details))
})

shm('shm arena - a full arena sends payloads inline through the ring, and every call is still right', async t => {
  const arena = { shmArenaBytes: 1 * MiB }
  const { client } = await pair(t, 'oob-full', { client: arena, hostRpc: arena })
  await shmUp(client, 'oob-full')
  await client.request('setTransports', { transports: ['shm'] })
  t.deepEqual(await client.request('oobConcurrent', { peer: 'oob-full', bytes: 300 * 1024, count: 40, concurrency: 8 }), { ok: 40 })
  // Larger than the whole arena: always inline.
  t.deepEqual(await client.request('oobConcurrent', { peer: 'oob-full', bytes: 2 * MiB, count: 4, concurrency: 2 }), { ok: 4 })
  const details = await shmDetails(client, 'oob-full')
  t.true(details.oobInline >= 4, JSON.stringify(details))
  t.true(details.oobSent >= 1, JSON.stringify(details))
})

shm('shm arena - the peer killed while large payloads cross: every call ends once, the survivor lives on, nothing left in /dev/shm', async t => {
  const { host, client } = await pair(t, 'oob-dies', { client: { lookupTimeout: 1 } })
  await shmUp(client, 'oob-dies')
  const running = client.request('oobConcurrent', { peer: 'oob-dies', bytes: 16 * MiB, count: 40, concurrency: 4 })
  await new Promise(resolve => setTimeout(resolve, 700))
  await host.kill('SIGKILL')
  const outcomes = await running as Record<string, number>
  t.is(Object.values(outcomes).reduce((a, b) => a + b, 0), 40)
  t.false('CORRUPT' in outcomes)
  t.true((outcomes.PEER_NOT_FOUND ?? 0) >= 1, JSON.stringify(outcomes))
  t.is(links(await client.request('debug'), 'oob-dies', 'shm').length, 0)
  t.is(await client.call('oob-dies', 'add', 1, 1).catch((err: any) => err.code), 'PEER_NOT_FOUND')
})

shm('shm arena - a placeholder pointing outside the arena closes the link with BAD_FRAME; both live on over TCP', async t => {
  const { host, client } = await pair(t, 'oob-bad')
  await shmUp(client, 'oob-bad')
  // The host's arena exists (and the client has mapped it) once it has sent a large reply.
  t.deepEqual(await client.request('oobConcurrent', { peer: 'oob-bad', bytes: 100 * 1024, count: 2 }), { ok: 2 })
  t.is(await host.request('badPlaceholder'), 1)
  await eventually(async () => {
    if (links(await client.request('debug'), 'oob-bad', 'shm').length !== 0) throw new Error('shm link still open')
  }, 20, 250)
  const shmInfo = (await client.request('debug')).transports.find((x: any) => x.name === 'shm')
  t.is(shmInfo.counters.badFrames, 1)
  t.regex(shmInfo.lastError, /not inside the peer's .*arena/)
  t.deepEqual(await client.request('oobConcurrent', { peer: 'oob-bad', bytes: 100 * 1024, count: 3 }), { ok: 3 })
  t.is(await client.call('oob-bad', 'add', 2, 2), 4)
})

shm('shm arena - blocks an arena frame names but its body never does are reported free at once, with no collection to report them', async t => {
  const { host, client } = await pair(t, 'oob-unnamed')
  await shmUp(client, 'oob-unnamed')
  // The body is a reply to no call: no view of either block is made, so only the
  // receiving poll can send them back. Until then they are ours, in use.
  t.deepEqual(await host.request('unnamedBlocks', { bytes: 256 * 1024 }), [512 * 1024])
  await eventually(async () => {
    const inUse = (await shmDetails(host, client.name)).arenaInUse
    if (inUse !== 0) throw new Error(`the host's arena still holds ${inUse} bytes`)
  }, 20, 250)
  t.is(links(await client.request('debug'), 'oob-unnamed', 'shm').length, 1)
  t.is(await client.call('oob-unnamed', 'add', 2, 2), 4)
})

test('shm arena - shmArenaBytes must be a power of two from 64 KiB to 1 GiB', t => {
  for (const bad of [1000, 2 ** 15, 2 ** 31, 3 * MiB, 1.5, -MiB, Number.NaN]) {
    t.throws(() => new Rpc({ shmArenaBytes: bad }), { code: 'BAD_ARGUMENT' }, String(bad))
  }
  for (const good of [2 ** 16, MiB, 2 ** 30]) t.notThrows(() => new Rpc({ shmArenaBytes: good }))
})
