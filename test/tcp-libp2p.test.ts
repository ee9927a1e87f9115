import test from 'ava'
import { createHash } from 'node:crypto'
import '../src/transports/tcp/polyfill.js'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Connection, Stream } from '@libp2p/interface'
import { YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import { quietNoiseLengths } from '../src/transports/tcp/noise-length.js'
import { lazyWindowUpdates } from '../src/transports/tcp/window-updates.js'
import { oneWritePerMessage } from '../src/transports/tcp/corked-writes.js'

const PROTOCOL = '/cohort-test/echo/1.0.0'

async function node (listen: string[]): Promise<Libp2p> {
  return await createLibp2p({ addresses: { listen }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
}

function lengthReaderOf (connection: Connection): { name: string } {
  return (connection as any).muxer.maConn.decoder.lengthDecoder
}

/** Sizes from one byte to several Noise messages (65,535 bytes each), so prefixes fall anywhere in a socket read. */
const SIZES = [1, 2, 3, 17, 100, 1_000, 65_517, 65_518, 65_535, 65_536, 70_000, 200_001, 1_000_003]

test('tcp - Noise reads its lengths without an exception per message; messages of every size arrive whole', async t => {
  const server = await node(['/ip4/127.0.0.1/tcp/0'])
  const client = await node([])
  t.teardown(async () => { await Promise.all([client.stop(), server.stop()]) })
  const inbound: Connection[] = []
  await server.handle(PROTOCOL, (stream: Stream, connection: Connection) => {
    inbound.push(connection)
    t.true(quietNoiseLengths(connection), 'the inbound connection has the shape expected of Noise')
    stream.addEventListener('message', evt => { stream.send(evt.data) })
  })
  const connection = await client.dial(server.getMultiaddrs()[0], { signal: AbortSignal.timeout(10_000) })
  t.is(lengthReaderOf(connection).name, 'uint16BEDecode', 'before: Noise\'s own reader')
  t.true(quietNoiseLengths(connection))
  t.is(lengthReaderOf(connection).name, 'uint16BE')
  t.false(quietNoiseLengths(connection), 'a second call finds it done and changes nothing')

  const stream = await connection.newStream(PROTOCOL, { signal: AbortSignal.timeout(10_000) })
  stream.maxReadBufferLength = 64 * 1024 * 1024
  const sent = createHash('sha256')
  const echoed = createHash('sha256')
  let total = 0
  let received = 0
  const done = new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', evt => {
      echoed.update(evt.data.subarray())
      received += evt.data.byteLength
      if (received === total) resolve()
      if (received > total) reject(new Error(`${received} bytes came back of ${total} sent`))
    })
    stream.addEventListener('close', () => { reject(new Error('stream closed')) })
  })
  for (let round = 0; round < 3; round++) {
    for (const size of SIZES) {
      const bytes = new Uint8Array(size)
      for (let i = 0; i < size; i += 97) bytes[i] = (i + size + round) & 0xff
      sent.update(bytes)
      total += size
      if (!stream.send(bytes)) await stream.onDrain({ signal: AbortSignal.timeout(10_000) })
    }
  }
  await Promise.race([done, new Promise((_resolve, reject) => setTimeout(() => { reject(new Error(`only ${received} of ${total} bytes in 30 s`)) }, 30_000).unref())])
  t.is(received, total)
  t.is(echoed.digest('hex'), sent.digest('hex'), 'the same bytes, in order')
  t.is(inbound.length, 1)
  t.is(lengthReaderOf(inbound[0]).name, 'uint16BE')
})

test('tcp - a decoder that is not Noise\'s keeps its own length reader', t => {
  function varint (): number { return 0 }
  const other = { muxer: { maConn: { decoder: { lengthDecoder: varint, encodingLength: () => 1, maxDataLength: 1 << 22 } } } }
  t.false(quietNoiseLengths(other as unknown as Connection))
  t.is(other.muxer.maConn.decoder.lengthDecoder, varint)
  t.false(quietNoiseLengths({} as unknown as Connection), 'no muxer: nothing to do')
})

/**
 * Counts the window updates js-yamux itself considers sending on the streams in `streams`
 * (other tests of this file run at the same time): lazyWindowUpdates keeps the
 * prototype's method as the eager one and calls it only when an update is due.
 */
function countEagerUpdates (t: any, streams: WeakSet<object>): { count: number } {
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: () => void }
  const original = proto.sendWindowUpdate
  const counter = { count: 0 }
  proto.sendWindowUpdate = function (this: object): void {
    if (streams.has(this)) counter.count++
    original.call(this)
  }
  t.teardown(() => { proto.sendWindowUpdate = original })
  return counter
}

interface EchoPairOptions {
  /** lazyWindowUpdates on both ends of the stream. */
  lazy?: boolean
  /** oneWritePerMessage on both ends of the connection (twice on the client's). */
  cork?: boolean
  /** Collects both ends' streams. */
  streams?: WeakSet<object>
}

