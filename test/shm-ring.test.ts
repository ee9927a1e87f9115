import test from 'ava'
import { randomBytes } from 'node:crypto'
import { decodeFrameBody, encodeFrame } from '../src/codec/frame.js'
import { loadShmNative } from '../src/transports/shm/native.js'
import { RingConsumer, RingProducer } from '../src/transports/shm/ring.js'

const native = loadShmNative().addon
const ring = native != null ? test : test.skip

/** One segment mapped twice, as two processes would see it. */
function segment (ringBytes: number): { a: ArrayBuffer, b: ArrayBuffer, close: () => void } {
  if (native == null) throw new Error('no addon')
  const fd = native.createSegment(ringBytes)
  const a = native.mapSegment(fd)
  const b = native.mapSegment(fd)
  native.closeFd(fd)
  return { a, b, close: () => { native.unmapSegment(a); native.unmapSegment(b) } }
}

const decode = (bytes: Uint8Array, start: number, end: number): unknown[] => decodeFrameBody(bytes, true, start + 4, end)

ring('shm ring - frames of every size wrap around and stream through a small ring intact, in order', t => {
  const { a, b, close } = segment(4096)
  t.teardown(close)
  const layout = native!.layout()
  const producer = new RingProducer(a, layout, 0)
  const consumer = new RingConsumer(b, layout, 0, 1 << 20)
  const sent: Uint8Array[] = []
  for (let i = 0; i < 300; i++) sent.push(Uint8Array.from(randomBytes([0, 1, 7, 100, 1000, 3000, 20_000][i % 7])))
  const got: unknown[][] = []
  let pending = sent.map((payload, i) => encodeFrame([100, i, payload]))
  let offset = 0
  for (let rounds = 0; pending.length > 0 && rounds < 100_000; rounds++) {
    offset = producer.write(pending[0], offset)
    if (offset === pending[0].byteLength) { pending = pending.slice(1); offset = 0 }
    producer.publish()
    consumer.read(decode, got)
  }
  consumer.read(decode, got)
  t.is(got.length, sent.length)
  got.forEach((frame, i) => { t.is(frame[1], i); t.deepEqual(frame[2], sent[i]) })
})

ring('shm ring - the sleeping flag: publish says to ring the doorbell once per sleep, never when awake', t => {
  const { a, b, close } = segment(4096)
  t.teardown(close)
  const layout = native!.layout()
  const producer = new RingProducer(a, layout, 0)
  const consumer = new RingConsumer(b, layout, 0, 1 << 20)
  const frame = encodeFrame([100, 1])
  t.true(consumer.sleep(0)) // empty: may sleep
  producer.write(frame, 0)
  t.true(producer.publish()) // took the flag: ring
  producer.write(frame, 0)
  t.false(producer.publish()) // flag already taken: no second ring
  t.false(consumer.sleep(0)) // data waiting: must not sleep
  const got: unknown[][] = []
  consumer.read(decode, got)
  t.is(got.length, 2)
})

ring('shm ring - a full ring: waitForRoom sets the flag and the consumer that frees room says to wake the producer', t => {
  const { a, b, close } = segment(4096)
  t.teardown(close)
  const layout = native!.layout()
  const producer = new RingProducer(a, layout, 0)
  const consumer = new RingConsumer(b, layout, 0, 1 << 20)
  const big = encodeFrame([100, randomBytes(10_000)])
  const offset = producer.write(big, 0)
  t.true(offset < big.byteLength)
  producer.publish()
  t.false(producer.waitForRoom())
  t.true(consumer.read(decode, []))
})

ring('shm ring - read space goes back on release(), or at once when a quarter of the ring or a waiting producer asks for it', t => {
  const { a, b, close } = segment(4096)
  t.teardown(close)
  const layout = native!.layout()
  const producer = new RingProducer(a, layout, 0)
  const consumer = new RingConsumer(b, layout, 0, 1 << 20)
  const words = new Int32Array(b, 0, layout.headerBytes / 4)
  const head = (): number => words[(layout.offRing0 + layout.ringHead) / 4]
  const tail = (): number => words[(layout.offRing0 + layout.ringTail) / 4]
  const frame = encodeFrame([100, randomBytes(600)])
  const got: unknown[][] = []
  // One small frame: read, but its space is not given back until release().
  t.is(producer.write(frame, 0), frame.byteLength)
  producer.publish()
  t.false(consumer.read(decode, got))
  t.is(tail(), 0)
  t.false(consumer.release())
  t.is(tail(), head())
  // The ring filled: reading over a quarter of it gives the space back at once.
  let offset = 0
  while ((offset = producer.write(frame, offset)) === frame.byteLength) offset = 0
  producer.publish()
  t.false(consumer.read(decode, got))
  t.is(tail(), head())
  // Full again and the producer says it waits: read frees the space and says to ring it.
  while ((offset = producer.write(frame, offset)) === frame.byteLength) offset = 0
  producer.publish()
  t.false(producer.waitForRoom())
  t.true(consumer.read(decode, got))
  t.is(tail(), head())
  t.true(producer.waitForRoom())
  t.is(producer.write(frame, offset), frame.byteLength)
  producer.publish()
  consumer.read(decode, got)
  t.true(got.length > 10)
  for (const f of got) t.deepEqual(f, got[0])
})

ring('shm ring - garbage in the ring is BAD_FRAME, never a crash', t => {
  const { a, b, close } = segment(4096)
  t.teardown(close)
  const layout = native!.layout()
  const producer = new RingProducer(a, layout, 0)
  const consumer = new RingConsumer(b, layout, 0, 1 << 20)
  producer.write(encodeFrame([100, 1]), 0)
  producer.publish()
  // Scribble over the record header: a piece longer than what was published.
  new Uint32Array(a, layout.headerBytes, 1)[0] = 3000
  t.throws(() => consumer.read(decode, []), { instanceOf: Error, message: /corrupt/ })
  const other = new RingConsumer(b, layout, 1, 1 << 20)
  new RingProducer(a, layout, 1).corruptForTest()
  t.throws(() => other.read(decode, []), { message: /corrupt/ })
})

ring('shm segment - a segment that is not sealed, or not a segment, is refused with the errno named', t => {
  const err = t.throws(() => native!.mapSegment(native!.eventfd()))
  t.regex(String((err as any)?.code), /^E[A-Z]+$/)
  t.throws(() => native!.createSegment(1000), { message: /power of two/ })
  const connectErr = t.throws(() => native!.unixConnect('cohort-shm-00000000000000000000000000000000'))
  t.is((connectErr as any)?.code, 'ECONNREFUSED')
})
