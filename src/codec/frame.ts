/**
 * The one frame codec. A frame on the wire is a 4-byte big-endian body length followed
 * by a msgpack body, an array whose first element is the frame type:
 *
 * ```
 *  0        4                                          4 + length
 *  +--------+------------------------------------------+
 *  | length | msgpack [type, ...fields]                |
 *  +--------+------------------------------------------+
 * ```
 *
 * ```ts
 * const bytes = encodeFrame([FrameType.ACK, 7])
 * const reader = new FrameReader(1 << 20)
 * reader.push(bytes, frame => { console.log(frame) }) // [6, 7]
 * ```
 */
import { Packr, RESERVE_START_SPACE } from 'msgpackr'
import { Uint8ArrayList } from 'uint8arraylist'
import { RpcError } from '../errors/rpc-error.js'
import { adoptTensors } from '../tensor/tensor.js'
import { registerTensorExtension } from './tensor-extension.js'
import { registerTypedArrays } from './typed-arrays.js'
import { MetObjects } from './met-objects.js'
import { readSmallTree, writeSmallTree } from './small-tree.js'
import * as outOfBand from './out-of-band.js'

export const PROTOCOL_VERSION = 1

export const FrameType = {
  /** [HELLO, HelloBody]: first frame each side sends on a link. */
  HELLO: 1,
  /** [GOODBYE, code, message]: the sender refuses or ends the link. */
  GOODBYE: 2,
  /** [CALL, id, fn, args, timeoutMs, lowWater]: lowWater = every id below it has ended for the caller. */
  CALL: 3,
  /** [REPLY, id, value] */
  REPLY: 4,
  /** [ERROR, id, code, name, message, stack] */
  ERROR: 5,
  /** [ACK, id]: the callee holds the call and is still working on it. */
  ACK: 6,
  /** [SHM_OFFER, socketName, token]: over tcp only; attach to our segment (transports/shm). */
  SHM_OFFER: 7,
  /** [PING, nonce, padding?]: a latency probe of the bandit; answered on the same link. */
  PING: 8,
  /** [PONG, nonce] */
  PONG: 9,
  /** [GOSSIP, message]: membership gossip between neighbours (see cohort/membership/membership.ts). */
  GOSSIP: 10,
  /** [FORWARD, source, destination, hopsLeft, innerFrame, signature, sourceRecord]: a frame relayed towards a peer with no direct link (see router/forwarder.ts). */
  FORWARD: 11,
  /** [ARENA_FREE, arenaId, offset...]: over shm only; the receiver is done with these blocks of the sender's arena (transports/shm/arena.ts). */
  ARENA_FREE: 12,
  /** [ARENA_FRAME, arenaId, [offset, length, ...], splitBody]: over shm only; a frame whose parts lie in the sender's arena, part i at the i-th pair. */
  ARENA_FRAME: 13
} as const

export interface HelloBody {
  /** Protocol version; a peer refuses a major version it does not speak. */
  v: number
  name: string
  /** The libp2p peer id; must equal the id Noise authenticated on this link. */
  peerId: string
  /** Random per process start: tells a restarted peer from a reconnected one. */
  incarnation: string
  /** Addresses the peer listens on, in the form `connect` accepts. */
  addrs: string[]
  /** Transports the peer offers, by canonical name. */
  transports: string[]
  /** Same value on two peers: same boot and uid, so shared memory can be offered (optional). */
  host?: string
}

export const HEADER_BYTES = 4

// structuredClone keeps Map apart from plain objects, Set, Date and cycles; int64AsType
// keeps bigint a bigint; moreTypes carries every typed array as raw bytes.
const BODY_OPTIONS = {
  structuredClone: true,
  mapsAsObjects: false,
  moreTypes: true,
  int64AsType: 'bigint',
  useBigIntExtension: true
} as const
const packr = new Packr(BODY_OPTIONS)
// Applies to every Packr, this one and the next.
registerTensorExtension()
outOfBand.registerOutOfBandExtension()
registerTypedArrays()

/**
 * msgpackr carves each frame out of one buffer and takes a new one of the same size when
 * little is left: 8 KiB by default, one ArrayBuffer allocation per ~60 small frames (0.4 µs
 * a self-call in a CPU profile). 64 KiB makes that ten times rarer; a frame kept for long
 * (a call waiting for its reply) keeps its buffer alive, 64 KiB at most. A frame that
 * outgrew the buffer leaves msgpackr holding one of its size; the next frames get a fresh
 * 64 KiB one instead of being carved out of (and keeping alive) that large buffer.
 */
const PACK_BUFFER_BYTES = 64 * 1024
packr.useBuffer(Buffer.allocUnsafeSlow(PACK_BUFFER_BYTES))