/** A client and a server node with one echo stream; `send` waits for the echo and checks every byte so far. */
async function echoPair (t: any, options: EchoPairOptions = {}): Promise<{ send: (bytes: Uint8Array) => Promise<void>, applied: boolean[], connection: Connection }> {
  const server = await node(['/ip4/127.0.0.1/tcp/0'])
  const client = await node([])
  t.teardown(async () => { await Promise.all([client.stop(), server.stop()]) })
  const applied: boolean[] = []
  await server.handle(PROTOCOL, (stream: Stream, connection: Connection) => {
    options.streams?.add(stream)
    if (options.lazy === true) applied.push(lazyWindowUpdates(stream))
    if (options.cork === true) applied.push(oneWritePerMessage(connection))
    stream.addEventListener('message', evt => { stream.send(evt.data) })
  })
  const connection = await client.dial(server.getMultiaddrs()[0], { signal: AbortSignal.timeout(10_000) })
  if (options.cork === true) applied.push(oneWritePerMessage(connection), oneWritePerMessage(connection))
  const stream = await connection.newStream(PROTOCOL, { signal: AbortSignal.timeout(10_000) })
  options.streams?.add(stream)
  if (options.lazy === true) applied.push(lazyWindowUpdates(stream))
  stream.maxReadBufferLength = 64 * 1024 * 1024
  const echoed = createHash('sha256')
  let expected = 0
  let received = 0
  let wake = (): void => {}
  stream.addEventListener('message', evt => {
    echoed.update(evt.data.subarray())
    received += evt.data.byteLength
    if (received >= expected) wake()
  })
  const sent = createHash('sha256')
  return {
    applied,
    connection,
    send: async bytes => {
      sent.update(bytes)
      expected += bytes.byteLength
      const back = new Promise<void>((resolve, reject) => {
        wake = resolve
        setTimeout(() => { reject(new Error(`${received} of ${expected} bytes back after 20 s`)) }, 20_000).unref()
      })
      if (!stream.send(bytes)) await stream.onDrain({ signal: AbortSignal.timeout(10_000) })
      await back
      t.is(received, expected)
      t.is(echoed.copy().digest('hex'), sent.copy().digest('hex'))
    }
  }
}

test('tcp - yamux window updates wait until 64 KiB is owed; small messages and large ones still flow', async t => {
  const streams = new WeakSet<object>()
  const updates = countEagerUpdates(t, streams)
  const lazy = await echoPair(t, { lazy: true, streams })
  t.deepEqual(lazy.applied, [true, true], 'both ends of the stream')
  updates.count = 0
  // 300 echoes of 100 bytes: 30 KB each way, under the 64 KiB owed before an update.
  for (let i = 0; i < 300; i++) await lazy.send(new Uint8Array(100).fill(i & 0xff))
  t.is(updates.count, 0, 'no window update for 300 small frames')
  // Past 64 KiB each way: updates go again, and a message many windows long gets through.
  for (let i = 0; i < 400; i++) await lazy.send(new Uint8Array(100).fill(i & 0xff))
  t.true(updates.count > 0 && updates.count <= 4, `a few updates once 64 KiB was owed (${updates.count})`)
  await lazy.send(new Uint8Array(3 * 1024 * 1024 + 17).fill(7))
  await lazy.send(new Uint8Array(5).fill(1))

  // The same traffic without it: one update per frame received.
  const eager = await echoPair(t, { streams })
  updates.count = 0
  for (let i = 0; i < 300; i++) await eager.send(new Uint8Array(100).fill(i & 0xff))
  t.true(updates.count >= 600, `js-yamux's own: an update per frame each way (${updates.count})`)
})

test('tcp - a stream that is not yamux\'s keeps its window updates', t => {
  t.false(lazyWindowUpdates({} as unknown as Stream))
})

/** Counts the socket's writes to the kernel: Node's `_write` (one buffer) and `_writev` (several at once). */
function countSocketWrites (connection: Connection): { writes: number } {
  const socket = (connection as any).muxer.maConn.stream.socket
  const counter = { writes: 0 }
  const one = socket._write
  const many = socket._writev
  socket._write = function (...args: unknown[]) { counter.writes++; return one.apply(this, args) }
  socket._writev = function (...args: unknown[]) { counter.writes++; return many.apply(this, args) }
  return counter
}

test('tcp - a small Noise message leaves in one socket write, not two; messages of every size arrive whole', async t => {
  const corked = await echoPair(t, { cork: true })
  // The client's two calls and the server's one (which may come after them).
  t.deepEqual([...corked.applied].sort(), [false, true, true], 'both ends; a second call on a connection changes nothing')
  const corkedCount = countSocketWrites(corked.connection)
  for (let i = 0; i < 200; i++) await corked.send(new Uint8Array(64).fill(i & 0xff))
  const corkedWrites = corkedCount.writes
  for (const size of SIZES) await corked.send(new Uint8Array(size).fill(size & 0xff))

  const plain = await echoPair(t)
  const plainCount = countSocketWrites(plain.connection)
  for (let i = 0; i < 200; i++) await plain.send(new Uint8Array(64).fill(i & 0xff))
  t.log(`socket writes for 200 messages of 64 B: ${corkedWrites} corked, ${plainCount.writes} as @libp2p/tcp writes them`)
  // Each message and each window update js-yamux sends back is one Noise message: one write corked, two plain.
  t.true(plainCount.writes >= 1.9 * corkedWrites, `${plainCount.writes} plain against ${corkedWrites} corked`)
  t.true(corkedWrites >= 200 && corkedWrites <= 400, `${corkedWrites}`)
})

test('tcp - a connection that is not over @libp2p/tcp keeps its writes', t => {
  t.false(oneWritePerMessage({} as unknown as Connection))
  const notTcp = { muxer: { maConn: { stream: { sendData: () => ({ sentBytes: 0, canSendMore: true }) } } } }
  t.false(oneWritePerMessage(notTcp as unknown as Connection), 'no socket')
})
