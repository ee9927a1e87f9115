/**
 * Two networks with no route between them, joined by one peer with a leg in each:
 *
 *   netns left (10.201.1.0/24)      netns middle (no ip forwarding)      netns right (10.201.2.0/24)
 *      L 10.201.1.2  ──veth──  10.201.1.1  M  10.201.2.1  ──veth──  10.201.2.2 R
 *
 * L and R can only reach each other through M's process, by forwarding.
 */
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { PeerProcess, type RemoteError } from './helpers/peer-process.js'

const tag = `${process.pid % 100000}`
const NS = { left: `coh-l-${tag}`, middle: `coh-m-${tag}`, right: `coh-r-${tag}` }

function ip (...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

function netnsUnavailable (): string | undefined {
  const probe = `coh-probe-${tag}`
  try {
    ip('netns', 'add', probe)
    ip('netns', 'del', probe)
    return undefined
  } catch (err) {
    return `ip netns is not usable here (${(err as Error).message.split('\n')[0]})`
  }
}

function teardownNamespaces (): void {
  for (const ns of Object.values(NS)) {
    try { ip('netns', 'del', ns) } catch {}
  }
}

function setupNamespaces (): void {
  teardownNamespaces()
  for (const ns of Object.values(NS)) {
    ip('netns', 'add', ns)
    ip('-n', ns, 'link', 'set', 'lo', 'up')
  }
  const leg = (side: string, peerNs: string, subnet: string): void => {
    const a = `cl${side}${tag}`.slice(0, 15)
    const b = `cm${side}${tag}`.slice(0, 15)
    ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b)
    ip('link', 'set', a, 'netns', peerNs)
    ip('link', 'set', b, 'netns', NS.middle)
    ip('-n', peerNs, 'addr', 'add', `${subnet}.2/24`, 'dev', a)
    ip('-n', NS.middle, 'addr', 'add', `${subnet}.1/24`, 'dev', b)
    ip('-n', peerNs, 'link', 'set', a, 'up')
    ip('-n', NS.middle, 'link', 'set', b, 'up')
  }
  leg('l', NS.left, '10.201.1')
  leg('r', NS.right, '10.201.2')
  // The middle namespace must not route between its legs: only the peer in it may join them.
  execFileSync('ip', ['netns', 'exec', NS.middle, 'sysctl', '-qw', 'net.ipv4.ip_forward=0'])
}

const unavailable = netnsUnavailable()
const maybe = unavailable == null ? test.serial : test.skip
if (unavailable != null) console.warn(`netns tests skipped: ${unavailable}`)

maybe('forwarding - calls cross two networks with no route between them through the peer with a leg in each; a dead far peer fails calls fast', async t => {
  t.teardown(teardownNamespaces)
  setupNamespaces()
  const kill: PeerProcess[] = []
  t.teardown(async () => { await Promise.all(kill.map(async p => await p.kill())) })
  const rpc = { lookupTimeout: 30, timeout: 600 }
  const middle = await PeerProcess.start({ rpc: { ...rpc, name: 'M' }, listen: '10.201.1.1:0', listenAlso: ['10.201.2.1:0'] }, undefined, { netns: NS.middle })
  kill.push(middle)
  const leftAddress = middle.addresses.find(a => a.includes('10.201.1.1')) as string
  const rightAddress = middle.addresses.find(a => a.includes('10.201.2.1')) as string
  const left = await PeerProcess.start({ rpc: { ...rpc, name: 'L' }, listen: '10.201.1.2:0', connect: [leftAddress] }, undefined, { netns: NS.left })
  kill.push(left)
  const right = await PeerProcess.start({ rpc: { ...rpc, name: 'R' }, listen: '10.201.2.2:0', connect: [rightAddress] }, undefined, { netns: NS.right })
  kill.push(right)

  t.is(await left.call('R', 'whoami'), 'R')
  t.is(await right.call('L', 'add', 20, 22), 42)
  t.deepEqual(await left.call('R', 'echo', { big: 'x'.repeat(10_000) }), { big: 'x'.repeat(10_000) })

  const leftDebug = await left.request('debug')
  const r = leftDebug.membership.find((m: any) => m.name === 'R')
  t.is(r.state, 'alive')
  t.false(r.directLink)
  t.is(r.learnedFrom, 'M')
  t.true(leftDebug.counters.forwarding.originated >= 2)
  t.true(leftDebug.counters.gossip.dialFailures >= 1)
  t.true((await middle.request('debug')).counters.forwarding.relayed >= 4)

  // R dies while L's forwarded call is in flight: SWIM (probes through M) declares it dead and the call fails fast.
  const inFlight = left.call('R', 'sleep', 500_000).then(() => 'returned', (err: RemoteError) => err.code)
  await new Promise(resolve => setTimeout(resolve, 500))
  const killedAt = Date.now()
  await right.kill('SIGKILL')
  t.is(await inFlight, 'PEER_NOT_FOUND')
  t.log(`forwarded call failed ${Date.now() - killedAt} ms after the SIGKILL`)
})
