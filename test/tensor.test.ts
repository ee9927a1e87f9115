/**
 * Tensors: construction, the wire form, other libraries' tensors, devices, and the
 * stacking and splitting rules batches use.
 */
import test from 'ava'
import { Rpc, RpcError, Tensor, tensor, registerDevice, type Device, type TypedArray } from '../src/index.js'
import { decodeValue, encodeFrame, HEADER_BYTES } from '../src/codec/frame.js'
import { splitResult, stackCalls } from '../src/tensor/batch.js'
import { DTYPES, type DType } from '../src/tensor/dtype.js'
import { hostAndClient } from './helpers/peer-process.js'

function bytesOf (data: TypedArray): number[] {
  return Array.from(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
}

function sample (dtype: DType, n: number): TypedArray {
  const info = DTYPES[dtype]
  const out = new info.array(n)
  // Fill with bytes that cover sign bits, NaN payloads and large magnitudes.
  const raw = new Uint8Array(out.buffer)
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 73 + 41) & 0xff
  return out
}

test('tensor - every dtype round-trips between processes with exact bytes, shape and dtype', async t => {
  const { client } = await hostAndClient(t, 'tensor-host')
  const dtypes = Object.keys(DTYPES) as DType[]
  const sent = dtypes.map(dtype => tensor(sample(dtype, 24), [2, 3, 4], dtype))
  const back = await client.async_<Tensor[]>('tensor-host', 'echo', sent)
  t.is(back.length, dtypes.length)
  for (const [i, dtype] of dtypes.entries()) {
    t.true(back[i] instanceof Tensor, dtype)
    t.is(back[i].dtype, dtype)
    t.deepEqual(back[i].shape, [2, 3, 4])
    t.is(back[i].device, 'cpu')
    t.is(back[i].data.constructor, DTYPES[dtype].array)
    t.deepEqual(bytesOf(back[i].data), bytesOf(sent[i].data), dtype)
  }
})

test('tensor - tensors nested in objects, arrays and Maps arrive intact, with scalars and empty tensors', async t => {
  const { client } = await hostAndClient(t, 'tensor-nest')
  const value = {
    obs: [tensor([[1, 2], [3, 4]]), { mask: tensor(new Uint8Array([1, 0, 1])) }],
    scalar: tensor(7.5, undefined, 'float64'),
    empty: tensor(new Float32Array(0), [0, 5]),
    byName: new Map([['ids', tensor([1n, -2n])]]),
    note: 'plain values stay plain'
  }
  const back = await client.async_<any>('tensor-nest', 'echo', value)
  t.deepEqual(back.obs[0].shape, [2, 2])
  t.deepEqual(back.obs[0].toArray(), [1, 2, 3, 4])
  t.is(back.obs[1].mask.dtype, 'uint8')
  t.deepEqual(back.obs[1].mask.toArray(), [1, 0, 1])
  t.deepEqual(back.scalar.shape, [])
  t.deepEqual(back.scalar.toArray(), [7.5])
  t.deepEqual(back.empty.shape, [0, 5])
  t.is(back.empty.size, 0)
  t.is(back.byName.get('ids').dtype, 'bigint64')
  t.deepEqual(back.byName.get('ids').toArray(), [1n, -2n])
  t.is(back.note, 'plain values stay plain')
})

test('tensor - travels as raw bytes, not as a list of numbers', t => {
  const n = 100_000
  const frame = encodeFrame([4, 1, tensor(new Float32Array(n).fill(0.1))])
  // 4 bytes per element plus a few dozen of framing; a msgpack number list costs 5 per float32.
  t.true(frame.byteLength < n * 4 + 64, `${frame.byteLength} bytes`)
  const back = decodeValue(frame.subarray(HEADER_BYTES)) as unknown[]
  t.true(back[2] instanceof Tensor)
  t.is((back[2] as Tensor).data.byteOffset % 4, 0)
})

