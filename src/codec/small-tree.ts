/**
 * The encoder of most frames: a small tree of arrays, numbers, short ASCII strings,
 * booleans, null, undefined and small byte arrays, written as the frame in one pass,
 * byte for byte as msgpackr writes it with the body options of frame.ts (the tests hold
 * the two to the same bytes). Anything else (a plain object, a Map, a tensor, a large or
 * shared value, a long or non-ASCII string) makes it give up, and the frame goes through
 * msgpackr as before.
 *
 * Why: for a call of a 64-byte Uint8Array, msgpackr's fixed cost per pack (its state, its
 * buffer checks, its structure bookkeeping) and the three walks before it (tensors, large
 * parts, the tree check) took 0.88 µs; a reply took 0.55. A round trip pays both, on two
 * processes that otherwise spend 4 to 5 µs each on it.
 *
 * ```ts
 * const frame = writeSmallTree([FrameType.REPLY, 7, new Uint8Array(64)], HEADER_BYTES)
 * // frame: 4-byte big-endian body length, then the body; undefined when the body is not such a tree
 * ```
 */

/** Bodies larger than this go through msgpackr (its fixed cost no longer matters there). */
const MAX_BYTES = 4096
/** Frames are carved out of one buffer of this size, as msgpackr does; a frame kept keeps its buffer alive. */
const BUFFER_BYTES = 64 * 1024
const MAX_DEPTH = 8
/** Containers and byte arrays a tree may hold (each is looked for among the earlier ones). */
const MAX_OBJECTS = 32
/** ext 0x74, kind 1: a Uint8Array, as typed-arrays.ts writes it with `moreTypes`. */
const TYPED_ARRAY_EXTENSION = 0x74
const UINT8_ARRAY_KIND = 1

let target = new Uint8Array(BUFFER_BYTES)
let view = new DataView(target.buffer)
let at = 0
let end = 0
const met: unknown[] = []
let metCount = 0

/**
 * `body` as a frame (`header` bytes of big-endian body length first, the body after), or
 * undefined when it is not a small tree of the kinds above.
 */
export function writeSmallTree (body: unknown[], header: number): Uint8Array | undefined {
  let start = (at + 7) & ~7
  if (start + MAX_BYTES + header > target.byteLength) {
    target = new Uint8Array(BUFFER_BYTES)
    view = new DataView(target.buffer)
    start = 0
  }
  at = start + header
  end = at + MAX_BYTES
  const written = put(body, 0)
  for (let i = 0; i < metCount; i++) met[i] = undefined
  metCount = 0
  if (!written) {
    at = start
    return undefined
  }
  const length = at - start - header
  for (let i = header - 1, rest = length; i >= 0; i--, rest >>>= 8) target[start + i] = rest & 0xff
  // A Buffer, as msgpackr's frames are: a bin decoded from it locally (a self-call) stays a Buffer.
  return Buffer.from(target.buffer, start, at - start)
}

/** Writes one value at `at`; false when it is not part of a small tree (or does not fit). */
function put (value: unknown, depth: number): boolean {
  // Room for any fixed-size value (a float64 and its marker); strings and bytes check their own.
  if (at + 9 > end) return false
  switch (typeof value) {
    case 'number':
      putNumber(value)
      return true
    case 'string':
      return putString(value)
    case 'boolean':
      target[at++] = value ? 0xc3 : 0xc2
      return true
    case 'undefined':
      // fixext 1, type 0: msgpackr's undefined.
      target[at++] = 0xd4
      target[at++] = 0
      target[at++] = 0
      return true
    case 'object':
      if (value === null) {
        target[at++] = 0xc0
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
      target[at++] = value
    } else if (value < 0x100) {
      target[at++] = 0xcc
      target[at++] = value
    } else if (value < 0x10000) {
      target[at++] = 0xcd
      target[at++] = value >>> 8
      target[at++] = value & 0xff
    } else {
      target[at++] = 0xce
      view.setUint32(at, value)
      at += 4
    }
  } else if (value >> 0 === value) {
    if (value >= -0x20) {
      target[at++] = 0x100 + value
    } else if (value >= -0x80) {
      target[at++] = 0xd0
      target[at++] = value + 0x100
    } else if (value >= -0x8000) {
      target[at++] = 0xd1
      view.setInt16(at, value)
      at += 2
    } else {
      target[at++] = 0xd2
      view.setInt32(at, value)
      at += 4
    }
  } else {
    target[at++] = 0xcb
    view.setFloat64(at, value)
    at += 8
  }
}

