/**
 * The one compliance suite every transport passes (tcp, shm; the rdma arm is a stub and
 * has no links of its own). Each test opens a link from this process to the far end in
 * a child process (test/fixtures/link-peer.ts), which echoes frames back.
 *
 * ```ts
 * import test from 'ava'
 * transportCompliance(test, 'shm', openShmLink)
 * ```
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ExecutionContext, TestFn } from 'ava'
import { encodeFrame } from '../../src/codec/frame.js'
import type { Link } from '../../src/transports/transport.js'

const LINK_PEER = fileURLToPath(new URL('../fixtures/link-peer.js', import.meta.url))

export interface FarEnd {
  child: ChildProcess
  link: Link
  status: () => Promise<{ alive: boolean, closes: number, lastReason?: string, shm?: Record<string, unknown> }>
  kill: () => Promise<void>
}

/** Starts the far end (`args`: its ring size for shm) and returns its first message (`ready`). */
export async function startFarEnd (kind: string, ...args: string[]): Promise<{ child: ChildProcess, ready: any }> {
  const child = fork(LINK_PEER, [kind, ...args], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const ready = await new Promise<any>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('link peer did not start in 60 s')) }, 60_000)
    child.once('message', msg => { clearTimeout(timer); resolve(msg) })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`link peer exited with ${String(code)}`)) })
  })
  return { child, ready }
}

export function farEnd (child: ChildProcess, link: Link): FarEnd {
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  return {
    child,
    link,
    status: async () => await new Promise((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('no status from the link peer in 10 s')) }, 10_000)
      child.once('message', msg => { clearTimeout(timer); resolve(msg as any) })
      child.send({ op: 'status' })
    }),
    kill: async () => {
      if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL')
      await exited
    }
  }
}

/** Collects frames and the close of a link. */
function watch (link: Link): { frames: unknown[][], closed: Promise<Error | undefined>, next: (n: number) => Promise<unknown[][]> } {
  const frames: unknown[][] = []
  let waiter: { n: number, resolve: () => void } | undefined
  let closedResolve!: (reason: Error | undefined) => void
  const closed = new Promise<Error | undefined>(resolve => { closedResolve = resolve })
  link.onFrame = frame => {
    frames.push(frame)
    if (waiter != null && frames.length >= waiter.n) waiter.resolve()
  }
  link.onClose = reason => { closedResolve(reason) }
  return {
    frames,
    closed,
    next: async n => {
      if (frames.length < n) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => { reject(new Error(`only ${frames.length} of ${n} frames in 60 s`)) }, 60_000)
          waiter = { n, resolve: () => { clearTimeout(timer); resolve() } }
        })
      }
      return frames
    }
  }
}

/**
 * Sends a frame of `bytes` bytes, then a small one, over `link` to an echoing far end, and
 * checks both come back: the large one byte for byte (ava's deepEqual gives up on tens of
 * MiB), the small one after it.
 */
export async function echoesLarge (t: ExecutionContext, link: Link, bytes: number): Promise<void> {
  const w = watch(link)
  const big = new Uint8Array(bytes)
  for (let i = 0; i < big.length; i += 4093) big[i] = i & 0xff
  link.send(encodeFrame([100, 1, big]))
  link.send(encodeFrame([100, 2, 'after']))
  const frames = await w.next(2)
  const echoed = frames[0][2] as Uint8Array
  t.is(echoed.byteLength, big.byteLength)
  t.true(Buffer.from(echoed.buffer, echoed.byteOffset, echoed.byteLength).equals(big))
  t.is(frames[1][2], 'after')
}

async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what} within ${ms} ms`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

export function transportCompliance (test: TestFn, name: string, open: () => Promise<FarEnd>): void {
  test(`${name} compliance - frames arrive whole and in order`, async t => {
    const end = await open()
    t.teardown(end.kill)
    const w = watch(end.link)
    for (let i = 0; i < 2000; i++) end.link.send(encodeFrame([100, i, 'x'.repeat(i % 97)]))
    const frames = await w.next(2000)
    t.deepEqual(frames.map(f => f[1]), Array.from({ length: 2000 }, (_, i) => i))
    t.true(frames.every((f, i) => f[2] === 'x'.repeat(i % 97)))
  })

  test(`${name} compliance - large messages (4 MiB, 64 times the shm test ring) cross intact`, async t => {
    const end = await open()
    t.teardown(end.kill)
    await echoesLarge(t, end.link, 4 * 1024 * 1024)
  })

  test(`${name} compliance - close ends the link on both sides, once`, async t => {
    const end = await open()
    t.teardown(end.kill)
    const w = watch(end.link)
    end.link.send(encodeFrame([100, 1]))
    await w.next(1)
    let closes = 0
    const onClose = end.link.onClose
    end.link.onClose = reason => { closes++; onClose(reason) }
    end.link.close()
    end.link.close()
    await within(w.closed, 10_000, 'our onClose')
    t.false(end.link.open)
    t.throws(() => { end.link.send(encodeFrame([100, 2])) }, { message: /closed/ })
    for (let i = 0; i < 40 && (await end.status()).closes === 0; i++) await new Promise(resolve => setTimeout(resolve, 100))
    t.is((await end.status()).closes, 1)
    t.is(closes, 1)
  })

  test(`${name} compliance - the far end's death (SIGKILL) closes the link`, async t => {
    const end = await open()
    t.teardown(end.kill)
    const w = watch(end.link)
    end.link.send(encodeFrame([100, 1]))
    await w.next(1)
    await end.kill()
    await within(w.closed, 15_000, 'onClose after SIGKILL')
    t.false(end.link.open)
  })

  test(`${name} compliance - bad bytes close the link, the far end lives on`, async t => {
    const end = await open()
    t.teardown(end.kill)
    const w = watch(end.link)
    // A frame header promising 3 bytes of msgpack, then bytes msgpack never uses.
    end.link.send(new Uint8Array([0, 0, 0, 3, 0xc1, 0xc1, 0xc1]))
    await within(w.closed, 15_000, 'the link closing after bad bytes')
    const status = await end.status()
    t.true(status.alive)
    t.regex(status.lastReason ?? '', /msgpack|BAD_FRAME|frame/i)
  })
}
