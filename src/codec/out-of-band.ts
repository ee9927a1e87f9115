/**
 * Large byte payloads beside the frame instead of inside it. `encodeFrame(body,
 * { outOfBand: true })` (calls and replies) walks the body like the tensor adoption does;
 * every byte value of at least OOB_THRESHOLD bytes (a Uint8Array, Buffer, ArrayBuffer,
 * other typed array, or the elements of a cpu Tensor) is replaced by a small placeholder
 * that names its index, and its bytes are kept as a view beside the frame: no copy. The
 * frame that comes back is such a "split" frame only when something was that large.
 *
 * ```
 *  split frame (a Uint8Array)           record (beside it, by the frame's identity)
 *  [len][CALL, 7, 'echo', [ ext 'O' [0, Float32Array] ], ...]     parts[0] ──► the caller's bytes
 * ```
 *
 * A split frame's bytes are not a frame any other peer can read. Only a link that says so
 * (`Link.outOfBand`, the shm link: it copies the parts into its arena and sends the body
 * with their places, see transports/shm/arena.ts) takes it as it is; everything else gets
 * `inlineFrame(frame)`: the ordinary frame with the bytes inside, made once (one copy of
 * the payload, as encoding it inline would have cost) and kept.
 *
 * Lifetime, the part that needs care: the parts are views into the caller's memory only
 * until the synchronous code that encoded the frame returns. Whoever keeps a split frame
 * past that must `sealFrame` it first (the shm link seals it by copying into its arena,
 * `inlineFrame` by copying into the inline frame), so a buffer the user changes after
 * `async_()` returned never changes what is sent or resent. Whoever drops a split frame
 * calls `releaseFrame`, which lets the arena blocks it holds for a resend go.
 *
 * ```ts
 * const frame = encodeFrame([FrameType.CALL, id, fn, args, ms, low], { outOfBand: true })
 * router.send(peer, frame)   // shm: arena; tcp: inlineFrame(frame)
 * sealFrame(frame)           // before keeping it (a no-op once sent)
 * releaseFrame(frame)        // when the call ends
 * ```
 */
import { addExtension } from 'msgpackr'
import { Tensor, isPlainObject } from '../tensor/tensor.js'
import { DTYPES } from '../tensor/dtype.js'
import { tensorFromBytes } from './tensor-extension.js'

/** Byte values at least this large travel out of band where a link can carry them so. */
export const OOB_THRESHOLD = 64 * 1024
export const OOB_EXTENSION_TYPE = 0x4f

/** What a part was, on the wire: the receiver rebuilds the same kind of value over the bytes. */
const KINDS = [
  Uint8Array, Buffer, ArrayBuffer, Int8Array, Uint8ClampedArray, Int16Array, Uint16Array,
  Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array, Tensor
] as const
const KIND_BUFFER = 1
const KIND_ARRAY_BUFFER = 2
const KIND_TENSOR = KINDS.length - 1

/** A placeholder in a split body: part `index`, of kind KINDS[kind]. */
class OutOfBandPart {
  constructor (readonly index: number, readonly kind: number, readonly dtypeCode?: number, readonly shape?: readonly number[]) {}
}

/** Holds a split frame's parts in some memory (an arena) for as long as the frame may be resent. */
export interface PartHolding {
  /** Who holds them (the arena), so a later send through the same one reuses them. */
  readonly owner: object
  /** The frame is dropped: the blocks may go once the peer is done with them too. */
  release: () => void
}

interface SplitRecord {
  /** Each part's bytes: the caller's memory until sealed, afterwards a private copy (arena blocks). */
  parts: Uint8Array[]
  sealed: boolean
  released: boolean
  /** The ordinary frame, once made. */
  inline?: Uint8Array
  holding?: PartHolding
  /** An upper bound of the inline frame's size. */
  inlineBytes: number
}

const records = new WeakMap<Uint8Array, SplitRecord>()
// Safety net: a split frame dropped without releaseFrame still lets its blocks go, when collected.
const dropped = new FinalizationRegistry<SplitRecord>(record => { release(record) })

/** Turns a placeholder back into a value during a decode (see decodeSplitBody). */
export type PartResolver = (index: number, kind: number, dtypeCode: number | undefined, shape: unknown) => unknown

let resolver: PartResolver | undefined

