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
import { Uint8ArrayList } from 'uint8arraylist'

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