test('tensor - other libraries\' tensors are accepted: {dtype, shape, data}, ndarray with strides, onnxruntime', async t => {
  const { client } = await hostAndClient(t, 'tensor-adopt')
  class OrtLikeTensor {
    readonly type = 'int64'
    readonly dims = [2]
    private readonly cpuData = new BigInt64Array([5n, 6n])
    get data (): BigInt64Array { return this.cpuData }
  }
  // A transposed 2x3 view of [[1, 2, 3], [4, 5, 6]] stored row-major, as ndarray's .transpose(1, 0) gives.
  const ndarrayView = { dtype: 'float32', shape: [3, 2], stride: [1, 3], offset: 0, data: new Float32Array([1, 2, 3, 4, 5, 6]) }
  const back = await client.async_<any>('tensor-adopt', 'echo', {
    plain: { dtype: 'int16', shape: [1, 2], data: new Int16Array([-3, 3]) },
    nd: ndarrayView,
    ort: new OrtLikeTensor()
  })
  t.true(back.plain instanceof Tensor)
  t.deepEqual([back.plain.dtype, back.plain.shape, back.plain.toArray()], ['int16', [1, 2], [-3, 3]])
  t.deepEqual([back.nd.dtype, back.nd.shape, back.nd.toArray()], ['float32', [3, 2], [1, 4, 2, 5, 3, 6]])
  t.deepEqual([back.ort.dtype, back.ort.shape, back.ort.toArray()], ['bigint64', [2], [5n, 6n]])
  t.deepEqual(tensor(ndarrayView).toArray(), [1, 4, 2, 5, 3, 6])
})

test('tensor - tensor() infers shape and dtype, converts, and refuses bad input with BAD_ARGUMENT', t => {
  const m = tensor([[1, 2, 3], [4, 5, 6]])
  t.deepEqual([m.dtype, m.shape], ['float32', [2, 3]])
  t.deepEqual(m.row(1).toArray(), [4, 5, 6])
  t.is(m.row(1).data.buffer, m.data.buffer, 'row() is a view')
  t.deepEqual(tensor([1, 2, 3, 4], [2, 2], 'int32').shape, [2, 2])
  t.is(tensor(new Uint8Array([1, 2]), undefined, 'float64').data.constructor, Float64Array)
  t.deepEqual(tensor([1, 2], undefined, 'int64').toArray(), [1n, 2n])
  t.is(tensor(Buffer.from([1, 2])).data.constructor, Uint8Array)
  const bad: Array<() => unknown> = [
    () => tensor([[1, 2], [3]]),
    () => tensor([1, 2, 3], [2, 2]),
    () => tensor('text'),
    () => tensor([1, 2], undefined, 'complex128'),
    () => tensor([1.5], undefined, 'bigint64'),
    () => tensor([1, 2n] as any),
    () => new Tensor('float32', [2], new Int32Array(2)),
    () => tensor([1, 2], [-1, -2]),
    () => m.row(2)
  ]
  for (const make of bad) {
    const err = t.throws(make)
    t.true(err instanceof RpcError && err.code === 'BAD_ARGUMENT', String(err?.message))
  }
})

test('tensor - a malformed tensor on the wire is refused, not turned into wrong data', t => {
  const frame = encodeFrame([4, 1, tensor([1, 2, 3])])
  const body = frame.subarray(HEADER_BYTES)
  // The element bytes are last: drop one and the length no longer matches the shape.
  const shortened = new Uint8Array(body.subarray(0, body.length - 1))
  t.is(shortened[shortened.length - 12], 12, 'the bin8 length byte')
  shortened[shortened.length - 12] = 11
  t.throws(() => decodeValue(shortened), { message: /float32 tensor of shape \[3\] needs 12 bytes, it carries 11/ })
})