/** Registers the placeholder extension with msgpackr (it applies to every Packr). */
export function registerOutOfBandExtension (): void {
  addExtension({
    Class: OutOfBandPart,
    type: OOB_EXTENSION_TYPE,
    write (part: OutOfBandPart) {
      return part.kind === KIND_TENSOR ? [part.index, part.kind, part.dtypeCode, part.shape] : [part.index, part.kind]
    },
    read (fields: unknown) {
      // Outside a decode that expects parts (any tcp frame), a placeholder is a bad frame.
      if (resolver == null) throw new Error('an out-of-band placeholder where none can be')
      if (!Array.isArray(fields) || fields.length < 2 || !Number.isSafeInteger(fields[0]) || !Number.isSafeInteger(fields[1])) {
        throw new Error('out-of-band placeholder is not [index, kind, ...]')
      }
      return resolver(fields[0], fields[1], typeof fields[2] === 'number' ? fields[2] : undefined, fields[3])
    }
  })
}

/**
 * `body` with every large byte value replaced by a placeholder, and their bytes in
 * `parts`; `body` itself when nothing was large. Only arrays and plain objects are
 * walked (as the tensor adoption does); bytes inside a Map or Set stay inline.
 */
export function splitParts (body: unknown[], parts: Uint8Array[]): unknown[] {
  return walk(body, { parts }, 0) as unknown[]
}

interface Walk {
  parts: Uint8Array[]
  /** Values met before and what they became; made only once there is something to remember (most bodies are small and flat). */
  seen?: Map<object, unknown>
}

function walk (value: unknown, state: Walk, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value
  const known = state.seen?.get(value)
  if (known !== undefined) return known
  let out: unknown = value
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    if (value.byteLength < OOB_THRESHOLD) return value
    out = placeholder(value, state.parts)
  } else if (value instanceof Tensor) {
    if (value.device !== 'cpu' || value.data.byteLength < OOB_THRESHOLD) return value
    const data = value.data
    state.parts.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    out = new OutOfBandPart(state.parts.length - 1, KIND_TENSOR, DTYPES[value.dtype].code, value.shape)
  } else if (depth < 64 && Array.isArray(value)) {
    // Containers below the frame's own two levels may be shared or cyclic: remember them.
    if (depth >= 2) (state.seen ??= new Map()).set(value, value)
    let copy: unknown[] | undefined
    for (let i = 0; i < value.length; i++) {
      const next = walk(value[i], state, depth + 1)
      if (next !== value[i]) (copy ??= value.slice())[i] = next
    }
    out = copy ?? value
  } else if (depth < 64 && isPlainObject(value)) {
    if (depth >= 2) (state.seen ??= new Map()).set(value, value)
    let copy: Record<string, unknown> | undefined
    for (const key in value) {
      const item = value[key]
      const next = walk(item, state, depth + 1)
      if (next !== item) (copy ??= { ...value })[key] = next
    }
    out = copy ?? value
  } else {
    return value
  }
  // The same value met twice is one part (and one placeholder, which msgpackr shares).
  if (out !== value || state.seen != null) (state.seen ??= new Map()).set(value, out)
  return out
}

function placeholder (value: ArrayBufferView | ArrayBuffer, parts: Uint8Array[]): unknown {
  const kind = Buffer.isBuffer(value) ? KIND_BUFFER : KINDS.indexOf(value.constructor as any)
  // A subclass or a DataView: left to msgpackr, inline.
  if (kind < 0 || kind === KIND_TENSOR) return value
  parts.push(value instanceof ArrayBuffer ? new Uint8Array(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength))
  return new OutOfBandPart(parts.length - 1, kind)
}

/** Remembers `frame` as a split frame whose parts are `parts`. */
export function recordSplit (frame: Uint8Array, parts: Uint8Array[]): void {
  let bytes = frame.byteLength
  for (const part of parts) bytes += part.byteLength + 32
  const record: SplitRecord = { parts, sealed: false, released: false, inlineBytes: bytes }
  records.set(frame, record)
  dropped.register(frame, record)
}

/** True for a frame whose large bytes are beside it (see above). */
export function isSplitFrame (frame: Uint8Array): boolean {
  return records.has(frame)
}

/** The frame's size as it would travel inline (an upper bound for a split frame): what frame limits are checked against. */
export function frameBytes (frame: Uint8Array): number {
  return records.get(frame)?.inlineBytes ?? frame.byteLength
}

