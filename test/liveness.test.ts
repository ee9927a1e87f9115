import test from 'ava'
import { execFileSync } from 'node:child_process'
import { Rpc, RpcError } from '../src/index.js'
import { PeerProcess, eventually, freePort } from './helpers/peer-process.js'
import { PeerSession } from '../src/cohort/peer-directory.js'

test('liveness - a callee killed with SIGKILL mid-call ends every pending call with an error, fast', async t => {
  const host = await PeerProcess.start({ rpc: { name: 'doomed' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  // Deadline far above the test's own timeout: only liveness can end these calls in time.
  const client = new Rpc({ timeout: 600 })
  t.teardown(async () => { await client.close() })
  client.connect(host.addresses[0])
  t.is(await client.async_('doomed', 'add', 1, 2), 3)
  const pending = Array.from({ length: 5 }, async () => await client.async_('doomed', 'sleep', 500_000))
  await new Promise(resolve => setTimeout(resolve, 200))
  await host.kill('SIGKILL')
  const outcomes = await Promise.allSettled(pending)
  for (const outcome of outcomes) {
    t.is(outcome.status, 'rejected')
    const err = (outcome as PromiseRejectedResult).reason as RpcError
    t.is(err.code, 'PEER_NOT_FOUND')
    t.regex(err.message, /doomed/)
  }
  // A call made after the death also ends (no hang) once the lookup gives up.
  client.setTimeout(600)
  const late = await t.throwsAsync(client.async_('doomed', 'add', 1, 2))
  t.is((late as RpcError).code, 'PEER_NOT_FOUND')
})

test('liveness - a callee restarted on the same address and name is called again, both directions', async t => {
  const port = await freePort()
  const address = `127.0.0.1:${port}`
  const first = await PeerProcess.start({ rpc: { name: 'phoenix' }, listen: address })
  t.teardown(async () => await first.kill())
  const client = await PeerProcess.start({ rpc: { name: 'steady' }, connect: [address] })
  t.teardown(async () => await client.kill())
  const firstPid = await client.call('phoenix', 'pid')
  t.is(firstPid, first.child.pid)
  // The callee can call the caller over the same connection.
  t.is(await first.call('steady', 'whoami'), 'steady')

  await first.kill('SIGKILL')
  const second = await PeerProcess.start({ rpc: { name: 'phoenix' }, listen: address })
  t.teardown(async () => await second.kill())
  // The client redials by itself; nothing is done on its side.
  const secondPid = await eventually(async () => await client.call('phoenix', 'pid'), 40, 250)
  t.is(secondPid, second.child.pid)
  t.not(secondPid, firstPid)
  t.is(await second.call('steady', 'whoami'), 'steady')
  const debug = await client.request('debug')
  const connection = debug.connections.find((c: any) => c.address === address)
  t.true(connection.connects >= 2)
})

test('liveness - a client that goes away does not disturb the server', async t => {
  const host = await PeerProcess.start({ rpc: { name: 'sturdy' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const victim = await PeerProcess.start({ connect: [host.addresses[0]] })
  const running = victim.request('calls', { peer: 'sturdy', fn: 'sleep', args: [2000], count: 20, concurrency: 20 }).catch(() => 'gone')
  await new Promise(resolve => setTimeout(resolve, 300))
  await victim.kill('SIGKILL')
  t.is(await running, 'gone')
  const other = new Rpc()
  t.teardown(async () => { await other.close() })
  other.connect(host.addresses[0])
  t.is(await other.async_('sturdy', 'add', 20, 22), 42)
})

test('liveness - a peer gone for longer than forgetPeerAfter is forgotten, and measured afresh when it comes back', async t => {
  const address = `127.0.0.1:${await freePort()}`
  const first = await PeerProcess.start({ rpc: { name: 'transient' }, listen: address })
  t.teardown(async () => await first.kill())
  const client = new Rpc({ forgetPeerAfter: 0.3 })
  t.teardown(async () => { await client.close() })
  client.connect(address)
  for (let i = 0; i < 30; i++) t.is(await client.async_('transient', 'add', i, 1), i + 1)
  const choices = (): number => client.debugInfo().peers.find(p => p.name === 'transient')?.bandit
    .reduce((sum, arm) => sum + arm.chosen.small + arm.chosen.medium + arm.chosen.large, 0) ?? 0
  t.true(choices() >= 30)

  await first.kill('SIGKILL')
  // Pruned on the Rpc's once-a-second sweep after 0.3 s without a link.
  await eventually(async () => {
    if (client.debugInfo().peers.some(p => p.name === 'transient')) throw new Error('still remembered')
  }, 40, 250)
  const second = await PeerProcess.start({ rpc: { name: 'transient' }, listen: address })
  t.teardown(async () => await second.kill())
  t.is(await eventually(async () => await client.async_('transient', 'add', 2, 3), 40, 250), 5)
  // The bandit starts over for the new process: none of the 30 earlier choices is carried over.
  t.true(choices() >= 1)
  t.true(choices() < 30, `choices carried over: ${choices()}`)
})

test('liveness - a peer\'s last-heard time is the first look after its frames, and stays put while none come', t => {
  const session = new PeerSession('p', 'id', 'inc', [], [], 'inbound')
  const start = session.lastHeard(1_000)
  // A frame came (the directory sets this per frame): the next look dates it.
  session.heard = true
  t.is(session.lastHeard(5_000), 5_000)
  // Nothing since: later looks keep that date.
  t.is(session.lastHeard(9_000), 5_000)
  t.true(start <= Date.now())
})

/** Whether `ss -K` can destroy sockets here (root and a kernel with SOCK_DESTROY). */
function socketsCanBeKilled (): boolean {
  if (process.getuid?.() !== 0) return false
  try {
    execFileSync('ss', ['-K', 'dst', '127.0.0.1', 'dport', '=', ':1'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const withSocketKill = socketsCanBeKilled() ? test : test.skip

withSocketKill('liveness and at-most-once - the TCP connection reset mid-traffic (ss -K): calls in flight are resent on the redialed one and each runs exactly once', async t => {
  // TCP only, so the calls cannot go over shared memory instead.
  const env = { COHORT_SHM_DISABLE: '1' }
  const host = await PeerProcess.start({ rpc: { name: 'reset-host' }, listen: '127.0.0.1:0', env })
  t.teardown(async () => await host.kill())
  const address = host.addresses[0]
  const client = await PeerProcess.start({ rpc: { reconnectGrace: 20 }, connect: [address], env })
  t.teardown(async () => await client.kill())
  await eventually(async () => await client.call('reset-host', 'add', 1, 1))
  const counted = await host.call<number>(host.name, 'getCount')
  const running = client.request('calls', { peer: 'reset-host', fn: 'count', count: 4000, concurrency: 64 })
  await eventually(async () => {
    if (await host.call<number>(host.name, 'getCount') - counted < 500) throw new Error('not yet under way')
  }, 40, 50)
  // The kernel destroys the client's socket to the host: both ends see the connection go.
  execFileSync('ss', ['-K', 'dst', '127.0.0.1', 'dport', '=', `:${address.split(':')[1]}`], { stdio: 'ignore' })
  t.deepEqual(await running, { ok: 4000 })
  t.is(await host.call<number>(host.name, 'getCount') - counted, 4000)
  const debug = await client.request('debug')
  t.true(debug.connections.find((c: any) => c.address === address).connects >= 2, JSON.stringify(debug.connections))
  // 64 were in flight when it went: sent again, not run again.
  t.true(debug.counters.calls.resent >= 1, JSON.stringify(debug.counters.calls))
})
