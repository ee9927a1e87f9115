import test from 'ava'
import { Rpc, RpcError } from '../src/index.js'
import { PeerProcess, eventually, hostAndClient } from './helpers/peer-process.js'


test('errors - a handler that throws gives REMOTE_ERROR with the remote message and stack; the callee keeps serving', async t => {
  const { client } = await hostAndClient(t, 'thrower')
  const thrown = await t.throwsAsync(client.async_('thrower', 'boom', 'out of range!'))
  t.true(thrown instanceof RpcError)
  const err = thrown as RpcError
  t.is(err.code, 'REMOTE_ERROR')
  t.is(err.remoteName, 'RangeError')
  t.is(err.peer, 'thrower')
  t.is(err.fn, 'boom')
  t.regex(err.message, /out of range!/)
  t.regex(err.message, /'boom'.*'thrower'/)
  t.regex(err.remoteStack ?? '', /fixtures\/peer\.(js|ts)/)
  const rejected = await t.throwsAsync(client.async_('thrower', 'reject', 'async no'))
  t.is((rejected as RpcError).code, 'REMOTE_ERROR')
  t.is((rejected as RpcError).remoteName, 'TypeError')
  // Still serving after both.
  t.is(await client.async_('thrower', 'add', 1, 1), 2)
})

test('errors - a missing function gives FUNCTION_NOT_FOUND naming peer and function', async t => {
  const { client } = await hostAndClient(t, 'nofn')
  const err = await t.throwsAsync(client.async_('nofn', 'doesNotExist', 1))
  t.is((err as RpcError).code, 'FUNCTION_NOT_FOUND')
  t.regex(err.message, /nofn/)
  t.regex(err.message, /doesNotExist/)
})

test('errors - a missing peer gives PEER_NOT_FOUND without waiting for the deadline', async t => {
  const { client } = await hostAndClient(t, 'present', { lookupTimeout: 1, timeout: 60 })
  // Retried while the connection comes up: on a loaded machine the dial and the handshakes
  // can take longer than the 1 s lookup timeout this test gives every call.
  t.is(await eventually(async () => await client.async_('present', 'add', 2, 2), 20), 4)
  const err = await t.throwsAsync(client.async_('absent', 'add', 1, 2))
  t.is((err as RpcError).code, 'PEER_NOT_FOUND')
  t.regex(err.message, /absent/)
  t.regex(err.message, /'add'/)
})

test('errors - a call past its deadline gives TIMEOUT, and the late reply is dropped', async t => {
  const { client } = await hostAndClient(t, 'slow')
  t.is(await client.async_('slow', 'add', 1, 2), 3)
  client.setTimeout(0.2)
  const err = await t.throwsAsync(client.async_('slow', 'sleep', 1500))
  t.is((err as RpcError).code, 'TIMEOUT')
  t.regex(err.message, /'sleep'.*'slow'/)
  client.setTimeout(30)
  // A call that is alive and working is not cut off early.
  t.is(await client.async_('slow', 'sleep', 600), 600)
  // The late reply comes about 1.5 s after the first call; polled, since a loaded machine
  // can bring it later than any fixed wait.
  const strayReplies = (): number => (client.debugInfo().counters.calls as any).strayReplies
  for (let waited = 0; strayReplies() < 1 && waited < 15_000; waited += 100) await new Promise(resolve => setTimeout(resolve, 100))
  t.true(strayReplies() >= 1)
})

test('errors - calls with different timeouts each end at their own deadline, in deadline order', async t => {
  const { client } = await hostAndClient(t, 'slower')
  t.is(await client.async_('slower', 'add', 1, 2), 3)
  const ended: string[] = []
  const track = <T>(label: string, future: PromiseLike<T>): Promise<T> => Promise.resolve(future).finally(() => { ended.push(label) })
  client.setTimeout(30)
  const long = track('long', client.async_<number>('slower', 'sleep', 2500))
  client.setTimeout(0.6)
  const medium = track('medium', client.async_('slower', 'sleep', 2000))
  client.setTimeout(0.3)
  // Started last, due first: not held back behind the calls with later deadlines.
  const short = track('short', client.async_('slower', 'sleep', 2000))
  // And when the loop is busy past both deadlines, the timer fires late and finds both due.
  const busyUntil = Date.now() + 800
  while (Date.now() < busyUntil) {}
  t.is((await t.throwsAsync(short) as RpcError).code, 'TIMEOUT')
  t.is((await t.throwsAsync(medium) as RpcError).code, 'TIMEOUT')
  t.deepEqual(ended, ['short', 'medium'])
  // The long call was not cut off with them.
  t.is(await long, 2500)
  t.deepEqual(ended, ['short', 'medium', 'long'])
})

test('errors - bad arguments to the API throw RpcError with a code', async t => {
  const rpc = new Rpc()
  t.teardown(async () => { await rpc.close() })
  t.throws(() => new Rpc({ timeout: -1 }), { code: 'BAD_ARGUMENT' })
  t.throws(() => new Rpc({ name: '' }), { code: 'BAD_ARGUMENT' })
  t.throws(() => new Rpc({ forgetPeerAfter: 0 }), { code: 'BAD_ARGUMENT', message: /forgetPeerAfter/ })
  t.throws(() => new Rpc({ spin: 'yes' as any }), { code: 'BAD_ARGUMENT', message: /spin/ })
  t.throws(() => { rpc.setTimeout(Number.NaN) }, { code: 'BAD_ARGUMENT' })
  t.throws(() => { rpc.define('', () => 1) }, { code: 'BAD_ARGUMENT' })
  t.throws(() => { rpc.define('x', 'not a function' as any) }, { code: 'BAD_ARGUMENT' })
  const noPeer = await t.throwsAsync(rpc.async_('' as string, 'f'))
  t.is((noPeer as RpcError).code, 'BAD_ARGUMENT')
  const unencodable = await t.throwsAsync(rpc.async_(rpc.getName(), 'f', Symbol('s')))
  t.is((unencodable as RpcError).code, 'BAD_ARGUMENT')
})

test('errors - an argument above the frame limit fails with BAD_FRAME before leaving', async t => {
  const rpc = new Rpc({ maxFrameBytes: 1024 })
  t.teardown(async () => { await rpc.close() })
  rpc.define('len', (b: Uint8Array) => b.length)
  const err = await t.throwsAsync(rpc.async_(rpc.getName(), 'len', new Uint8Array(4096)))
  t.is((err as RpcError).code, 'BAD_FRAME')
  t.is(await rpc.async_(rpc.getName(), 'len', new Uint8Array(100)), 100)
})

test('errors - close() while calls are pending ends each with CLOSED', async t => {
  const { client } = await hostAndClient(t, 'closer')
  t.is(await client.async_('closer', 'add', 1, 1), 2)
  const pending = [client.async_('closer', 'sleep', 5000), client.async_('closer', 'sleep', 5000), client.async_('nobody', 'x')]
  await client.close()
  for (const fut of pending) {
    const err = await t.throwsAsync(fut)
    t.is((err as RpcError).code, 'CLOSED')
  }
  const after = await t.throwsAsync(client.async_('closer', 'add', 1, 1))
  t.is((after as RpcError).code, 'CLOSED')
})