test('tensor - stacking takes per-call leaves, splitting gives tensors by row, per-call lists by item, the rest to all', t => {
  const { args, accepted, rejected } = stackCalls([
    [tensor([1, 2]), { temp: 0.5, ids: [1, 2] }, 'a'],
    [tensor([3, 4]), { temp: 0.7, ids: [3, 4] }, 'b']
  ], 'cpu')
  t.deepEqual(accepted, [0, 1])
  t.deepEqual(rejected, [])
  const [x, opts, tags] = args as [Tensor, any, string[]]
  t.deepEqual([x.shape, x.toArray()], [[2, 2], [1, 2, 3, 4]])
  t.deepEqual(opts, { temp: [0.5, 0.7], ids: [[1, 3], [2, 4]] })
  t.deepEqual(tags, ['a', 'b'])

  // A tuple of batched tensors of length n stays a tuple; a list of n plain values is per call.
  const parts = splitResult([tensor([[1, 1], [2, 2]]), tensor([10, 20])], 2) as Tensor[][]
  t.deepEqual(parts.map(p => p.map(x => x.toArray())), [[[1, 1], [10]], [[2, 2], [20]]])
  t.deepEqual(splitResult({ label: ['cat', 'dog'], model: 'v1' }, 2), [{ label: 'cat', model: 'v1' }, { label: 'dog', model: 'v1' }])
  t.deepEqual(splitResult(42, 3), [42, 42, 42])
  t.throws(() => splitResult({ logits: tensor([1, 2, 3]) }, 2), { message: /the result\.logits is a tensor of shape \[3\]; its first dimension must be 2/ })

  const mixed = stackCalls([[tensor([1])], [tensor([1, 2])], ['not a tensor'], [tensor([2])]], 'cpu')
  t.deepEqual(mixed.accepted, [0, 3])
  t.deepEqual(mixed.rejected.map(r => [r.index, r.error.code]), [[1, 'BAD_ARGUMENT'], [2, 'BAD_ARGUMENT']])
  t.regex(mixed.rejected[1].error.message, /argument 0 is a string, where the batch has a float32 tensor of shape \[1\]/)
})

test('tensor - a registered device holds batches, and a caller gets results on the device it asked for', async t => {
  const copies = { in: 0, out: 0 }
  const counting: Device = {
    name: 'counting',
    allocate: (dtype, length) => new DTYPES[dtype].array(length),
    copyIn: (dst, offset, src) => { copies.in++; dst.set(src as any, offset) },
    copyOut: (src, offset, length) => { copies.out++; return src.slice(offset, offset + length) }
  }
  registerDevice(counting)
  t.throws(() => { registerDevice(counting) }, { code: 'BAD_ARGUMENT' } as any)

  const rpc = new Rpc({ device: 'counting' })
  t.teardown(async () => { await rpc.close() })
  let seenDevice = ''
  rpc.define('sum', (x: Tensor) => {
    seenDevice = x.device
    const rows = x.shape[0]
    const out = new Float32Array(rows)
    const host = x.hostData() as Float32Array
    for (let r = 0; r < rows; r++) out[r] = host[r * 2] + host[r * 2 + 1]
    return tensor(out, [rows])
  }, { batchSize: 2, device: 'counting', maxWaitMs: 100 })
  // Calls to our own name go through the codec like any other.
  const [a, b] = await Promise.all([rpc.async_<Tensor>(rpc.getName(), 'sum', tensor([1, 2])), rpc.async_<Tensor>(rpc.getName(), 'sum', tensor([3, 4]))])
  t.is(seenDevice, 'counting')
  t.deepEqual([a.device, b.device], ['counting', 'counting'])
  t.deepEqual([a.toArray(), b.toArray()], [[3], [7]])
  t.true(copies.in >= 4, 'two rows stacked on the device, two results moved onto it')
})

test('tensor - batching options are checked when the function is defined', t => {
  const rpc = new Rpc()
  const fn = (): null => null
  const bad: Array<[() => unknown, RegExp]> = [
    [() => { rpc.define('a', fn, { batchSize: 0 }) }, /batchSize must be a positive integer/],
    [() => { rpc.define('b', fn, { batchSize: 2.5 }) }, /batchSize must be a positive integer/],
    [() => { rpc.define('c', fn, { batchSize: 4, maxWaitMs: -1 }) }, /maxWaitMs/],
    [() => { rpc.define('d', fn, { batchSize: 4, device: 'gpu0' }) }, /unknown device "gpu0"; registered: cpu/],
    [() => { rpc.define('e', fn, { batchSize: 4, device: 'shm' }) }, /not built yet \(issue 4\)/],
    [() => { rpc.define('f', fn, { maxWaitMs: 5 }) }, /needs a batchSize/],
    [() => rpc.defineQueue('g', { dynamicBatching: true }), /dynamicBatching needs a batchSize/]
  ]
  for (const [define, message] of bad) {
    const err = t.throws(define)
    t.true(err instanceof RpcError && err.code === 'BAD_ARGUMENT')
    t.regex(err?.message ?? '', message)
  }
  t.notThrows(() => { rpc.define('ok', fn, { batchSize: 4, device: 'cpu', maxWaitMs: 0 }) })
})
