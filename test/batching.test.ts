/**
 * Batched endpoints served by a real peer in a child process, called by real clients.
 */
import test from 'ava'
import { Rpc, RpcError, tensor, Tensor } from '../src/index.js'
import { PeerProcess } from './helpers/peer-process.js'
import { scaleShift } from './fixtures/batch-functions.js'

const CLIENTS = 40
const ROUNDS = 21

async function batchHost (t: { teardown: (fn: () => Promise<unknown>) => void }): Promise<{ host: PeerProcess, client: Rpc }> {
  const host = await PeerProcess.start({ rpc: { name: 'batcher' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const client = new Rpc({ timeout: 60 })
  t.teardown(async () => { await client.close() })
  client.connect(host.addresses[0])
  return { host, client }
}

test('batching - 40 clients x 21 rounds through define, defineDeferred and defineQueue match the unbatched answer', async t => {
  const host = await PeerProcess.start({ rpc: { name: 'batcher' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const clients: PeerProcess[] = []
  t.teardown(async () => await Promise.all(clients.map(async c => await c.kill())))
  // Started ten at a time: forty Node processes at once starve a 2-CPU machine.
  for (let i = 0; i < CLIENTS; i += 10) {
    clients.push(...await Promise.all(Array.from({ length: Math.min(10, CLIENTS - i) },
      async () => await PeerProcess.start({ rpc: { timeout: 90 }, connect: [host.addresses[0]] }))))
  }
  const results = await Promise.all(clients.map(async (c, index) => await c.request('batchRounds', { peer: 'batcher', rounds: ROUNDS, index })))
  t.deepEqual(results.flatMap(r => r.mismatches), [])
  t.true(results.every(r => r.rounds === ROUNDS))

  const sizes: Record<string, number[]> = await host.call('batcher', 'batchSizes')
  for (const fn of ['layerB', 'layerD', 'layerQ']) {
    const runs = sizes[fn]
    t.is(runs.reduce((a, b) => a + b, 0), CLIENTS * ROUNDS, `${fn}: every call ran in exactly one batch`)
    t.true(runs.every(n => n >= 1 && n <= 8), `${fn}: batches of 1..8 calls`)
    t.true(runs.length < CLIENTS * ROUNDS, `${fn}: calls were batched (${runs.length} batches)`)
  }
})

test('batching - a dynamic queue with B=100 gives each of 200 calls the function applied alone', async t => {
  const { host, client } = await batchHost(t)
  const inputs = Array.from({ length: 200 }, (_, i) => ({
    x: tensor(Float32Array.from([i, i + 0.5, -i]), [3]),
    opts: { scale: 1 + (i % 7), shift: i / 4 }
  }))
  const results = await Promise.all(inputs.map(async ({ x, opts }) => await client.async_<Tensor>('batcher', 'scaleQ', x, opts)))
  for (const [i, result] of results.entries()) {
    const alone = scaleShift(inputs[i].x, inputs[i].opts.scale, inputs[i].opts.shift)
    t.true(result instanceof Tensor)
    t.deepEqual(result.shape, [3])
    t.deepEqual(Array.from(result.data as Float32Array), Array.from(alone.data as Float32Array), `call ${i}`)
  }
  const sizes: Record<string, number[]> = await host.call('batcher', 'batchSizes')
  t.is(sizes.scaleQ.reduce((a, b) => a + b, 0), 200)
  t.true(sizes.scaleQ.every(n => n >= 1 && n <= 100))
  t.true(sizes.scaleQ.length < 200, `calls were batched (${sizes.scaleQ.length} batches)`)
})

test('batching - a partial batch runs once its oldest call has waited maxWaitMs', async t => {
  const { host, client } = await batchHost(t)
  const x = tensor([1, 2, 3])
  // One call to a batchSize-8 endpoint: moolib would wait for seven more for ever.
  const result = await client.async_<Tensor>('batcher', 'partial', x)
  t.deepEqual(result.toArray(), [1, 2, 3])
  const sizes: Record<string, number[]> = await host.call('batcher', 'batchSizes')
  t.deepEqual(sizes.partial, [1])
})

test('batching - a call whose shape or dtype does not match is rejected while its batch mates run', async t => {
  const { host, client } = await batchHost(t)
  await client.async_('batcher', 'batchSizes') // connected before the batch is sent
  const good = [tensor([1, 2, 3, 4]), tensor([5, 6, 7, 8])]
  const calls = [
    client.async_<Tensor>('batcher', 'strict', good[0]),
    client.async_<Tensor>('batcher', 'strict', tensor([1, 2, 3, 4, 5])),
    client.async_<Tensor>('batcher', 'strict', tensor(new Int32Array(4))),
    client.async_<Tensor>('batcher', 'strict', good[1])
  ]
  const outcomes = await Promise.allSettled(calls)
  t.deepEqual((outcomes[0] as PromiseFulfilledResult<Tensor>).value.toArray(), [1, 2, 3, 4])
  t.deepEqual((outcomes[3] as PromiseFulfilledResult<Tensor>).value.toArray(), [5, 6, 7, 8])
  const shapeError = (outcomes[1] as PromiseRejectedResult).reason
  t.true(shapeError instanceof RpcError)
  t.is(shapeError.code, 'BAD_ARGUMENT')
  t.regex(shapeError.message, /argument 0 has shape \[5\], the batch has \[4\]/)
  const dtypeError = (outcomes[2] as PromiseRejectedResult).reason
  t.is(dtypeError.code, 'BAD_ARGUMENT')
  t.regex(dtypeError.message, /argument 0 has dtype int32, the batch has float32/)
  const sizes: Record<string, number[]> = await host.call('batcher', 'batchSizes')
  t.deepEqual(sizes.strict, [2])
})

test('batching - a batch function that throws fails every call of the batch with REMOTE_ERROR', async t => {
  const { client } = await batchHost(t)
  await client.async_('batcher', 'batchSizes')
  const outcomes = await Promise.allSettled([1, 2, 3].map(async i => await client.async_('batcher', 'batchThrows', tensor([i]))))
  for (const outcome of outcomes) {
    t.is(outcome.status, 'rejected')
    const err = (outcome as PromiseRejectedResult).reason
    t.is(err.code, 'REMOTE_ERROR')
    t.is(err.remoteName, 'RangeError')
    t.regex(err.message, /batch of 3 failed/)
  }
})

test('batching - a result that cannot be split fails every call and says why', async t => {
  const { client } = await batchHost(t)
  await client.async_('batcher', 'batchSizes')
  const outcomes = await Promise.allSettled([1, 2].map(async i => await client.async_('batcher', 'badSplit', tensor([i]))))
  for (const outcome of outcomes) {
    t.is(outcome.status, 'rejected')
    const err = (outcome as PromiseRejectedResult).reason
    t.is(err.code, 'REMOTE_ERROR')
    t.regex(err.message, /the result is a tensor of shape \[3\]; its first dimension must be 2/)
  }
})
