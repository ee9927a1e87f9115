/**
 * How typed arrays go into and come out of a msgpack body. The wire form is msgpackr's
 * (`moreTypes`), and a Buffer is msgpack bin:
 *
 * ```
 *  ext 0x74 ('t')  [ kind code (0 Int8 ... 10 BigUint64, 16 ArrayBuffer, 17 DataView), raw bytes ]
 *  bin             [ raw bytes ]                                   (a Buffer)
 * ```
 *
 * Both of msgpackr's directions ask a typed array for its `.buffer`, and for a small array
 * (64 bytes or less, which V8 keeps on its heap) that makes V8 move the array off its heap
 * into an ArrayBuffer of its own.
 *
 * Writing: a Uint8Array or Buffer is written here instead, byte for byte as msgpackr writes
 * it (bin, or ext 0x74 kind 1 for a Uint8Array when the Packr has `moreTypes`), straight
 * from the array: a self-call with a 64-byte argument went from 9.1–9.3 to 6.5–7.4 µs
 * (bench/rpc/self-calls.ts, three interleaved runs). A subclass of Uint8Array other than
 * Buffer goes as a Uint8Array (msgpackr wrote a kind code no reader knows). Other kinds
 * are msgpackr's.
 *
 * Reading: msgpackr's reader copies the bytes with slice() and then asks the copy for its
 * `.buffer`, the largest single cost of decoding a call with a 64-byte argument (0.8 µs of
 * 7.4 per self-call in a CPU profile). This reader copies into a new array of the right
 * kind directly (still a copy: nothing refers to the body's memory, which the shm ring
 * reuses) and takes the ArrayBuffer route only where msgpackr would have to as well: an
 * ArrayBuffer or DataView, or bytes not aligned for their kind. The values are the same:
 * an array of the sent kind over a buffer of its own, offset 0, exact length.
 */
import { addExtension } from 'msgpackr'

export const TYPED_ARRAY_EXTENSION = 0x74
/** In msgpackr's order of kind codes. */
export const KINDS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array]
export const UINT8_ARRAY = KINDS.indexOf(Uint8Array)
const ARRAY_BUFFER = 16
const DATA_VIEW = 17

/** What msgpackr hands an extension's `pack` to reserve room: `size` bytes at `position` of `target`. */
type Reserve = (size: number) => { target: Uint8Array, position: number }

/**
 * Replaces msgpackr's reader of ext 0x74 and its writer of Uint8Array and Buffer (they
 * apply to every Packr).
 */
export function registerTypedArrays (): void {
  // One registration for both: msgpackr keeps one reader per type, and a later extension
  // of the same type without `unpack` would replace it. msgpackr calls `pack` with a
  // reserve function (its types say pack takes only the value).
  const extension = { Class: Uint8Array, type: TYPED_ARRAY_EXTENSION, pack: writeBytes, unpack: readTypedArray }
  addExtension(extension as unknown as Parameters<typeof addExtension>[0])
}

/**
 * msgpackr's `pack` of an extension, with the Packr as `this`: a Packr without `moreTypes`
 * (the canonical encoders of signed bytes, say) writes every Uint8Array as bin, as
 * msgpackr does; the bytes must stay exactly msgpackr's for signatures to verify.
 */
export function writeBytes (this: { moreTypes?: boolean }, value: Uint8Array, reserve: Reserve): void {
  const kind = this.moreTypes !== true || Buffer.isBuffer(value) ? undefined : UINT8_ARRAY
  const { target, position } = reserve(bytesHeaderSize(value.byteLength, kind) + value.byteLength)
  target.set(value, writeBytesHeader(target, position, value.byteLength, kind))
}

/** The size of writeBytesHeader's header for `length` bytes. */
export function bytesHeaderSize (length: number, kind?: number): number {
  const counted = kind === undefined ? length : length + 1
  return (counted < 0x100 ? 2 : counted < 0x10000 ? 3 : 5) + (kind === undefined ? 0 : 2)
}

/**
 * Writes at `at` the msgpack header of `length` raw bytes, as msgpackr writes it: bin
 * without a `kind` (a Buffer, or any Uint8Array for a Packr without `moreTypes`), else ext
 * 0x74 followed by the kind byte (the ext's length counts it). Returns where the bytes go.
 * The one writer of these headers, for msgpackr (writeBytes) and the small-tree codec.
 */
export function writeBytesHeader (target: Uint8Array, at: number, length: number, kind?: number): number {
  const bin = kind === undefined
  const counted = bin ? length : length + 1
  if (counted < 0x100) {
    target[at++] = bin ? 0xc4 : 0xc7
    target[at++] = counted
  } else if (counted < 0x10000) {
    target[at++] = bin ? 0xc5 : 0xc8
    target[at++] = counted >>> 8
    target[at++] = counted & 0xff
  } else {
    target[at++] = bin ? 0xc6 : 0xc9
    target[at++] = counted >>> 24
    target[at++] = (counted >>> 16) & 0xff
    target[at++] = (counted >>> 8) & 0xff
    target[at++] = counted & 0xff
  }
  if (!bin) {
    target[at++] = TYPED_ARRAY_EXTENSION
    target[at++] = kind
  }
  return at
}

export function readTypedArray (data: Uint8Array): unknown {
  const code = data[0]
  const Kind = KINDS[code]
  const offset = data.byteOffset + 1
  const bytes = data.byteLength - 1
  if (Kind != null && offset % Kind.BYTES_PER_ELEMENT === 0 && bytes % Kind.BYTES_PER_ELEMENT === 0) {
    // A view of the body, then a copy of the same kind (slice() keeps the kind of a plain typed array).
    return new Kind(data.buffer as ArrayBuffer, offset, bytes / Kind.BYTES_PER_ELEMENT).slice()
  }
  const buffer = Uint8Array.prototype.slice.call(data, 1).buffer
  if (Kind != null) return new Kind(buffer)
  if (code === ARRAY_BUFFER) return buffer
  if (code === DATA_VIEW) return new DataView(buffer)
  throw new Error(`typed array of unknown kind ${String(code)}`)
}
