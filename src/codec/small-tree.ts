/**
 * The codec of most frames, both ways: a small tree of arrays, plain objects, numbers,
 * short ASCII strings, booleans, null, undefined, byte arrays, other typed arrays and cpu
 * tensors, written as the frame in one pass byte for byte as msgpackr writes it with the
 * body options of frame.ts, and read in one pass as msgpackr reads it (the tests hold the
 * two to msgpackr's bytes and values). Anything else (a Map, a Date, a tensor on another
 * device or another library's tensor, a large or shared value, a long or non-ASCII
 * string; on reading, any byte that is not such a tree) makes it give up, and the frame
 * goes through msgpackr as before.
 *
 * Why: msgpackr's fixed cost per message (its state, its buffer checks, its structure
 * bookkeeping) and, on writing, the three walks before it (tensors, large parts, the tree
 * check, each with a Map or Set of its own for an object) were most of what a small frame
 * cost. A call of a 64-byte Uint8Array took 0.65 µs to encode and 0.44 to decode, its reply
 * 0.47 and 0.35; now 0.27, 0.27, 0.19 and 0.20 (medians of 11 to 15 interleaved runs in one
 * process). A round trip pays all four.
 *
 * ```ts
 * const frame = writeSmallTree([FrameType.REPLY, 7, new Uint8Array(64)], HEADER_BYTES)
 * // frame: 4-byte big-endian body length, then the body; undefined when the body is not such a tree
 * const body = readSmallTree(frame.subarray(HEADER_BYTES), true) // [4, 7, Uint8Array(64)]
 * ```
 */
import { DTYPES } from '../tensor/dtype.js'
import { MetObjects } from './met-objects.js'
import { Tensor } from '../tensor/tensor.js'
import { TENSOR_EXTENSION_TYPE, tensorFromBytes } from './tensor-extension.js'
import { KINDS, readTypedArray, TYPED_ARRAY_EXTENSION, UINT8_ARRAY, writeBytesHeader } from './typed-arrays.js'

/**
 * Giving up costs a partial pass (0.08-0.14 µs a frame), which a process whose frames are
 * mostly something else (calls of plain objects, say) would pay on every frame for
 * nothing: after MISSES_BEFORE_SKIP bodies in a row that were not small trees, each
 * direction leaves the next SKIP bodies to msgpackr without trying, then tries again. A
 * small tree in between starts the count afresh. Either way the bytes and values are the
 * same; only the time differs.
 */
const MISSES_BEFORE_SKIP = 4
const SKIP = 32

class MissCounter {
  private misses = 0
  private skip = 0

  /** False while skipping. */
  shouldTry (): boolean {
    if (this.skip === 0) return true
    this.skip--
    return false
  }

  hit (): void {
    this.misses = 0
  }

  miss (): void {
    if (++this.misses < MISSES_BEFORE_SKIP) return
    this.misses = 0
    this.skip = SKIP
  }

  reset (): void {
    this.misses = 0
    this.skip = 0
  }
}

const writes = new MissCounter()
const reads = new MissCounter()

/** Test hook: both directions try the next body again, whatever came before. */
export function resetSmallTreeMisses (): void {
  writes.reset()
  reads.reset()
}

/** Bodies larger than this go through msgpackr (its fixed cost no longer matters there). */
const MAX_BYTES = 4096
/** Frames are carved out of one buffer of this size, as msgpackr does; a frame kept keeps its buffer alive. */
const BUFFER_BYTES = 64 * 1024
const MAX_DEPTH = 8
/** Containers and byte arrays a tree may hold (each is looked for among the earlier ones). */
const MAX_OBJECTS = 32
/**
 * msgpackr writes a plain object as a record: the first object of a shape (its keys, in
 * order) in a message defines it, `d4 72 <id> [keys...]`, then its values; later objects
 * of that shape write `<id>` and their values. Ids start at 0x40 in every message; this
 * many shapes a message may hold here (msgpackr's one-byte ids go to 0x7f).
 */
const RECORD_EXTENSION = 0x72
const FIRST_RECORD_ID = 0x40
const MAX_SHAPES = 32

