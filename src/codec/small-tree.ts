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