/** ASCII strings under 256 characters; msgpackr's header for the length, which is the shortest. */
function putString (value: string): boolean {
  const length = value.length
  if (length >= 0x100 || at + 2 + length > end) return false
  let into = at + (length < 0x20 ? 1 : 2)
  for (let i = 0; i < length; i++) {
    const code = value.charCodeAt(i)
    if (code >= 0x80) return false
    target[into++] = code
  }
  if (length < 0x20) {
    target[at] = 0xa0 | length
  } else {
    target[at] = 0xd9
    target[at + 1] = length
  }
  at = into
  return true
}

function putObject (value: object, depth: number): boolean {
  // A value met twice is shared (or cyclic): msgpackr's structured clone keeps it so.
  for (let i = 0; i < metCount; i++) if (met[i] === value) return false
  if (metCount === MAX_OBJECTS) return false
  met[metCount++] = value
  const constructor = value.constructor
  if (constructor === Array) {
    if (depth === MAX_DEPTH) return false
    const array = value as unknown[]
    const length = array.length
    if (length < 0x10) {
      target[at++] = 0x90 | length
    } else if (length < 0x10000) {
      target[at++] = 0xdc
      target[at++] = length >>> 8
      target[at++] = length & 0xff
    } else {
      return false
    }
    for (let i = 0; i < length; i++) if (!put(array[i], depth + 1)) return false
    return true
  }
  if (constructor === Uint8Array) return putBytes(value as Uint8Array, false)
  if (Buffer.isBuffer(value)) return putBytes(value, true)
  return false
}

/** A Buffer as bin, a Uint8Array as ext 0x74 kind 1 (see typed-arrays.ts). */
function putBytes (bytes: Uint8Array, bin: boolean): boolean {
  const length = bytes.byteLength
  if (at + 5 + length > end) return false
  if (bin) {
    if (length < 0x100) {
      target[at++] = 0xc4
      target[at++] = length
    } else {
      target[at++] = 0xc5
      target[at++] = length >>> 8
      target[at++] = length & 0xff
    }
  } else {
    // The ext's length counts the kind byte.
    if (length + 1 < 0x100) {
      target[at++] = 0xc7
      target[at++] = length + 1
    } else {
      target[at++] = 0xc8
      target[at++] = (length + 1) >>> 8
      target[at++] = (length + 1) & 0xff
    }
    target[at++] = TYPED_ARRAY_EXTENSION
    target[at++] = UINT8_ARRAY_KIND
  }
  target.set(bytes, at)
  at += length
  return true
}

/** What a reader returns for anything outside small trees. */
const GIVE_UP = Symbol('give up')
const NO_BYTES = new Uint8Array(0)
let src: Uint8Array = NO_BYTES
let from = 0
let srcEnd = 0
let copyBytes = false
/** Made for the current body at its first float64. */
let floats: DataView | undefined

/**
 * Reads a frame body that is a small tree (an array of the kinds the writer writes, with
 * fixstr strings only), as msgpackr reads it with the body options of frame.ts: the same
 * values of the same kinds (typed arrays always copied, bin copied with `copy`, a view of
 * `body` without). Undefined for anything else, including bytes that are not msgpack at
 * all: msgpackr then reads the body and says what is wrong with it.
 */
export function readSmallTree (body: Uint8Array, copy: boolean): unknown[] | undefined {
  src = body
  from = 0
  srcEnd = body.byteLength
  copyBytes = copy
  floats = undefined
  const value = get(0)
  const whole = from === srcEnd
  src = NO_BYTES
  floats = undefined
  return whole && Array.isArray(value) ? value : undefined
}