/**
 * The same codec without structured clone, for bodies that are trees (see isTree): there
 * its bytes are the same, and it skips what structured clone costs on every pack (a Map,
 * and an entry and an object for every object packed, only to find objects met twice).
 * That was 177 of the ~3,800 bytes a pipelined caller allocated per call, and encoding a
 * call of a 64 B Uint8Array took 0.70 µs with it, 0.61 without (a million encodes, three
 * interleaved runs each).
 */
const treePackr = new Packr({ ...BODY_OPTIONS, structuredClone: false })
treePackr.useBuffer(Buffer.allocUnsafeSlow(PACK_BUFFER_BYTES))

// The same codec for bodies decoded straight out of memory that is reused afterwards (the
// shm ring): byte strings come out as copies, never as views into that memory.
const copyingPackr = new Packr({ ...BODY_OPTIONS, copyBuffers: true })

export interface EncodeOptions {
  /**
   * Large byte values go beside the frame, not into it (see out-of-band.ts): the frame
   * that comes back may be a split frame, which only `Link.outOfBand` links take as it
   * is; the caller must seal it before keeping it and release it when done. Calls and
   * replies use this; nothing else needs to.
   */
  outOfBand?: boolean
}

/** Encodes one frame body as header + body bytes, ready for a link. */
export function encodeFrame (body: unknown[], options?: EncodeOptions): Uint8Array {
  const small = writeSmallTree(body, HEADER_BYTES)
  if (small != null) return small
  const adopted = adoptTensors(body) as unknown[]
  if (options?.outOfBand !== true) return encodeInline(adopted)
  const parts: Uint8Array[] = []
  const split = outOfBand.splitParts(adopted, parts)
  const frame = encodeInline(split)
  if (parts.length > 0) outOfBand.recordSplit(frame, parts)
  return frame
}

function encodeInline (body: unknown): Uint8Array {
  // msgpackr leaves HEADER_BYTES free in front of the body, so the header is written in
  // place and a large body is not copied again. Other libraries' tensors go as ours.
  const packer = isTree(body) ? treePackr : packr
  const frame = packer.pack(body, RESERVE_START_SPACE | HEADER_BYTES)
  const length = frame.byteLength - HEADER_BYTES
  frame[0] = length >>> 24
  frame[1] = (length >>> 16) & 0xff
  frame[2] = (length >>> 8) & 0xff
  frame[3] = length & 0xff
  if (frame.buffer.byteLength > PACK_BUFFER_BYTES) packer.useBuffer(Buffer.allocUnsafeSlow(PACK_BUFFER_BYTES))
  return frame
}

/** Objects a tree may hold; larger bodies take the structured codec without looking further. */
const MAX_TREE_OBJECTS = 32
const MAX_TREE_DEPTH = 8
/** The objects met by the current isTree, for the identity check; emptied after each. */
const met = new MetObjects(MAX_TREE_OBJECTS)

/**
 * True when `body` is a small tree that structured clone would write as it is: arrays
 * and plain objects holding primitives, byte arrays and Dates, no object met twice
 * (shared or cyclic). Anything else (a Map, a Set, an Error, a class, a tensor, a
 * placeholder) is left to the structured codec, which keeps such values as they were.
 */
export function isTree (body: unknown): boolean {
  const tree = treeBelow(body, 0)
  met.clear()
  return tree
}

function treeBelow (value: unknown, depth: number): boolean {
  if (typeof value !== 'object') return typeof value !== 'function'
  if (value === null) return true
  if (!met.first(value)) return false
  const constructor = value.constructor
  if (constructor === Array) {
    if (depth === MAX_TREE_DEPTH) return false
    const array = value as unknown[]
    for (let i = 0; i < array.length; i++) if (!treeBelow(array[i], depth + 1)) return false
    return true
  }
  if (constructor === Object) {
    if (depth === MAX_TREE_DEPTH) return false
    const object = value as Record<string, unknown>
    for (const key in object) if (!treeBelow(object[key], depth + 1)) return false
    return true
  }
  return ArrayBuffer.isView(value) || constructor === ArrayBuffer || constructor === Date
}

const BODY_CODEC: outOfBand.BodyCodec = { encode: encodeInline, decode: bytes => packr.unpack(bytes), header: HEADER_BYTES }

/** The ordinary frame for any frame: a split one gets its bytes put inside (once; see out-of-band.ts). */
export function inlineFrame (frame: Uint8Array): Uint8Array {
  return outOfBand.inlineFrame(frame, BODY_CODEC)
}

/** Before keeping a frame past the code that encoded it: nothing in it refers to the caller's memory afterwards. */
export function sealFrame (frame: Uint8Array): void {
  outOfBand.sealFrame(frame, BODY_CODEC)
}

export { frameBytes, releaseFrame } from './out-of-band.js'

