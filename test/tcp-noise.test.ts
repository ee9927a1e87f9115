import test from 'ava'
import { createHash } from 'node:crypto'
import '../src/transports/tcp/polyfill.js'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Connection, Stream } from '@libp2p/interface'
import { quietNoiseLengths } from '../src/transports/tcp/noise-length.js'

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
