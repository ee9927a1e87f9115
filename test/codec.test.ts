import test from 'ava'
import { Packr } from 'msgpackr'
import { Rpc } from '../src/index.js'
import { decodeFrameBody, encodeFrame, FrameReader, FrameType, HEADER_BYTES, isTree } from '../src/codec/frame.js'
import { readSmallTree, resetSmallTreeMisses, writeSmallTree } from '../src/codec/small-tree.js'
import { Tensor } from '../src/tensor/tensor.js'
import { PeerProcess } from './helpers/peer-process.js'

// The body codec's options, as frame.ts sets them: msgpackr with these is what frames are held to.
const BODY_OPTIONS = { structuredClone: true, mapsAsObjects: false, moreTypes: true, int64AsType: 'bigint', useBigIntExtension: true } as const
const structured = new Packr(BODY_OPTIONS)

const samples: Array<[string, unknown]> = [
  ['integer', 42],
  ['negative', -7],
  ['float', Math.PI],
  ['large number', 2 ** 53 - 1],
  ['string', 'héllo, wörld ✓'],
  ['empty string', ''],
  ['true', true],
  ['false', false],
  ['null', null],
  ['array', [1, 'two', [3, [4]]]],
  ['plain object', { a: 1, b: { c: [true, null] } }],
  ['Uint8Array', new Uint8Array([0, 1, 254, 255])],
  ['Int8Array', new Int8Array([-128, 127])],
  ['Uint16Array', new Uint16Array([0, 65535])],
  ['Int16Array', new Int16Array([-32768, 32767])],
  ['Uint32Array', new Uint32Array([0, 2 ** 32 - 1])],
  ['Int32Array', new Int32Array([-(2 ** 31), 2 ** 31 - 1])],
  ['Float32Array', new Float32Array([1.5, -0.25, Number.POSITIVE_INFINITY])],
  ['Float64Array', new Float64Array([Math.E, -0, Number.NaN])],
  ['BigInt64Array', new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n])],
  ['BigUint64Array', new BigUint64Array([0n, 2n ** 64n - 1n])],
  ['Map', new Map<unknown, unknown>([[1, 'one'], ['two', { x: 2 }]])],
  ['Set', new Set([1, 'a'])],
  ['Date', new Date('2026-11-22T12:34:56.789Z')],
  ['small bigint', 5n],
  ['int64 bigint', -(2n ** 62n)],
  ['huge bigint', 2n ** 100n + 1n],
  ['mixed', { tensor: new Float32Array([1, 2, 3]), when: new Date(0), tags: new Map([['k', [1n]]]) }]
]

