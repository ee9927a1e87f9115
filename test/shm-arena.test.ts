import test from 'ava'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { tensor, Tensor } from '../src/index.js'
import { decodeFrameBody, encodeFrame, frameBytes, FrameReader, FrameType, HEADER_BYTES, inlineFrame, releaseFrame, sealFrame } from '../src/codec/frame.js'
import { isSplitFrame, OOB_THRESHOLD } from '../src/codec/out-of-band.js'
import { ARENA_ALIGN, ArenaAllocator, IncomingArena } from '../src/transports/shm/arena.js'
import { loadShmNative, type ShmAddon } from '../src/transports/shm/native.js'
import { COLLECT_EVERY_BYTES } from '../src/transports/shm/young-collection.js'

function body (): { args: unknown[], big: Uint8Array, floats: Float32Array, t: Tensor } {
  const big = new Uint8Array(OOB_THRESHOLD + 5).fill(3)
  const floats = new Float32Array(OOB_THRESHOLD).fill(1.5)
  const t = tensor(new Int32Array(OOB_THRESHOLD / 2).fill(-7), [OOB_THRESHOLD / 64, 32])
  return { args: [big, { nested: [floats, 'x'], t, small: new Uint8Array([1, 2]) }, big], big, floats, t }
}

test('codec - a frame with large bytes is split; its inline form decodes to the same values', t => {
  const { args, big, floats } = body()
  const frame = encodeFrame([FrameType.CALL, 1, 'fn', args, 1000, 1], { outOfBand: true })
  t.true(isSplitFrame(frame))
  t.true(frame.byteLength < 1024, `split body of ${frame.byteLength} bytes`)
  const inline = inlineFrame(frame)
  t.false(isSplitFrame(inline))
  t.true(frameBytes(frame) >= inline.byteLength - HEADER_BYTES)
  const plain = encodeFrame([FrameType.CALL, 1, 'fn', args, 1000, 1])
  t.deepEqual(decodeFrameBody(inline.subarray(HEADER_BYTES)), decodeFrameBody(plain.subarray(HEADER_BYTES)))
  const [, , , decoded] = decodeFrameBody(inline.subarray(HEADER_BYTES)) as [number, number, string, any[]]
  t.deepEqual(Array.from(decoded[0] as Uint8Array), Array.from(big))
  t.deepEqual(Array.from(decoded[1].nested[0] as Float32Array), Array.from(floats))
  t.is((decoded[1].t as Tensor).shape.join(), `${OOB_THRESHOLD / 64},32`)
  // The same buffer twice is one value both times.
  t.is(decoded[2], decoded[0])
  // Small frames and frames encoded without the option are ordinary.
  t.false(isSplitFrame(encodeFrame([FrameType.CALL, 2, 'fn', [new Uint8Array(10)], 1000, 1], { outOfBand: true })))
  t.false(isSplitFrame(plain))
})

test('codec - a sealed split frame keeps the bytes as they were when it was sealed', t => {
  const { args, big, floats, t: ten } = body()
  const frame = encodeFrame([FrameType.REPLY, 3, args], { outOfBand: true })
  sealFrame(frame)
  big.fill(9)
  floats.fill(-1)
  ;(ten.data as Int32Array).fill(0)
  const [, , value] = decodeFrameBody(inlineFrame(frame).subarray(HEADER_BYTES)) as [number, number, any[]]
  t.true((value[0] as Uint8Array).every(x => x === 3))
  t.true((value[1].nested[0] as Float32Array).every(x => x === 1.5))
  t.true(((value[1].t as Tensor).data as Int32Array).every(x => x === -7))
  releaseFrame(frame)
  t.throws(() => inlineFrame(frame), { message: /released/ })
})

test('codec - a placeholder in a frame that did not come through an arena is BAD_FRAME', t => {
  const frame = encodeFrame([FrameType.REPLY, 4, new Uint8Array(OOB_THRESHOLD)], { outOfBand: true })
  const reader = new FrameReader(1 << 20)
  t.throws(() => { reader.push(frame, () => {}) }, { code: 'BAD_FRAME' })
})

test('shm arena - the allocator reuses freed blocks first and merges neighbours', t => {
  const arena = new ArenaAllocator(1024 * ARENA_ALIGN)
  const a = arena.alloc(100)
  const b = arena.alloc(ARENA_ALIGN)
  const c = arena.alloc(512 * ARENA_ALIGN)
  t.deepEqual([a, b, c], [0, 2 * ARENA_ALIGN, 3 * ARENA_ALIGN])
  t.is(arena.alloc(600 * ARENA_ALIGN), -1)
  arena.release(b, ARENA_ALIGN)
  t.is(arena.alloc(ARENA_ALIGN), b)
  arena.release(a, 100)
  arena.release(b, ARENA_ALIGN)
  arena.release(c, 512 * ARENA_ALIGN)
  t.is(arena.inUse, 0)
  t.is(arena.largestFree(), 1024 * ARENA_ALIGN)

  // Random traffic: blocks never overlap, never leave the arena, and everything merges back.
  let seed = 7
  const random = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n }
  const live: Array<[number, number]> = []
  for (let i = 0; i < 5000; i++) {
    if (live.length > 0 && random(3) === 0) {
      const [offset, length] = live.splice(random(live.length), 1)[0]
      arena.release(offset, length)
      continue
    }
    const length = 1 + random(40 * ARENA_ALIGN)
    const offset = arena.alloc(length)
    if (offset < 0) continue
    t.true(offset % ARENA_ALIGN === 0 && offset + length <= 1024 * ARENA_ALIGN)
    for (const [o, l] of live) if (offset < o + l && o < offset + length) t.fail(`block ${offset}+${length} overlaps ${o}+${l}`)
    live.push([offset, length])
  }
  for (const [offset, length] of live) arena.release(offset, length)
  t.is(arena.inUse, 0)
  t.is(arena.largestFree(), 1024 * ARENA_ALIGN)
})