const NO_KEYS: string[] = []
/**
 * The writer's state, in one object rather than module-level `let`s: V8 reads and writes
 * an object's fields faster than such bindings, each read of which also checks that the
 * binding is initialised. Encoding a 64 B call and its reply took 367-437 ns, now 331-378
 * (three runs of ten alternating rounds of a million each in one process).
 */
const firstTarget = new Uint8Array(BUFFER_BYTES)
const writer = {
  target: firstTarget,
  /** target.buffer, kept: the getter is a call into V8's runtime on every read (0.8% of a self-call's CPU). */
  targetBuffer: firstTarget.buffer,
  view: new DataView(firstTarget.buffer),
  at: 0,
  end: 0,
  writing: false,
  shapeCount: 0
}
const met = new MetObjects(MAX_OBJECTS)
/** The shapes of this message's objects, in the order msgpackr numbers them. */
const shapes: string[][] = []

/**
 * `body` as a frame (`header` bytes of big-endian body length first, the body after), or
 * undefined when it is not a small tree of the kinds above.
 */
export function writeSmallTree (body: unknown[], header: number): Uint8Array | undefined {
  // A getter or a proxy in the body may encode a frame of its own: that one goes to msgpackr.
  if (writer.writing || !writes.shouldTry()) return undefined
  let start = (writer.at + 7) & ~7
  if (start + MAX_BYTES + header > writer.target.byteLength) {
    writer.target = new Uint8Array(BUFFER_BYTES)
    writer.targetBuffer = writer.target.buffer
    writer.view = new DataView(writer.targetBuffer)
    start = 0
  }
  writer.at = start + header
  writer.end = writer.at + MAX_BYTES
  let written = false
  writer.writing = true
  try {
    written = put(body, 0)
  } finally {
    // Also when a getter threw: the next frame starts clean.
    writer.writing = false
    met.clear()
    for (let i = 0; i < writer.shapeCount; i++) shapes[i] = NO_KEYS
    writer.shapeCount = 0
    if (!written) writer.at = start
  }
  if (!written) {
    writes.miss()
    return undefined
  }
  writes.hit()
  const length = writer.at - start - header
  for (let i = header - 1, rest = length; i >= 0; i--, rest >>>= 8) writer.target[start + i] = rest & 0xff
  // A plain view (Buffer.from took twice as long; every reader takes either, see frame.ts asBuffer).
  return new Uint8Array(writer.targetBuffer, start, writer.at - start)
}

/** Writes one value at `at`; false when it is not part of a small tree (or does not fit). */
function put (value: unknown, depth: number): boolean {
  // Room for any fixed-size value (a float64 and its marker); strings and bytes check their own.
  if (writer.at + 9 > writer.end) return false
  switch (typeof value) {
    case 'number':
      putNumber(value)
      return true
    case 'string':
      return putString(value)
    case 'boolean':
      writer.target[writer.at++] = value ? 0xc3 : 0xc2
      return true
    case 'undefined':
      // fixext 1, type 0: msgpackr's undefined.
      writer.target[writer.at++] = 0xd4
      writer.target[writer.at++] = 0
      writer.target[writer.at++] = 0
      return true
    case 'object':
      if (value === null) {
        writer.target[writer.at++] = 0xc0
        return true
      }
      return putObject(value, depth)
    default:
      return false
  }
}

function putNumber (value: number): void {
  if (value >>> 0 === value) {
    // msgpackr keeps 0x40-0x7f of the fixints for its records: those go as uint8.
    if (value < 0x40) {
      writer.target[writer.at++] = value
    } else if (value < 0x100) {
      writer.target[writer.at++] = 0xcc
      writer.target[writer.at++] = value
    } else if (value < 0x10000) {
      writer.target[writer.at++] = 0xcd
      writer.target[writer.at++] = value >>> 8
      writer.target[writer.at++] = value & 0xff
    } else {
      writer.target[writer.at++] = 0xce
      writer.view.setUint32(writer.at, value)
      writer.at += 4
    }
  } else if (value >> 0 === value) {
    if (value >= -0x20) {
      writer.target[writer.at++] = 0x100 + value
    } else if (value >= -0x80) {
      writer.target[writer.at++] = 0xd0
      writer.target[writer.at++] = value + 0x100
    } else if (value >= -0x8000) {
      writer.target[writer.at++] = 0xd1
      writer.view.setInt16(writer.at, value)
      writer.at += 2
    } else {
      writer.target[writer.at++] = 0xd2
      writer.view.setInt32(writer.at, value)
      writer.at += 4
    }
  } else {
    writer.target[writer.at++] = 0xcb
    writer.view.setFloat64(writer.at, value)
    writer.at += 8
  }
}

