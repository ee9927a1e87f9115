/**
 * The framing both bare stacks use: a 4-byte big-endian length, then the message.
 * Replies come back in order on one connection, so a FIFO of waiting calls is the
 * whole "call table" of a bare client.
 *
 * ```
 *  0        4                     4 + length
 *  +--------+---------------------+
 *  | length | message bytes       |
 *  +--------+---------------------+
 * ```
 */
import { createServer, type Server, type Socket } from 'node:net'
import { Uint8ArrayList } from 'uint8arraylist'
import type { EchoClient } from '../harness.js'

export const HEADER_BYTES = 4

/** Header and message in one buffer, so each message is one write. */
export function encodeMessage (message: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(HEADER_BYTES + message.byteLength)
  out.writeUInt32BE(message.byteLength, 0)
  out.set(message, HEADER_BYTES)
  return out
}

/** Cuts a byte stream into whole frames (header included), handing each to `onFrame`. */
export class FrameSplitter {
  private readonly buffer = new Uint8ArrayList()

  constructor (private readonly onFrame: (frame: Uint8Array) => void) {}

  push (chunk: Uint8Array | Uint8ArrayList): void {
    this.buffer.append(chunk)
    while (this.buffer.byteLength >= HEADER_BYTES) {
      const end = HEADER_BYTES + this.buffer.getUint32(0)
      if (this.buffer.byteLength < end) return
      // A view when the frame sits in one chunk (the usual case for small messages); a copy otherwise.
      const frame = this.buffer.subarray(0, end)
      this.buffer.consume(end)
      this.onFrame(frame)
    }
  }
}

interface Waiter {
  resolve: (message: Uint8Array) => void
  reject: (err: Error) => void
}

/** The client half of an in-order echo connection: `call` writes, the next frame back answers it. */
export class OrderedCalls {
  private readonly waiting: Waiter[] = []
  private head = 0
  private failed?: Error
  readonly splitter = new FrameSplitter(frame => { this.answer(frame.subarray(HEADER_BYTES)) })

  constructor (private readonly write: (frame: Uint8Array) => void) {}

  async call (message: Uint8Array): Promise<Uint8Array> {
    if (this.failed != null) throw this.failed
    return await new Promise<Uint8Array>((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      this.write(encodeMessage(message))
    })
  }

  /** Fails every call still waiting, and every later one. */
  fail (err: Error): void {
    this.failed ??= err
    const pending = this.waiting.splice(this.head)
    this.waiting.length = 0
    this.head = 0
    for (const w of pending) w.reject(err)
  }

  private answer (message: Uint8Array): void {
    const waiter = this.waiting[this.head++]
    // Compact now and then rather than shift() on every reply.
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head)
      this.head = 0
    }
    waiter?.resolve(message)
  }
}

/**
 * An echo server of this framing on Node `net`: every message comes back with one write.
 * `listen` binds it (a port or a unix socket path); `close` also ends open connections.
 */
export async function listenEcho (listen: (server: Server, ready: () => void) => void, noDelay: boolean): Promise<{ server: Server, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server = createServer(socket => {
    sockets.add(socket)
    if (noDelay) socket.setNoDelay(true)
    const splitter = new FrameSplitter(frame => { socket.write(frame) })
    socket.on('data', chunk => { splitter.push(chunk) })
    socket.on('error', () => {})
    socket.on('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    listen(server, resolve)
  })
  return {
    server,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}

/** A client of that echo over `socket` (connecting now); calls are answered in order. */
export async function echoClient (socket: Socket, name: string): Promise<EchoClient> {
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const calls = new OrderedCalls(frame => { socket.write(frame) })
  socket.on('data', chunk => { calls.splitter.push(chunk) })
  socket.on('error', err => { calls.fail(err) })
  socket.on('close', () => { calls.fail(new Error(`${name} socket closed`)) })
  return {
    call: async payload => await calls.call(payload),
    close: async () => {
      await new Promise<void>(resolve => { socket.end(resolve) })
      socket.destroy()
    }
  }
}