function get (depth: number): unknown {
  if (from >= srcEnd) return GIVE_UP
  const token = src[from++]
  if (token < 0x40) return token
  if (token >= 0xe0) return token - 0x100
  if ((token & 0xf0) === 0x90) return getArray(token & 0x0f, depth)
  if ((token & 0xe0) === 0xa0) return getString(token & 0x1f)
  switch (token) {
    case 0xc0: return null
    case 0xc2: return false
    case 0xc3: return true
    case 0xcc:
      if (from + 1 > srcEnd) return GIVE_UP
      return src[from++]
    case 0xcd:
      if (from + 2 > srcEnd) return GIVE_UP
      from += 2
      return (src[from - 2] << 8) | src[from - 1]
    case 0xce:
      if (from + 4 > srcEnd) return GIVE_UP
      from += 4
      return src[from - 4] * 0x1000000 + ((src[from - 3] << 16) | (src[from - 2] << 8) | src[from - 1])
    case 0xd0:
      if (from + 1 > srcEnd) return GIVE_UP
      return (src[from++] << 24) >> 24
    case 0xd1:
      if (from + 2 > srcEnd) return GIVE_UP
      from += 2
      return (((src[from - 2] << 8) | src[from - 1]) << 16) >> 16
    case 0xd2:
      if (from + 4 > srcEnd) return GIVE_UP
      from += 4
      return (src[from - 4] << 24) | (src[from - 3] << 16) | (src[from - 2] << 8) | src[from - 1]
    case 0xcb:
      if (from + 8 > srcEnd) return GIVE_UP
      floats ??= new DataView(src.buffer, src.byteOffset, src.byteLength)
      from += 8
      return floats.getFloat64(from - 8)
    case 0xd4:
      // fixext 1 of type 0 (its one byte ignored): undefined.
      if (from + 2 > srcEnd || src[from] !== 0) return GIVE_UP
      from += 2
      return undefined
    case 0xdc:
      if (from + 2 > srcEnd) return GIVE_UP
      from += 2
      return getArray((src[from - 2] << 8) | src[from - 1], depth)
    case 0xc4:
      if (from + 1 > srcEnd) return GIVE_UP
      return getBin(src[from++])
    case 0xc5:
      if (from + 2 > srcEnd) return GIVE_UP
      from += 2
      return getBin((src[from - 2] << 8) | src[from - 1])
    case 0xc7:
      if (from + 2 > srcEnd) return GIVE_UP
      from += 1
      return getUint8Array(src[from - 1])
    case 0xc8:
      if (from + 3 > srcEnd) return GIVE_UP
      from += 2
      return getUint8Array((src[from - 2] << 8) | src[from - 1])
    default:
      return GIVE_UP
  }
}

function getArray (length: number, depth: number): unknown {
  if (depth === MAX_DEPTH || length > srcEnd - from) return GIVE_UP
  const array: unknown[] = new Array(length)
  for (let i = 0; i < length; i++) {
    const item = get(depth + 1)
    if (item === GIVE_UP) return GIVE_UP
    array[i] = item
  }
  return array
}

/** A fixstr of ASCII (msgpackr would read the same characters). */
function getString (length: number): unknown {
  if (from + length > srcEnd) return GIVE_UP
  let out = ''
  for (let i = from; i < from + length; i++) {
    const code = src[i]
    if (code >= 0x80) return GIVE_UP
    out += String.fromCharCode(code)
  }
  from += length
  return out
}

function getBin (length: number): unknown {
  if (from + length > srcEnd) return GIVE_UP
  from += length
  // As msgpackr: with copy, the copying slice of a Uint8Array (of the body's kind), else a view.
  return copyBytes ? Uint8Array.prototype.slice.call(src, from - length, from) : src.subarray(from - length, from)
}

/** ext 0x74 of `length` bytes, kind 1 first: a Uint8Array copy over a buffer of its own (as typed-arrays.ts reads it). */
function getUint8Array (length: number): unknown {
  if (src[from] !== TYPED_ARRAY_EXTENSION || length < 1 || from + 1 + length > srcEnd || src[from + 1] !== UINT8_ARRAY_KIND) return GIVE_UP
  from += 1 + length
  return new Uint8Array(src.buffer, src.byteOffset + from - length + 1, length - 1).slice()
}