/** ASCII strings under 256 characters; msgpackr's header for the length, which is the shortest. */
function putString (value: string): boolean {
  const length = value.length
  if (length >= 0x100 || writer.at + 2 + length > writer.end) return false
  let into = writer.at + (length < 0x20 ? 1 : 2)
  for (let i = 0; i < length; i++) {
    const code = value.charCodeAt(i)
    if (code >= 0x80) return false
    writer.target[into++] = code
  }
  if (length < 0x20) {
    writer.target[writer.at] = 0xa0 | length
  } else {
    writer.target[writer.at] = 0xd9
    writer.target[writer.at + 1] = length
  }
  writer.at = into
  return true
}

function putObject (value: object, depth: number): boolean {
  // A value met twice is shared (or cyclic): msgpackr's structured clone keeps it so.
  if (!met.first(value)) return false
  const constructor = value.constructor
  if (constructor === Array) {
    if (depth === MAX_DEPTH) return false
    const array = value as unknown[]
    const length = array.length
    if (length < 0x10) {
      writer.target[writer.at++] = 0x90 | length
    } else if (length < 0x10000) {
      writer.target[writer.at++] = 0xdc
      writer.target[writer.at++] = length >>> 8
      writer.target[writer.at++] = length & 0xff
    } else {
      return false
    }
    for (let i = 0; i < length; i++) if (!put(array[i], depth + 1)) return false
    return true
  }
  if (constructor === Object) return putRecord(value as Record<string, unknown>, depth)
  if (constructor === Tensor) return putTensor(value as Tensor, depth)
  if (constructor === Uint8Array) return putBytes(value as Uint8Array, UINT8_ARRAY)
  if (Buffer.isBuffer(value)) return putBytes(value, undefined)
  const kind = KINDS.indexOf(constructor as typeof KINDS[number])
  return kind >= 0 && putBytes(value as ArrayBufferView, kind)
}

/** A plain object as msgpackr's record (see RECORD_EXTENSION). */
function putRecord (object: Record<string, unknown>, depth: number): boolean {
  if (depth === MAX_DEPTH) return false
  // Another library's tensor ({ dtype, shape, data } and the like) is adopted on msgpackr's path.
  if (Array.isArray(object.shape) || Array.isArray(object.dims)) return false
  const keys = Object.keys(object)
  let shape = findShape(keys)
  if (shape < 0) {
    if (writer.shapeCount === MAX_SHAPES || keys.length >= 0x10000 || writer.at + 6 > writer.end) return false
    shape = writer.shapeCount
    shapes[writer.shapeCount++] = keys
    writer.target[writer.at++] = 0xd4
    writer.target[writer.at++] = RECORD_EXTENSION
    writer.target[writer.at++] = FIRST_RECORD_ID + shape
    if (keys.length < 0x10) {
      writer.target[writer.at++] = 0x90 | keys.length
    } else {
      writer.target[writer.at++] = 0xdc
      writer.target[writer.at++] = keys.length >>> 8
      writer.target[writer.at++] = keys.length & 0xff
    }
    for (let i = 0; i < keys.length; i++) {
      // msgpackr reads the first as '__proto_'; it skips inherited keys by calling hasOwnProperty, which an own key of that name replaces.
      if (keys[i] === '__proto__' || keys[i] === 'hasOwnProperty' || !putString(keys[i])) return false
    }
  } else {
    writer.target[writer.at++] = FIRST_RECORD_ID + shape
  }
  for (let i = 0; i < keys.length; i++) if (!put(object[keys[i]], depth + 1)) return false
  return true
}