const MiB = 1 << 20
const COLLECTION = fileURLToPath(new URL('./fixtures/arena-collection.js', import.meta.url))
const LIFETIME = fileURLToPath(new URL('./fixtures/arena-view-lifetime.js', import.meta.url))
const withAddon = loadShmNative().addon != null ? test : test.skip

withAddon('shm arena - every 32 MiB of received views runs a young collection, dropped views come back, and V8 does not count them', async t => {
  const { stdout } = await promisify(execFile)(process.execPath, [COLLECTION], { timeout: 30_000 })
  const r = JSON.parse(stdout) as { rounds: Array<{ freed: number, young: number }>, late: number, ran: number, heldExternal: number, keptBack: number, fullAsked: number }
  t.is(r.ran, 12 * 16 * MiB / COLLECT_EVERY_BYTES, stdout)
  // A quiet process makes too few objects to run young collections by itself: these are ours.
  t.true(r.rounds.reduce((n, round) => n + round.young, 0) >= r.ran, stdout)
  t.true(r.rounds.reduce((n, round) => n + round.freed, r.late) >= 8, stdout)
  // Counted, four held 16 MiB views would add 64 MiB.
  t.true(r.heldExternal < 16 * MiB, stdout)
  // Views that reached the old generation come back through the full collection the arena
  // asked for (with none asked for, they stay out: young collections cannot free them).
  t.true(r.fullAsked >= 1, stdout)
  t.is(r.keptBack, 5, stdout)
})

withAddon('shm arena - a view\'s block stays taken while its memory lives on elsewhere, and a worker may end holding views', async t => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', LIFETIME], { timeout: 30_000 })
  const r = JSON.parse(stdout) as {
    offsets: { list: number, stream: number, worker: number }, transferList: unknown, byteStream: unknown, toWorker: unknown,
    workerEnd: { before: number, during: number, after: number }
    workerGives: { before: number, afterExit: number, intact: boolean, afterDrop: number }
  }
  // A transfer list moves the memory to the clone: the block waits for the clone.
  t.deepEqual(r.transferList, { detached: true, movedWhole: true, whileMovedHeld: [], afterDrop: [r.offsets.list] }, stdout)
  // A byte stream's enqueue detaches the view; the chunk read holds the memory.
  t.deepEqual(r.byteStream, { detached: true, chunkWhole: true, whileChunkHeld: [], afterDrop: [r.offsets.stream] }, stdout)
  // Moved to another thread: the block comes back once that thread is gone.
  t.deepEqual(r.toWorker, { detached: true, workerSum: 9 * MiB, whileWorkerHolds: [], afterWorkerEnded: [r.offsets.worker] }, stdout)
  // A worker that maps an arena and ends holding views of it (alive, moved, just collected)
  // leaves no mapping behind.
  t.is(r.workerEnd.during, r.workerEnd.before + 1, stdout)
  t.is(r.workerEnd.after, r.workerEnd.before, stdout)
  // A worker that moved a view's memory here and ended: its mapping stays while the memory
  // is held here, intact, and goes after.
  t.deepEqual(r.workerGives, { before: r.workerGives.before, afterExit: r.workerGives.before + 1, intact: true, afterDrop: r.workerGives.before }, stdout)
})

test('shm arena - a full collection is asked for while live views hold over half the arena, less often while they stay', async t => {
  let held = 0
  const bytes = 64 * MiB
  const native = {
    eventfd: () => -1,
    mapArena: () => ({}),
    arenaBytes: () => bytes,
    arenaHeld: () => held,
    arenaView: (_handle: unknown, _offset: number, length: number) => new ArrayBuffer(length),
    Watcher: class { start (): void {} stop (): void {} close (): void {} }
  } as unknown as ShmAddon
  const arena = new IncomingArena(native, -1, 1, () => {})
  const asks = async (views: number): Promise<number> => {
    let n = 0
    for (let i = 0; i < views; i++) {
      const before = arena.fullAsked
      arena.view(0, 8 * MiB)
      if (arena.fullAsked !== before) {
        n++
        await arena.fullAsked
      }
    }
    return n
  }
  held = 40 * MiB // kept views: over half, and still after each collection
  // Looked at every half arena (4 views of 8 MiB), then every arena, then every two.
  t.is(await asks(4), 1)
  t.is(await asks(8), 1)
  t.is(await asks(16), 1)
  held = 8 * MiB // let go: no ask, and back to every half arena
  t.is(await asks(32), 0)
  held = 40 * MiB
  t.is(await asks(4), 1)
})