export function decodeValue (bytes: Uint8Array): unknown {
  return packr.unpack(bytes)
}

/**
 * Reassembles frames from the chunks a byte stream delivers and hands each to `onFrame`.
 * Throws `BAD_FRAME` on a length above `maxFrameBytes` or a body that is not msgpack;
 * after a throw the stream is out of step and the link must be closed.
 *
 * A chunk that starts on a frame boundary is decoded where it lies; only the bytes of a
 * frame split across chunks are gathered (the common case, one chunk holding whole
 * frames, copies nothing).
 */
export class FrameReader {
  private readonly buffer = new Uint8ArrayList()

  constructor (private readonly maxFrameBytes: number) {}

  /** Bytes held that do not yet make a whole frame. */
  get pending (): number {
    return this.buffer.byteLength
  }

  push (chunk: Uint8Array | Uint8ArrayList, onFrame: (frame: unknown[]) => void): void {
    if (this.buffer.byteLength === 0) {
      // libp2p hands over a list, usually of one array, which subarray() returns as it is.
      const whole = chunk instanceof Uint8Array ? chunk : chunk.subarray()
      const used = this.decodeWhole(whole, onFrame)
      if (used < whole.byteLength) this.buffer.append(whole.subarray(used))
      return
    }
    this.buffer.append(chunk)
    while (this.buffer.byteLength >= HEADER_BYTES) {
      const length = this.checkedLength(this.buffer.getUint32(0))
      if (this.buffer.byteLength < HEADER_BYTES + length) return
      const body = this.buffer.subarray(HEADER_BYTES, HEADER_BYTES + length)
      this.buffer.consume(HEADER_BYTES + length)
      onFrame(decodeFrameBody(body))
    }
  }

  /** Decodes the whole frames at the start of `bytes`; returns how many bytes they took. */
  private decodeWhole (bytes: Uint8Array, onFrame: (frame: unknown[]) => void): number {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    let at = 0
    while (bytes.byteLength - at >= HEADER_BYTES) {
      const length = this.checkedLength(view.getUint32(at))
      if (bytes.byteLength - at < HEADER_BYTES + length) break
      const start = at + HEADER_BYTES
      at = start + length
      onFrame(decodeFrameBody(bytes, false, start, at))
    }
    return at
  }

  private checkedLength (length: number): number {
    if (length > this.maxFrameBytes) {
      throw new RpcError('BAD_FRAME', `frame of ${length} bytes is above the limit of ${this.maxFrameBytes} bytes`)
    }
    return length
  }
}

/**
 * Decodes one frame body (after the header), `body[start, end)`; throws BAD_FRAME. With
 * `copy`, nothing in the result refers to `body`'s memory, so it may be overwritten at
 * once. The bounds spare the readers of rings and sockets a view per frame.
 */
export function decodeFrameBody (body: Uint8Array, copy = false, start = 0, end = body.byteLength): unknown[] {
  let frame: unknown
  try {
    frame = readSmallTree(body, copy, start, end)
    if (frame == null) frame = (copy ? copyingPackr : packr).unpack(asBuffer(start !== 0 || end !== body.byteLength ? body.subarray(start, end) : body))
  } catch (err) {
    throw new RpcError('BAD_FRAME', `frame body is not valid msgpack: ${(err as Error).message}`)
  }
  return checkFrame(frame)
}

/**
 * Decodes the body of a split frame that came over shared memory: each placeholder is
 * turned into a value by `resolve` (a view of the sender's arena), the rest is copied as
 * decodeFrameBody(body, true) does. Throws BAD_FRAME, also for a placeholder `resolve`
 * refuses.
 */
export function decodeSplitFrameBody (body: Uint8Array, resolve: outOfBand.PartResolver): unknown[] {
  let frame: unknown
  try {
    frame = outOfBand.decodeSplitBody(asBuffer(body), bytes => copyingPackr.unpack(bytes), resolve)
  } catch (err) {
    throw new RpcError('BAD_FRAME', `frame body with out-of-band parts is bad: ${(err as Error).message}`)
  }
  return checkFrame(frame)
}

/**
 * msgpackr reads a bin (how a Buffer travels) as a slice or view of the body it is given, of
 * that body's kind: over a Buffer it is a Buffer. Bodies arrive as Buffers from some links
 * and plain Uint8Arrays from others (the shm ring, libp2p's lists), so without this a Buffer
 * argument arrived as either, depending on the transport and the direction.
 */
function asBuffer (body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength)
}

function checkFrame (frame: unknown): unknown[] {
  if (!Array.isArray(frame) || typeof frame[0] !== 'number') {
    throw new RpcError('BAD_FRAME', 'frame body is not an array that starts with a frame type')
  }
  return frame
}