/** A cpu tensor as tensor-extension.ts has msgpackr write it: `d4 54 00`, then [dtype code, shape, bin of its bytes]. */
function putTensor (tensor: Tensor, depth: number): boolean {
  if (tensor.device !== 'cpu' || depth === MAX_DEPTH) return false
  writer.target[writer.at++] = 0xd4
  writer.target[writer.at++] = TENSOR_EXTENSION_TYPE
  writer.target[writer.at++] = 0
  writer.target[writer.at++] = 0x93
  putNumber(DTYPES[tensor.dtype].code)
  return put(tensor.shape, depth + 1) && putBytes(tensor.data, undefined)
}

function findShape (keys: string[]): number {
  outer: for (let i = 0; i < writer.shapeCount; i++) {
    const known = shapes[i]
    if (known.length !== keys.length) continue
    for (let k = 0; k < keys.length; k++) if (known[k] !== keys[k]) continue outer
    return i
  }
  return -1
}

/**
 * A typed array's bytes as typed-arrays.ts and msgpackr write them: bin without a `kind` (a
 * Buffer, a tensor's elements), else ext 0x74 of that kind.
 */
function putBytes (array: ArrayBufferView, kind: number | undefined): boolean {
  const length = array.byteLength
  // 5: the longest header a body of at most MAX_BYTES gets (ext 16 and its kind).
  if (writer.at + 5 + length > writer.end) return false
  writer.at = writeBytesHeader(writer.target, writer.at, length, kind)
  // A Uint8Array as it is: asking a small one for its buffer would move it off V8's heap.
  writer.target.set(array instanceof Uint8Array ? array : new Uint8Array(array.buffer, array.byteOffset, length), writer.at)
  writer.at += length
  return true
}

/** What a reader returns for anything outside small trees. */
const GIVE_UP = Symbol('give up')
const NO_BYTES: Uint8Array = new Uint8Array(0)
/** The reader's state, in one object as the writer's (decoding a 64 B call and its reply: 262-286 ns before, 216-251 now). */
const reader = {
  src: NO_BYTES as Uint8Array,
  from: 0,
  srcEnd: 0,
  copyBytes: false,
  /** `src` is a plain Uint8Array, whose slice() is a Uint8Array copy (a Buffer's would be a Buffer). */
  plainSrc: false,
  /** Made for the current body at its first float64. */
  floats: undefined as DataView | undefined,
  readShapesUsed: 0
}
/** The record shapes this body defined so far, by id - FIRST_RECORD_ID (NO_KEYS: none). */
const readShapes: string[][] = []

/**
 * Reads a frame body that is a small tree (an array of the kinds the writer writes, with
 * fixstr strings only), as msgpackr reads it with the body options of frame.ts: the same
 * values of the same kinds (typed arrays always copied, bin copied with `copy`, a view of
 * `body` without). Undefined for anything else, including bytes that are not msgpack at
 * all: msgpackr then reads the body and says what is wrong with it.
 */
export function readSmallTree (body: Uint8Array, copy: boolean, start = 0, end = body.byteLength): unknown[] | undefined {
  if (!reads.shouldTry()) return undefined
  reader.src = body
  reader.from = start
  reader.srcEnd = end
  reader.copyBytes = copy
  reader.plainSrc = body.constructor === Uint8Array
  reader.floats = undefined
  let value: unknown
  let whole: boolean
  try {
    value = get(0)
    whole = reader.from === reader.srcEnd
  } finally {
    // Also after a throw: no shape of this body may be seen by the next one.
    reader.src = NO_BYTES
    reader.floats = undefined
    for (let i = 0; i < reader.readShapesUsed; i++) readShapes[i] = NO_KEYS
    reader.readShapesUsed = 0
  }
  if (!whole || !Array.isArray(value)) {
    reads.miss()
    return undefined
  }
  reads.hit()
  return value
}

