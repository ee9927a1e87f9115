import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { decodeFrameBody, encodeFrame } from '../src/codec/frame.js'
import { loadShmNative, type RingLayout } from '../src/transports/shm/native.js'
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

/** A segment of 4096-byte rings, torn down with the test: ring 0's producer on one mapping, its consumer on the other. */
function ringPair (t: ExecutionContext): { a: ArrayBuffer, b: ArrayBuffer, layout: RingLayout, producer: RingProducer, consumer: RingConsumer } {
  const { a, b, close } = segment(4096)
  t.teardown(close)
  const layout = native!.layout()
  return { a, b, layout, producer: new RingProducer(a, layout, 0), consumer: new RingConsumer(b, layout, 0, 1 << 20) }
}

const decode = (bytes: Uint8Array, start: number, end: number): unknown[] => decodeFrameBody(bytes, true, start + 4, end)

ring('shm ring - frames of every size wrap around and stream through a small ring intact, in order', t => {
  const { producer, consumer } = ringPair(t)
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
  const { producer, consumer } = ringPair(t)
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
  const { producer, consumer } = ringPair(t)
  const big = encodeFrame([100, randomBytes(10_000)])
  const offset = producer.write(big, 0)
  t.true(offset < big.byteLength)
  producer.publish()
  t.false(producer.waitForRoom())
  t.true(consumer.read(decode, []))
})

ring('shm ring - read space goes back on release(), or at once when a quarter of the ring or a waiting producer asks for it', t => {
  const { b, layout, producer, consumer } = ringPair(t)
  const words = new Int32Array(b, 0, layout.headerBytes / 4)
  const at = (field: number): number => (layout.offRing0 + field) / 4
  const head = (): number => words[at(layout.ringHead)]
  const tail = (): number => words[at(layout.ringTail)]
  const frame = encodeFrame([100, randomBytes(600)]) // about 624 bytes of ring: under a quarter, two are over
  const got: unknown[][] = []
  const send = (): void => {
    t.is(producer.write(frame, 0), frame.byteLength)
    producer.publish()
  }
  // One frame read: its space is not given back until release().
  send()
  t.false(consumer.read(decode, got))
  t.is(tail(), 0)
  t.false(consumer.release())
  t.is(tail(), head())
  // Under a quarter of the ring read and not freed: kept; over a quarter: freed in read.
  send()
  t.false(consumer.read(decode, got))
  t.not(tail(), head())
  send()
  t.false(consumer.read(decode, got))
  t.is(tail(), head())
  // A producer waiting for room (its flag set) gets the space at once, with frames to read
  // or without, and read says to ring its doorbell.
  send()
  words[at(layout.ringWaiting)] = 1
  t.true(consumer.read(decode, got))
  t.is(tail(), head())
  t.is(words[at(layout.ringWaiting)], 0)
  send()
  t.false(consumer.read(decode, got))
  t.not(tail(), head())
  words[at(layout.ringWaiting)] = 1
  t.true(consumer.read(decode, got)) // nothing new to read
  t.is(tail(), head())
  // The whole way round: a full ring, the producer waits, the consumer's read lets it on.
  let offset = 0
  while ((offset = producer.write(frame, offset)) === frame.byteLength) offset = 0
  producer.publish()
  t.false(producer.waitForRoom())
  t.true(consumer.read(decode, got))
  t.true(producer.waitForRoom())
  t.is(producer.write(frame, offset), frame.byteLength)
  producer.publish()
  consumer.read(decode, got)
  t.true(got.length > 10)
  for (const f of got) t.deepEqual(f, got[0])
})

ring('shm ring - garbage in the ring is BAD_FRAME, never a crash', t => {
  const { a, b, layout, producer, consumer } = ringPair(t)
  producer.write(encodeFrame([100, 1]), 0)
  producer.publish()
  // Scribble over the record header: a piece longer than what was published.
  new Uint32Array(a, layout.headerBytes, 1)[0] = 3000
  t.throws(() => consumer.read(decode, []), { instanceOf: Error, message: /corrupt/ })
  const other = new RingConsumer(b, layout, 1, 1 << 20)
  new RingProducer(a, layout, 1).corruptForTest()
  t.throws(() => other.read(decode, []), { message: /corrupt/ })
  // A tail scribbled past head: the producer keeps to the room it knew, then reads the
  // tail again for a frame that does not fit, and finds it corrupt.
  const { a: c, b: d, close: closeSecond } = segment(4096)
  t.teardown(closeSecond)
  const writer = new RingProducer(c, layout, 0)
  new Int32Array(d, layout.offRing0 + layout.ringTail, 1)[0] = 0x40000000
  const frame = encodeFrame([100, randomBytes(600)])
  t.throws(() => { for (let i = 0; i < 8; i++) writer.write(frame, 0) }, { instanceOf: Error, message: /corrupt/ })
})

ring('shm segment - a segment that is not sealed, or not a segment, is refused with the errno named', t => {
  const err = t.throws(() => native!.mapSegment(native!.eventfd()))
  t.regex(String((err as any)?.code), /^E[A-Z]+$/)
  t.throws(() => native!.createSegment(1000), { message: /power of two/ })
  const connectErr = t.throws(() => native!.unixConnect('cohort-shm-00000000000000000000000000000000'))
  t.is((connectErr as any)?.code, 'ECONNREFUSED')
})