test('codec - every msgpack-able type round-trips through another process unchanged', async t => {
  const host = await PeerProcess.start({ rpc: { name: 'mirror' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const client = new Rpc()
  t.teardown(async () => { await client.close() })
  client.connect(host.addresses[0])
  for (const [label, value] of samples) {
    const back = await client.async_('mirror', 'echo', value)
    t.deepEqual(back, value, label)
    t.is(Object.prototype.toString.call(back), Object.prototype.toString.call(value), `${label} keeps its type`)
  }
  // Several arguments, and undefined inside an array.
  t.deepEqual(await client.async_('mirror', 'callOther', 'mirror', 'echo', [undefined, 1]), [undefined, 1])
})

test('codec - typed arrays travel as bytes, not as lists of numbers', t => {
  const data = new Float64Array(1024).fill(Math.PI)
  const frame = encodeFrame([FrameType.REPLY, 1, data])
  // 8 KiB of doubles plus a few bytes of header; a number list would be 9 bytes per element.
  t.true(frame.byteLength < data.byteLength + 64)
})

test('codec - a decoded typed array is a copy of its kind over a buffer of its own, aligned in the body or not', t => {
  const kinds = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array]
  // Strings of 0..7 characters in front shift where the bytes land in the body.
  for (let shift = 0; shift < 8; shift++) {
    const values = kinds.map(Kind => Kind === BigInt64Array
      ? new BigInt64Array([1n, 2n, 3n])
      : Kind === BigUint64Array ? new BigUint64Array([1n, 2n, 3n]) : new (Kind as Float64ArrayConstructor)([1, 2, 3]))
    const frame = encodeFrame([FrameType.REPLY, 1, ['x'.repeat(shift), ...values, new ArrayBuffer(3), new DataView(new Uint8Array([9, 8]).buffer)]])
    const body = frame.subarray(HEADER_BYTES)
    const back = (decodeFrameBody(body, true)[2] as unknown[]).slice(1)
    body.fill(0) // the shm ring reuses its memory: nothing decoded may refer to it
    for (let i = 0; i < kinds.length; i++) {
      const value = back[i] as ArrayBufferView
      t.is(value.constructor, kinds[i], `${kinds[i].name}, shift ${shift}`)
      t.deepEqual(value, values[i])
      t.true(value.byteOffset === 0 && value.buffer.byteLength === value.byteLength, `${kinds[i].name} owns its buffer`)
    }
    t.deepEqual(back[kinds.length], new ArrayBuffer(3))
    t.deepEqual(new Uint8Array((back[kinds.length + 1] as DataView).buffer), new Uint8Array([9, 8]))
  }
  // An unknown kind code is a bad body, not a crash.
  const bad = Buffer.from([0x93, FrameType.REPLY, 1, 0xd4, 0x74, 99])
  t.throws(() => decodeFrameBody(bad, true), { code: 'BAD_FRAME' })
})

test('codec - a Uint8Array is written as ext 0x74 kind 1 and a Buffer as bin, at every length class', t => {
  const bodyOf = (value: Uint8Array): Buffer => Buffer.from(encodeFrame([FrameType.REPLY, 1, value]).subarray(HEADER_BYTES + 3))
  // [0x93, 4, 1] is the array and the two numbers before the value.
  t.deepEqual([...bodyOf(new Uint8Array([9, 9]))], [0xc7, 3, 0x74, 1, 9, 9])
  t.deepEqual([...bodyOf(Buffer.from([9, 9]))], [0xc4, 2, 9, 9])
  t.deepEqual([...bodyOf(new Uint8Array(300)).subarray(0, 5)], [0xc8, 0x01, 0x2d, 0x74, 1])
  t.deepEqual([...bodyOf(Buffer.alloc(300)).subarray(0, 3)], [0xc5, 0x01, 0x2c])
  t.deepEqual([...bodyOf(new Uint8Array(70_000)).subarray(0, 7)], [0xc9, 0, 1, 0x11, 0x71, 0x74, 1])
  t.deepEqual([...bodyOf(Buffer.alloc(70_000)).subarray(0, 5)], [0xc6, 0, 1, 0x11, 0x70])
  for (const length of [0, 1, 254, 255, 256, 65_534, 65_535, 65_536, 70_000]) {
    for (const value of [new Uint8Array(length).fill(7), Buffer.alloc(length, 7)]) {
      const back = decodeFrameBody(encodeFrame([FrameType.REPLY, 1, value]).subarray(HEADER_BYTES), true)[2] as Uint8Array
      t.is(back.constructor, value.constructor, `${value.constructor.name} of ${length}`)
      t.deepEqual(Buffer.from(back), Buffer.from(value))
    }
  }
  // A Packr without moreTypes (the canonical encoder of signed bytes) writes a Uint8Array as
  // bin, the same bytes as a Buffer: a signature over bytes that arrived as the other kind verifies.
  const canonical = new Packr({ useRecords: false, moreTypes: false })
  t.deepEqual([...canonical.pack(new Uint8Array([1, 2]))], [0xc4, 2, 1, 2])
  t.deepEqual([...canonical.pack(['x', new Uint8Array(300)])], [...canonical.pack(['x', Buffer.alloc(300)])])
  // Bodies come as Buffers from some links and plain Uint8Arrays from others: either way a
  // Buffer comes out a Buffer and a Uint8Array a Uint8Array, on the small-tree path and on msgpackr's.
  for (const body of [[FrameType.REPLY, 1, [Buffer.from([1]), new Uint8Array([2]), { b: Buffer.from([3]) }]],
    [FrameType.REPLY, 1, [Buffer.from([1]), new Uint8Array([2]), { b: Buffer.from([3]) }, new Map()]]]) {
    const frame = encodeFrame(body)
    for (const bytes of [frame.subarray(HEADER_BYTES), new Uint8Array(frame.subarray(HEADER_BYTES))]) {
      for (const copy of [false, true]) {
        const [buffer, array, object] = decodeFrameBody(bytes, copy)[2] as [Uint8Array, Uint8Array, { b: Uint8Array }]
        const where = `${body.length === 4 ? 'msgpackr' : 'small tree'}, ${Buffer.isBuffer(bytes) ? 'Buffer' : 'Uint8Array'} body, copy ${String(copy)}`
        t.true(Buffer.isBuffer(buffer) && Buffer.isBuffer(object.b), where)
        t.is(array.constructor, Uint8Array, where)
        t.deepEqual([buffer[0], array[0], object.b[0]], [1, 2, 3])
      }
    }
  }
  // A subclass other than Buffer arrives as a Uint8Array.
  class Bytes extends Uint8Array {}
  const back = decodeFrameBody(encodeFrame([FrameType.REPLY, 1, new Bytes([1, 2])]).subarray(HEADER_BYTES), true)[2]
  t.is((back as object).constructor, Uint8Array)
  t.deepEqual(back, new Uint8Array([1, 2]))
})

test('codec - a tree body is written as structured clone writes it; shared and cyclic values keep their shape', t => {
  // Frames of trees must not change on the wire.
  const trees = samples.map(([, value]) => [FrameType.REPLY, 1, value]).filter(isTree)
  t.true(trees.length >= samples.length - 3, 'all but Map, Set and the value holding a Map are trees')
  for (const body of trees) {
    t.deepEqual(Buffer.from(encodeFrame(body).subarray(HEADER_BYTES)), Buffer.from(structured.pack(body)))
  }
  const roundTrip = (value: unknown): any => decodeFrameBody(encodeFrame([FrameType.REPLY, 1, value]).subarray(HEADER_BYTES), true)[2]
  const shared = { x: 1 }
  const cyclic: Record<string, unknown> = { n: 1 }
  cyclic.self = cyclic
  const bytes = new Uint8Array([1, 2])
  class Point { constructor (readonly x = 1) {} }
  let deep: unknown[] = []
  for (let i = 0; i < 10; i++) deep = [deep]
  const many = Array.from({ length: 40 }, (_, i) => ({ i }))
  for (const value of [[shared, shared], cyclic, [bytes, bytes], new Map(), new Set(), new Point(), deep, many, Object.create(null)]) {
    t.false(isTree([FrameType.REPLY, 1, value]))
  }
  t.false(isTree([() => 1]))
  const [a, b] = roundTrip([shared, shared])
  t.is(a, b)
  const back = roundTrip(cyclic)
  t.is(back.self, back)
  const [c, d] = roundTrip([bytes, bytes])
  t.is(c, d)
  t.deepEqual(roundTrip(deep), deep)
  t.deepEqual(roundTrip(many), many)
})

test('codec - the small-tree writer writes msgpackr\'s bytes, and leaves everything else to msgpackr', t => {
  const numbers = [0, 1, 0x1f, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1,
    -1, -0x20, -0x21, -0x80, -0x81, -0x8000, -0x8001, -(2 ** 31), -(2 ** 31) - 1, -0, 0.5, -1.25, Number.NaN, Number.POSITIVE_INFINITY]
  const ascii = (length: number): string => Array.from({ length }, (_, i) => String.fromCharCode(32 + (i % 95))).join('')
  const byteArrays = [0, 1, 63, 64, 253, 254, 255, 256, 4000].flatMap(length => [new Uint8Array(length).fill(length & 0xff), Buffer.alloc(length, 3)])
  const written = [
    ...numbers, ...[0, 1, 31, 32, 255].map(ascii), true, false, null, undefined,
    [], Array.from({ length: 15 }, (_, i) => i), Array.from({ length: 16 }, (_, i) => -i), Array.from({ length: 300 }, (_, i) => i * 1000),
    [[[[[[[1]]]]]]], [undefined, null, 'f', [new Uint8Array([1]), Buffer.from([2])]], ...byteArrays,
    {}, { a: 1 }, { obs: new Float32Array([1, 2]), reward: 0.5, done: false, info: { step: 3 } },
    [{ a: 1, b: 2 }, { a: 3, b: 4 }, { b: 5, a: 6 }, { a: 7 }, { a: { a: { c: [] } } }], { 2: 'two', 1: 'one', x: 'x' },
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])), Array.from({ length: 30 }, (_, i) => ({ [`shape${i}`]: i })),
    new Int8Array([-1, 1]), new Uint8ClampedArray([255]), new Int16Array([-300]), new Uint16Array([60000]), new Int32Array([-1]),
    new Uint32Array([2 ** 32 - 1]), new Float32Array([Math.PI]), new Float64Array([Math.E, -0]), new BigInt64Array([-5n]), new BigUint64Array([5n]),
    new Float32Array(new ArrayBuffer(20), 4, 3), new Float64Array(0),
    new Tensor('float32', [2, 2], new Float32Array([1, 2, 3, 4])), { obs: new Tensor('bigint64', [1], new BigInt64Array([7n])), step: 1 },
    new Tensor('uint8', [0], new Uint8Array(0)), new Tensor('float64', [3], new Float64Array(new ArrayBuffer(40), 8, 3))
  ]
  resetSmallTreeMisses()
  for (const value of written) {
    const body = [FrameType.REPLY, 123456, value]
    const frame = writeSmallTree(body, HEADER_BYTES)
    if (frame == null) {
      t.fail(`gave up on written[${written.indexOf(value)}]`)
      continue
    }
    const expected = structured.pack(body)
    t.deepEqual(Buffer.from(frame.subarray(HEADER_BYTES)), Buffer.from(expected), `written[${written.indexOf(value)}]`)
    t.is(Buffer.from(frame).readUInt32BE(0), expected.byteLength)
    t.deepEqual(decodeFrameBody(frame.subarray(HEADER_BYTES), true), decodeFrameBody(expected, true))
  }
  // A call as the caller sends it.
  const call = [FrameType.CALL, 2 ** 31 - 5, 'step', [new Uint8Array(64), 0.99, [1, 2]], 30_000, 2 ** 31 - 9]
  t.deepEqual(Buffer.from(writeSmallTree(call, HEADER_BYTES)?.subarray(HEADER_BYTES) ?? []), Buffer.from(structured.pack(call)))

  const shared = [1]
  const cyclic: unknown[] = []
  cyclic.push(cyclic)
  let deep: unknown[] = [1]
  for (let i = 0; i < 8; i++) deep = [deep]
  class Items extends Array {}
  const sharedObject = { a: 1 }
  const left = [
    ascii(256), 'héllo', new Map(), new Set(), new Date(0), new ArrayBuffer(2), new DataView(new ArrayBuffer(2)), new Uint8Array(5000),
    Buffer.alloc(5000), new Float64Array(600), 5n, [shared, shared], [sharedObject, sharedObject], cyclic, deep, { a: deep },
    Array.from({ length: 40 }, () => [1]), Array.from({ length: 33 }, (_, i) => ({ [`shape${i}`]: i })), new Items(), () => 1, Symbol('s'),
    { dtype: 'float32', shape: [2], data: new Float32Array(2) }, { type: 'float32', dims: [1], data: new Float32Array(1) },
    new Tensor('float32', [2000], new Float32Array(2000)), new Tensor('float32', [1], new Float32Array(1), 'cuda:0'),
    JSON.parse('{"__proto__": 1}'), { hasOwnProperty: 1 }, Object.create(null), { é: 1 }, { a: new Date(0) }, new (class Point { x = 1 })()
  ]
  left.forEach((value, i) => {
    resetSmallTreeMisses()
    t.is(writeSmallTree([FrameType.REPLY, 1, value], HEADER_BYTES), undefined, `left[${i}]`)
  })
  resetSmallTreeMisses()
  // Giving up leaves nothing behind: the next frame is whole and right.
  t.deepEqual(decodeFrameBody(encodeFrame([FrameType.REPLY, 7, [1, 'héllo']]).subarray(HEADER_BYTES)), [FrameType.REPLY, 7, [1, 'héllo']])
  t.deepEqual(decodeFrameBody(writeSmallTree([FrameType.ACK, 8], HEADER_BYTES)?.subarray(HEADER_BYTES) ?? new Uint8Array()), [FrameType.ACK, 8])
  // A getter that encodes a frame of its own, or throws, leaves the writer whole.
  const nested = [1]
  Object.defineProperty(nested, 0, { get: () => decodeFrameBody(encodeFrame([FrameType.ACK, 9]).subarray(HEADER_BYTES)) })
  t.deepEqual(decodeFrameBody(encodeFrame([FrameType.REPLY, 10, nested]).subarray(HEADER_BYTES)), [FrameType.REPLY, 10, [[FrameType.ACK, 9]]])
  const throwing = [1]
  Object.defineProperty(throwing, 0, { get: () => { throw new Error('no') } })
  t.throws(() => encodeFrame([FrameType.REPLY, 11, throwing]), { message: /no/ })
  t.deepEqual(decodeFrameBody(encodeFrame([FrameType.REPLY, 12, [nested.length]]).subarray(HEADER_BYTES)), [FrameType.REPLY, 12, [1]])
  // Frames carved one after another do not overlap.
  const frames = Array.from({ length: 100 }, (_, i) => writeSmallTree([FrameType.REPLY, i, ascii(200)], HEADER_BYTES))
  frames.forEach((frame, i) => { t.deepEqual(decodeFrameBody(frame?.subarray(HEADER_BYTES) ?? new Uint8Array()), [FrameType.REPLY, i, ascii(200)]) })
})

