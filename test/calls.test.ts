import test from 'ava'
import { Future, Rpc, RpcError } from '../src/index.js'
import { PeerProcess, hostAndClient } from './helpers/peer-process.js'


test('calls - hello and echo between two processes', async t => {
  const { client } = await hostAndClient(t, 'host')
  t.is(await client.async_('host', 'echo', 'hello world'), 'hello world')
  t.is(await client.async_('host', 'add', 40, 2), 42)
  t.is(await client.async_('host', 'whoami'), 'host')
})

test('calls - 1,000 sequential calls are each run exactly once on the callee', async t => {
  const { client } = await hostAndClient(t, 'counter')
  const seen: number[] = []
  for (let i = 0; i < 1000; i++) seen.push(await client.async_<number>('counter', 'count'))
  t.deepEqual(seen, Array.from({ length: 1000 }, (_, i) => i + 1))
  t.is(await client.async_('counter', 'getCount'), 1000)
})

test('calls - 8 client processes x 2,000 async calls each give an exact total', async t => {
  const host = await PeerProcess.start({ rpc: { name: 'hub' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const clients = await Promise.all(Array.from({ length: 8 }, async () => await PeerProcess.start({ connect: [host.addresses[0]] })))
  t.teardown(async () => { await Promise.all(clients.map(async c => await c.kill())) })
  const outcomes = await Promise.all(clients.map(async c => await c.request('calls', { peer: 'hub', fn: 'count', count: 2000, concurrency: 64 })))
  for (const outcome of outcomes) t.deepEqual(outcome, { ok: 2000 })
  const observer = new Rpc()
  t.teardown(async () => { await observer.close() })
  observer.connect(host.addresses[0])
  t.is(await observer.async_('hub', 'getCount'), 16_000)
})

test('calls - asyncCallback gets (result, undefined) or (undefined, error), once', async t => {
  const { client } = await hostAndClient(t, 'cbhost')
  const ok = await new Promise<unknown[]>(resolve => { client.asyncCallback('cbhost', 'add', (...args) => { resolve(args) }, 1, 2) })
  t.deepEqual(ok, [3, undefined])
  const failed = await new Promise<unknown[]>(resolve => { client.asyncCallback('cbhost', 'boom', (...args) => { resolve(args) }, 'bad') })
  t.is(failed[0], undefined)
  t.true(failed[1] instanceof RpcError)
  t.is((failed[1] as RpcError).code, 'REMOTE_ERROR')
})

test('endpoints - deferred and queue endpoints served by a loop', async t => {
  const { client } = await hostAndClient(t, 'served')
  const doubled = await Promise.all([1, 2, 3, 4].map(async x => await client.async_('served', 'double', x, 5 * x)))
  t.deepEqual(doubled, [2, 4, 6, 8])
  const products = await Promise.all(Array.from({ length: 50 }, async (_, i) => await client.async_('served', 'mul', i, 3)))
  t.deepEqual(products, Array.from({ length: 50 }, (_, i) => i * 3))
  const err = await t.throwsAsync(client.async_('served', 'deferredFail', 'not today'))
  t.is((err as RpcError).code, 'REMOTE_ERROR')
  t.regex(err.message, /not today/)
})

test('endpoints - in-process define, defineDeferred, defineQueue and undefine', async t => {
  const rpc = new Rpc({ name: 'solo' })
  t.teardown(async () => { await rpc.close() })
  rpc.define('inc', (x: number) => x + 1)
  rpc.defineDeferred('later', (reply, x: number) => { setTimeout(() => { reply(x) }, 5) })
  const q = rpc.defineQueue<[string]>('upper')
  t.throws(() => { rpc.define('inc', () => 0) }, { code: 'BAD_ARGUMENT', message: /already defined/ })
  // Calls to our own name are served in-process.
  t.is(await rpc.async_('solo', 'inc', 1), 2)
  t.is(await rpc.async_('solo', 'later', 7), 7)
  const pending = rpc.async_('solo', 'upper', 'abc')
  const [reply, s] = await q.result()
  reply(s.toUpperCase())
  t.is(await pending, 'ABC')
  // undefine waits for calls in flight and then the name is gone.
  const slow = rpc.async_('solo', 'later', 9)
  await new Promise(resolve => setTimeout(resolve, 1))
  await rpc.undefine('later')
  t.is(await slow, 9)
  const gone = await t.throwsAsync(rpc.async_('solo', 'later', 1))
  t.is((gone as RpcError).code, 'FUNCTION_NOT_FOUND')
  // A queued call still waiting when its queue is undefined fails instead of hanging.
  const waiting = rpc.async_('solo', 'upper', 'never taken')
  await new Promise(resolve => setTimeout(resolve, 5))
  await rpc.undefine('upper')
  t.is((await t.throwsAsync(waiting) as RpcError).code, 'FUNCTION_NOT_FOUND')
})

test('future - result, wait, done, exception and cancel', async t => {
  const { client } = await hostAndClient(t, 'fut')
  const fut = client.async_('fut', 'sleep', 300)
  t.false(fut.done())
  t.false(await fut.wait(0.01))
  const early = await t.throwsAsync(fut.result(0.01))
  t.is((early as RpcError).code, 'TIMEOUT')
  t.is(await fut.get(), 300)
  t.true(fut.done())
  t.is(fut.exception(), undefined)

  const cancelled = client.async_('fut', 'sleep', 300)
  t.true(cancelled.cancel())
  t.false(cancelled.cancel())
  const err = await t.throwsAsync(cancelled) as RpcError
  t.is(err.code, 'CANCELLED')
  t.is(err.message, "function 'sleep' on peer 'fut': cancelled by the caller")
  t.deepEqual([err.peer, err.fn], ['fut', 'sleep'])
  t.is(cancelled.exception(), err)
  // asyncAny still looking for a definer: the error names the function.
  const any = client.asyncAny('definedNowhere')
  t.true(any.cancel())
  const anyErr = await t.throwsAsync(any) as RpcError
  t.is(anyErr.code, 'CANCELLED')
  t.is(anyErr.fn, 'definedNowhere')
  t.regex(anyErr.message, /'definedNowhere'.*cancelled by the caller/)
})

test('future - a native promise; a failed call nobody awaits is no unhandled rejection, and awaiting it later still throws', async t => {
  const rpc = new Rpc({ name: 'lonely' })
  rpc.define('twice', (x: number) => x * 2)
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(async () => {
    process.off('unhandledRejection', onUnhandled)
    await rpc.close()
  })
  const fut = rpc.async_('lonely', 'twice', 21)
  t.true(fut instanceof Promise)
  // Promise.resolve takes it as it is, so `await` does too.
  t.is(Promise.resolve(fut), fut)
  t.is(await fut, 42)
  t.is(await fut.then(x => x + 1), 43)

  rpc.async_('lonely', 'missing')
  const cancelled = rpc.async_('lonely', 'twice', 1)
  cancelled.cancel()
  const late = rpc.async_('lonely', 'missing too')
  // Long enough for Node to report a rejection nobody handled.
  await new Promise(resolve => setTimeout(resolve, 50))
  t.deepEqual(unhandled, [])
  t.is((await t.throwsAsync(late) as RpcError).code, 'FUNCTION_NOT_FOUND')
  t.is((await t.throwsAsync(cancelled) as RpcError).code, 'CANCELLED')
})

test('future - Promise statics on Future make plain promises', async t => {
  t.is(await Future.resolve(3), 3)
  t.deepEqual(await Future.all([1, Promise.resolve(2)]), [1, 2])
  t.is((await t.throwsAsync(Future.reject(new Error('no')))).message, 'no')
  t.false(Future.resolve(1) instanceof Future)
})

test('names - listen takes host:port, tcp://host:port and a multiaddr; connect reaches a peer by any of the three', async t => {
  const forms = ['127.0.0.1:0', 'tcp://127.0.0.1:0', '/ip4/127.0.0.1/tcp/0']
  const hosts = forms.map((_, i) => new Rpc({ name: `addr-${i}` }))
  const client = new Rpc({ name: 'addr-client' })
  t.teardown(async () => { await Promise.all([...hosts, client].map(async rpc => await rpc.close())) })
  const ports: number[] = []
  for (let i = 0; i < hosts.length; i++) {
    hosts[i].define('whoami', () => `addr-${i}`)
    await hosts[i].listen(forms[i])
    const [bound] = hosts[i].addresses()
    t.regex(bound, /^127\.0\.0\.1:\d+$/, forms[i])
    ports.push(Number(bound.split(':')[1]))
  }
  t.is(new Set(ports).size, 3)
  client.connect(`127.0.0.1:${ports[0]}`)
  client.connect(`tcp://127.0.0.1:${ports[1]}`)
  client.connect(`/ip4/127.0.0.1/tcp/${ports[2]}`)
  for (let i = 0; i < hosts.length; i++) t.is(await client.async_(`addr-${i}`, 'whoami'), `addr-${i}`)
})

test('names - addresses: IPv6 in brackets, localhost, DNS names and multiaddrs are taken; bad ones are BAD_ARGUMENT saying what is wrong', async t => {
  const { toMultiaddr, fromMultiaddr } = await import('../src/transports/tcp/address.js')
  t.is(toMultiaddr('[::1]:7000').toString(), '/ip6/::1/tcp/7000')
  t.is(toMultiaddr('tcp://localhost:80').toString(), '/ip4/127.0.0.1/tcp/80')
  t.is(toMultiaddr('example.org:443').toString(), '/dns/example.org/tcp/443')
  t.is(toMultiaddr('/ip4/10.0.0.1/tcp/9').toString(), '/ip4/10.0.0.1/tcp/9')
  t.is(fromMultiaddr(toMultiaddr('[::1]:7000')), '[::1]:7000')
  t.is(fromMultiaddr(toMultiaddr('10.1.2.3:5')), '10.1.2.3:5')
  t.throws(() => toMultiaddr('127.0.0.1:70000'), { code: 'BAD_ARGUMENT', message: /above 65535/ })
  t.throws(() => toMultiaddr('/ip4/not-an-ip/tcp/1'), { code: 'BAD_ARGUMENT', message: /not a valid multiaddr/ })
  t.throws(() => toMultiaddr('tcp://no-port'), { code: 'BAD_ARGUMENT', message: /host:port, tcp:\/\/host:port or a multiaddr/ })
  t.throws(() => toMultiaddr(''), { code: 'BAD_ARGUMENT' })
})

test('tcp - calls to a peer share one long-lived stream, and the calls of one turn leave in a few socket writes', async t => {
  const { client } = await hostAndClient(t, 'one-stream', { transports: ['tcp'] })
  t.is(await client.async_('one-stream', 'add', 1, 1), 2)
  const tcpLinks = (): any[] => client.debugInfo().peers.find(p => p.name === 'one-stream')?.links.filter(l => l.transport === 'tcp') ?? []
  const [before] = tcpLinks()
  t.is(tcpLinks().length, 1)
  // 200 calls made in one turn: the first leaves at once, the rest together at the turn's
  // end (2 writes here; one write per call without coalescing).
  const sums = await Promise.all(Array.from({ length: 200 }, async (_, i) => await client.async_<number>('one-stream', 'add', i, 1)))
  t.deepEqual(sums, Array.from({ length: 200 }, (_, i) => i + 1))
  const after = tcpLinks()
  t.is(after.length, 1)
  t.is(after[0].direction, before.direction)
  // Gossip may add a frame or two in the same moments.
  t.true(after[0].framesOut - before.framesOut >= 200, JSON.stringify({ before, after }))
  t.true(after[0].writes - before.writes <= 10, JSON.stringify({ before, after }))
  t.is(await client.async_('one-stream', 'add', 2, 2), 4)
  t.is(tcpLinks().length, 1)
})

test('names - setName after listen throws; the default name is unique', async t => {
  const a = new Rpc()
  const b = new Rpc()
  t.not(a.getName(), b.getName())
  a.setName('alpha')
  t.is(a.getName(), 'alpha')
  await a.listen('127.0.0.1:0')
  t.throws(() => { a.setName('beta') }, { code: 'BAD_ARGUMENT' })
  t.throws(() => { a.setTransports(['carrier pigeon']) }, { code: 'BAD_ARGUMENT', message: /unknown transport/ })
  a.setTransports(['tcp/ip', 'shared memory', 'infiniband'])
  t.throws(() => { a.connect('not an address') }, { code: 'BAD_ARGUMENT' })
  t.regex(a.addresses()[0], /^127\.0\.0\.1:\d+$/)
  await a.close()
  await b.close()
})