function get (depth: number): unknown {
  if (reader.from >= reader.srcEnd) return GIVE_UP
  const token = reader.src[reader.from++]
  if (token < 0x40) return token
  if (token < 0x80) return getRecord(token - FIRST_RECORD_ID, depth)
  if (token >= 0xe0) return token - 0x100
  if ((token & 0xf0) === 0x90) return getArray(token & 0x0f, depth)
  if ((token & 0xe0) === 0xa0) return getString(token & 0x1f)
  switch (token) {
    case 0xc0: return null
    case 0xc2: return false
    case 0xc3: return true
    case 0xcc:
      if (reader.from + 1 > reader.srcEnd) return GIVE_UP
      return reader.src[reader.from++]
    case 0xcd:
      if (reader.from + 2 > reader.srcEnd) return GIVE_UP
      reader.from += 2
      return (reader.src[reader.from - 2] << 8) | reader.src[reader.from - 1]
    case 0xce:
      if (reader.from + 4 > reader.srcEnd) return GIVE_UP
      reader.from += 4
      return reader.src[reader.from - 4] * 0x1000000 + ((reader.src[reader.from - 3] << 16) | (reader.src[reader.from - 2] << 8) | reader.src[reader.from - 1])
    case 0xd0:
      if (reader.from + 1 > reader.srcEnd) return GIVE_UP
      return (reader.src[reader.from++] << 24) >> 24
    case 0xd1:
      if (reader.from + 2 > reader.srcEnd) return GIVE_UP
      reader.from += 2
      return (((reader.src[reader.from - 2] << 8) | reader.src[reader.from - 1]) << 16) >> 16
    case 0xd2:
      if (reader.from + 4 > reader.srcEnd) return GIVE_UP
      reader.from += 4
      return (reader.src[reader.from - 4] << 24) | (reader.src[reader.from - 3] << 16) | (reader.src[reader.from - 2] << 8) | reader.src[reader.from - 1]
    case 0xcb:
      if (reader.from + 8 > reader.srcEnd) return GIVE_UP
      reader.floats ??= new DataView(reader.src.buffer, reader.src.byteOffset, reader.src.byteLength)
      reader.from += 8
      return reader.floats.getFloat64(reader.from - 8)
    case 0xd4:
      if (reader.from + 2 > reader.srcEnd) return GIVE_UP
      reader.from += 2
      // fixext 1 of type 0 (its one byte ignored): undefined.
      if (reader.src[reader.from - 2] === 0) return undefined
      if (reader.src[reader.from - 2] === RECORD_EXTENSION) return defineRecord(reader.src[reader.from - 1] - FIRST_RECORD_ID, depth)
      // A tensor: its one byte ignored, then [dtype code, shape, bytes].
      if (reader.src[reader.from - 2] === TENSOR_EXTENSION_TYPE) return getTensor(depth)
      return GIVE_UP
    case 0xdc:
      if (reader.from + 2 > reader.srcEnd) return GIVE_UP
      reader.from += 2
      return getArray((reader.src[reader.from - 2] << 8) | reader.src[reader.from - 1], depth)
    case 0xc4:
      if (reader.from + 1 > reader.srcEnd) return GIVE_UP
      return getBin(reader.src[reader.from++])
    case 0xc5:
      if (reader.from + 2 > reader.srcEnd) return GIVE_UP
      reader.from += 2
      return getBin((reader.src[reader.from - 2] << 8) | reader.src[reader.from - 1])
    case 0xc7:
      if (reader.from + 2 > reader.srcEnd) return GIVE_UP
      reader.from += 1
      return getTypedArray(reader.src[reader.from - 1])
    case 0xc8:
      if (reader.from + 3 > reader.srcEnd) return GIVE_UP
      reader.from += 2
      return getTypedArray((reader.src[reader.from - 2] << 8) | reader.src[reader.from - 1])
    default:
      return GIVE_UP
  }
}

function getArray (length: number, depth: number): unknown {
  if (depth === MAX_DEPTH || length > reader.srcEnd - reader.from) return GIVE_UP
  const array: unknown[] = new Array(length)
  for (let i = 0; i < length; i++) {
    const item = get(depth + 1)
    if (item === GIVE_UP) return GIVE_UP
    array[i] = item
  }
  return array
}

/** A record definition: its keys (fixstr ASCII only here), then the first object of that shape. */
function defineRecord (shape: number, depth: number): unknown {
  if (shape < 0 || shape >= MAX_SHAPES) return GIVE_UP
  const keys = get(depth + 1)
  if (!Array.isArray(keys)) return GIVE_UP
  for (let i = 0; i < keys.length; i++) if (typeof keys[i] !== 'string' || keys[i] === '__proto__') return GIVE_UP
  readShapes[shape] = keys as string[]
  if (shape >= reader.readShapesUsed) reader.readShapesUsed = shape + 1
  return getRecord(shape, depth)
}