test('codec - the small-tree reader reads what msgpackr reads, and leaves the rest to it', t => {
  const copying = new Packr({ ...BODY_OPTIONS, copyBuffers: true })
  let seed = 12345
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed % n
  }
  const leaf = (): unknown => {
    switch (random(13)) {
      case 0: return random(2 ** 31) - 2 ** 30
      case 1: return random(300) - 150
      case 2: return random(2 ** 31) * 3
      case 3: return random(1000) / 7
      case 4: return 'abcdefghijklmnopqrstuvwxyz0123456789'.slice(0, random(36))
      case 5: return 'ünï'
      case 6: return random(2) === 0
      case 7: return random(2) === 0 ? null : undefined
      case 8: return new Uint8Array(random(300)).fill(random(256))
      case 9: return Buffer.alloc(random(300), random(256))
      case 10: return new [Int8Array, Int16Array, Uint32Array, Float32Array, Float64Array, BigInt64Array][random(6)](random(5))
      case 11: {
        const rows = random(3)
        return new Tensor('float32', [rows, 2], new Float32Array(2 * rows).fill(rows))
      }
      default: return new Map([[1, 2]])
    }
  }
  const keys = ['a', 'b', 'obs', 'reward', 'x1']
  const object = (depth: number): Record<string, unknown> => Object.fromEntries(keys.slice(random(3), 2 + random(4)).map(key => [key, depth < 3 && random(3) === 0 ? tree(depth + 1) : leaf()]))
  const tree = (depth: number): unknown[] => Array.from({ length: random(6) }, () => depth < 3 && random(4) === 0 ? (random(2) === 0 ? tree(depth + 1) : object(depth + 1)) : leaf())
  const decoders: Array<[boolean, Packr]> = [[false, structured], [true, copying]]
  let read = 0
  let mutantsRead = 0
  for (let i = 0; i < 2000; i++) {
    const body = structured.pack([FrameType.REPLY, i, ...tree(0)])
    for (const [copy, packr] of decoders) {
      const expected = packr.unpack(body)
      resetSmallTreeMisses()
      const fast = readSmallTree(body, copy)
      if (fast == null) continue
      read++
      t.deepEqual(fast, expected)
      // deepEqual does not compare a Buffer with a Uint8Array by kind: look at each byte value.
      const kinds = (value: unknown): unknown => Array.isArray(value) ? value.map(kinds) : (value as object)?.constructor?.name
      t.deepEqual(kinds(fast), kinds(expected))
      // The same body read in place amid other bytes of a plain Uint8Array (as from the shm ring).
      const amid = new Uint8Array(body.length + 13).fill(0xc1)
      amid.set(body, 7)
      resetSmallTreeMisses()
      const inPlace = readSmallTree(amid, copy, 7, 7 + body.length)
      t.deepEqual(inPlace, expected)
      t.deepEqual(kinds(inPlace), kinds(expected))
      t.deepEqual(decodeFrameBody(amid, copy, 7, 7 + body.length), expected)
    }
    // A byte changed or the body cut short: the reader reads what msgpackr reads, or gives up.
    const mutant = Buffer.from(random(2) === 0 ? body : body.subarray(0, random(body.length)))
    if (mutant.length > 0 && random(2) === 0) mutant[random(mutant.length)] = random(256)
    resetSmallTreeMisses()
    const fast = readSmallTree(mutant, true)
    if (fast == null) continue
    mutantsRead++
    t.deepEqual(fast, copying.unpack(mutant))
    const amid = new Uint8Array(mutant.length + 4).fill(0xc1)
    amid.set(mutant, 2)
    resetSmallTreeMisses()
    t.deepEqual(readSmallTree(amid, true, 2, 2 + mutant.length), fast)
  }
  t.true(read > 1000, `${read} bodies read`)
  t.true(mutantsRead > 100, `${mutantsRead} changed bodies read`)
  // What the small-tree reader leaves to msgpackr is read within the same bounds.
  const mapBody = structured.pack([FrameType.REPLY, 2, new Map([[1, 2]])])
  const amid = new Uint8Array(mapBody.length + 6).fill(0xc1)
  amid.set(mapBody, 3)
  t.deepEqual(decodeFrameBody(amid, true, 3, 3 + mapBody.length), [FrameType.REPLY, 2, new Map([[1, 2]])])
  // A typed array and a copied bin own their memory: the body is reused after a decode.
  resetSmallTreeMisses()
  const body = structured.pack([FrameType.REPLY, 1, new Uint8Array([5, 6]), Buffer.from([7])])
  const [, , bytes, bin] = readSmallTree(body, true) as [number, number, Uint8Array, Uint8Array]
  body.fill(0)
  t.deepEqual([...bytes, ...bin], [5, 6, 7])
  t.true(bytes.byteOffset === 0 && bytes.buffer.byteLength === 2)
  // Not an array at the top, or bytes left over: msgpackr's to judge.
  t.is(readSmallTree(structured.pack(5), true), undefined)
  t.is(readSmallTree(Buffer.from([0x91, 1, 2]), true), undefined)
})