/** The parts of a split frame, and who holds them now. Undefined for an ordinary frame or one that went inline. */
export function partsOf (frame: Uint8Array): { parts: Uint8Array[], holding?: PartHolding } | undefined {
  const record = records.get(frame)
  if (record == null || (record.inline != null && record.holding == null)) return undefined
  if (record.released) throw new Error('a released frame was sent')
  return record
}

/**
 * The parts now live in `holding` (copied there; `parts` are views of that copy): the
 * frame is sealed. A previous holding is let go.
 */
export function moveParts (frame: Uint8Array, parts: Uint8Array[], holding: PartHolding): void {
  const record = records.get(frame)
  if (record == null) return
  const old = record.holding
  record.parts = parts
  record.holding = holding
  record.sealed = true
  old?.release()
}

/** How frame.ts packs and unpacks a body, handed in so this module has no codec of its own. */
export interface BodyCodec {
  /** Header + body bytes of an ordinary frame. */
  encode: (body: unknown) => Uint8Array
  /** A body (without header) to a value; placeholders go through the resolver in force. */
  decode: (body: Uint8Array) => unknown
  header: number
}

/** The ordinary frame, with every part inside: made once, then kept (the frame is sealed from then on). */
export function inlineFrame (frame: Uint8Array, codec: BodyCodec): Uint8Array {
  const record = records.get(frame)
  if (record == null) return frame
  if (record.inline != null) return record.inline
  if (record.released) throw new Error('a released frame was sent')
  const body = decodeSplitBody(frame.subarray(codec.header), codec.decode, (index, kind, dtypeCode, shape) => {
    const part = record.parts[index]
    if (part == null) throw new Error(`no part ${index}`)
    return valueOf(part, kind, dtypeCode, shape)
  })
  const inline = codec.encode(body)
  record.inline = inline
  record.inlineBytes = inline.byteLength
  record.sealed = true
  // The parts are copied into `inline` now; bytes held in an arena stay for a resend
  // through the same arena, until release.
  if (record.holding == null) record.parts = []
  return inline
}

/** Makes sure nothing of the frame refers to the caller's memory any more (see above). */
export function sealFrame (frame: Uint8Array, codec: BodyCodec): void {
  const record = records.get(frame)
  if (record != null && !record.sealed && !record.released) inlineFrame(frame, codec)
}

/** The frame will not be sent again: blocks it holds may be reused once the peer is done too. */
export function releaseFrame (frame: Uint8Array): void {
  const record = records.get(frame)
  if (record == null) return
  release(record)
  dropped.unregister(frame)
}

function release (record: SplitRecord): void {
  if (record.released) return
  record.released = true
  record.parts = []
  record.inline = undefined
  record.holding?.release()
  record.holding = undefined
}

/** Decodes a split body, each placeholder turned into a value by `resolve`. Throws what the decode throws. */
export function decodeSplitBody (body: Uint8Array, decode: (body: Uint8Array) => unknown, resolve: PartResolver): unknown {
  const outer = resolver
  resolver = resolve
  try {
    return decode(body)
  } finally {
    resolver = outer
  }
}

/**
 * The value a part was, over `bytes` without a copy (a Float32Array over them, a Tensor,
 * ...). `bytes` must start aligned for the element type; throws when its length does
 * not fit the kind.
 */
export function valueOf (bytes: Uint8Array, kind: number, dtypeCode: number | undefined, shape: unknown): unknown {
  if (kind === KIND_TENSOR) return tensorFromBytes(dtypeCode, shape, bytes)
  if (kind === KIND_BUFFER) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (kind === KIND_ARRAY_BUFFER) {
    if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer
    return bytes.slice().buffer
  }
  const Kind = KINDS[kind] as unknown as { new (buffer: ArrayBufferLike, offset: number, length: number): unknown, BYTES_PER_ELEMENT: number } | undefined
  if (Kind == null || kind === KIND_TENSOR) throw new Error(`unknown out-of-band kind ${kind}`)
  if (bytes.byteLength % Kind.BYTES_PER_ELEMENT !== 0) throw new Error(`${bytes.byteLength} bytes are not a whole number of ${(Kind as any).name} elements`)
  return new Kind(bytes.buffer, bytes.byteOffset, bytes.byteLength / Kind.BYTES_PER_ELEMENT)
}