/** An object of a shape this body defined (msgpackr would reach back to earlier bodies: its call). */
function getRecord (shape: number, depth: number): unknown {
  if (depth === MAX_DEPTH || shape >= reader.readShapesUsed) return GIVE_UP
  const keys = readShapes[shape]
  if (keys == null || keys === NO_KEYS || keys.length > reader.srcEnd - reader.from) return GIVE_UP
  const object: Record<string, unknown> = {}
  for (let i = 0; i < keys.length; i++) {
    const value = get(depth + 1)
    if (value === GIVE_UP) return GIVE_UP
    object[keys[i]] = value
  }
  return object
}

function getTensor (depth: number): unknown {
  const fields = get(depth + 1)
  if (!Array.isArray(fields) || fields.length !== 3 || !(fields[2] instanceof Uint8Array)) return GIVE_UP
  try {
    return tensorFromBytes(fields[0], fields[1], fields[2])
  } catch {
    // msgpackr's read says what is wrong with it.
    return GIVE_UP
  }
}

/**
 * Short strings read before (function names, object keys, most of what a call's body
 * holds), one per slot by a hash of their bytes: a string met again is the same string,
 * not one made a character at a time (a call's function name was a fifth of what the
 * callee allocated per call in a sampling heap profile). Only fixstrs come here, so each
 * is at most 31 bytes.
 */
const STRING_SLOTS = 256
const cachedStrings: string[] = new Array<string>(STRING_SLOTS).fill('')

/** A fixstr of ASCII (msgpackr would read the same characters). */
function getString (length: number): unknown {
  const end = reader.from + length
  if (end > reader.srcEnd) return GIVE_UP
  let hash = length
  for (let i = reader.from; i < end; i++) {
    const code = reader.src[i]
    if (code >= 0x80) return GIVE_UP
    hash = (Math.imul(hash, 31) + code) | 0
  }
  const slot = hash & (STRING_SLOTS - 1)
  const cached = cachedStrings[slot]
  if (cached.length === length && sameString(cached, reader.from)) {
    reader.from = end
    return cached
  }
  let out = ''
  for (let i = reader.from; i < end; i++) out += String.fromCharCode(reader.src[i])
  cachedStrings[slot] = out
  reader.from = end
  return out
}

function sameString (string: string, at: number): boolean {
  for (let i = 0; i < string.length; i++) if (string.charCodeAt(i) !== reader.src[at + i]) return false
  return true
}

/** A Buffer (bin is how a Buffer travels), as frame.ts has msgpackr read it: a copy over a buffer of its own with `copy`, else a view. */
function getBin (length: number): unknown {
  if (reader.from + length > reader.srcEnd) return GIVE_UP
  reader.from += length
  if (!reader.copyBytes) return Buffer.from(reader.src.buffer, reader.src.byteOffset + reader.from - length, length)
  const copy = new Uint8Array(reader.src.buffer, reader.src.byteOffset + reader.from - length, length).slice()
  return Buffer.from(copy.buffer, 0, length)
}

/** ext 0x74 of `length` bytes, its kind first: a copy of that kind over a buffer of its own (as typed-arrays.ts reads it). */
function getTypedArray (length: number): unknown {
  if (reader.src[reader.from] !== TYPED_ARRAY_EXTENSION || length < 1 || reader.from + 1 + length > reader.srcEnd) return GIVE_UP
  const kind = reader.src[reader.from + 1]
  // Bytes that do not make whole elements of their kind are msgpackr's to refuse (BAD_FRAME).
  if (kind >= KINDS.length || (length - 1) % KINDS[kind].BYTES_PER_ELEMENT !== 0) return GIVE_UP
  reader.from += 1 + length
  if (kind === UINT8_ARRAY) return reader.plainSrc ? reader.src.slice(reader.from - length + 1, reader.from) : new Uint8Array(reader.src.buffer, reader.src.byteOffset + reader.from - length + 1, length - 1).slice()
  // The other kinds as msgpackr hands them to typed-arrays.ts: the ext's bytes, kind first.
  return readTypedArray(reader.src.subarray(reader.from - length, reader.from))
}