test('codec - short strings read again and again come back right, whatever was read between', t => {
  // More distinct strings than the reader keeps, of every fixstr length, read over and over.
  let seed = 777
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed % n
  }
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789'
  const strings = Array.from({ length: 600 }, (_, i) => Array.from({ length: 1 + (i % 31) }, () => alphabet[random(alphabet.length)]).join(''))
  let read = 0
  for (let i = 0; i < 5000; i++) {
    const pair = [strings[random(strings.length)], strings[random(strings.length)]]
    const body = structured.pack([FrameType.CALL, i, pair[0], [pair[1], { [pair[0]]: pair[1] }], 1000, 1])
    resetSmallTreeMisses()
    const fast = readSmallTree(body, true)
    if (fast != null) read++
    t.deepEqual(fast ?? decodeFrameBody(body, true), [FrameType.CALL, i, pair[0], [pair[1], { [pair[0]]: pair[1] }], 1000, 1])
  }
  t.true(read > 4500, `${read} bodies read by the small-tree reader`)
})

test('codec - after a run of other bodies the small-tree codec rests, and the frames stay the same', t => {
  resetSmallTreeMisses()
  const object = [FrameType.REPLY, 1, new Map([[1, 2]])]
  const tree = [FrameType.REPLY, 2, [1, 'x']]
  // Three misses, then a tree: it is still tried, and the count starts afresh.
  for (let i = 0; i < 3; i++) t.is(writeSmallTree(object, HEADER_BYTES), undefined)
  t.truthy(writeSmallTree(tree, HEADER_BYTES))
  for (let i = 0; i < 3; i++) t.is(writeSmallTree(object, HEADER_BYTES), undefined)
  t.truthy(writeSmallTree(tree, HEADER_BYTES))
  // Four in a row: the next 32 bodies are not tried, trees included (two a turn here), but
  // encodeFrame writes the same bytes through msgpackr.
  for (let i = 0; i < 4; i++) t.is(writeSmallTree(object, HEADER_BYTES), undefined)
  for (let i = 0; i < 16; i++) {
    t.is(writeSmallTree(tree, HEADER_BYTES), undefined)
    t.deepEqual(Buffer.from(encodeFrame(tree).subarray(HEADER_BYTES)), Buffer.from(structured.pack(tree)))
  }
  t.truthy(writeSmallTree(tree, HEADER_BYTES))
  // The reader does the same, and decodeFrameBody reads the same values either way.
  const objectBody = structured.pack(object)
  const treeBody = structured.pack(tree)
  for (let i = 0; i < 4; i++) t.is(readSmallTree(objectBody, true), undefined)
  for (let i = 0; i < 16; i++) {
    t.is(readSmallTree(treeBody, true), undefined)
    t.deepEqual(decodeFrameBody(treeBody, true), tree)
  }
  t.deepEqual(readSmallTree(treeBody, true), tree)
  resetSmallTreeMisses()
})

test('codec - small frames after a large one are not carved out of its buffer', t => {
  const large = encodeFrame([FrameType.REPLY, 1, 'x'.repeat(300 * 1024)])
  const small = encodeFrame([FrameType.ACK, 2])
  t.true(large.buffer.byteLength > 300 * 1024)
  t.not(small.buffer, large.buffer)
  t.true(small.buffer.byteLength <= 64 * 1024)
})

test('codec - the frame reader reassembles frames split anywhere', t => {
  const frames = [[FrameType.ACK, 1], [FrameType.REPLY, 2, 'x'.repeat(1000)], [FrameType.CALL, 3, 'f', [1, 2], 100, 1]]
  const bytes = Buffer.concat(frames.map(f => encodeFrame(f)))
  // 7: pieces of frames; 1000: whole frames then a piece; all: whole frames only.
  for (const size of [7, 1000, bytes.length]) {
    const reader = new FrameReader(1 << 20)
    const out: unknown[] = []
    for (let i = 0; i < bytes.length; i += size) reader.push(bytes.subarray(i, i + size), frame => { out.push(frame) })
    t.deepEqual(out, frames, `chunks of ${size}`)
    t.is(reader.pending, 0)
  }
})

test('codec - bad bytes give BAD_FRAME, never a crash', t => {
  const tooLong = Buffer.alloc(8)
  tooLong.writeUInt32BE(1 << 30, 0)
  t.throws(() => new FrameReader(1 << 20).push(tooLong, () => {}), { code: 'BAD_FRAME', message: /above the limit/ })
  const garbage = Buffer.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1])
  t.throws(() => new FrameReader(1 << 20).push(garbage, () => {}), { code: 'BAD_FRAME' })
  const notArray = encodeFrame(['just a string'] as unknown[]).subarray(0)
  notArray[4] = 0xa1 // fixstr of length 1 instead of an array
  t.throws(() => new FrameReader(1 << 20).push(notArray, () => {}), { code: 'BAD_FRAME' })
  // A Float32Array whose bytes are not whole elements (ext 0x74, kind 7, 7 bytes), in a
  // body small enough for the small-tree reader; it had escaped as a bare RangeError.
  const ragged = Uint8Array.from([0x93, FrameType.REPLY, 9, 0xc7, 8, 0x74, 7, 1, 2, 3, 4, 5, 6, 7])
  for (const copy of [false, true]) t.throws(() => decodeFrameBody(ragged, copy), { code: 'BAD_FRAME', message: /multiple of 4/ })
  const sound = encodeFrame([FrameType.REPLY, 10, new Float32Array([1.5, -2])]).subarray(HEADER_BYTES)
  t.deepEqual(decodeFrameBody(sound), [FrameType.REPLY, 10, new Float32Array([1.5, -2])])
})
