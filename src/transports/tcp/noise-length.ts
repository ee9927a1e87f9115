/**
 * Noise's length prefixes read without an exception per message.
 *
 * @chainsafe/libp2p-noise splits the bytes of a connection into messages with
 * @libp2p/utils' LengthPrefixedDecoder, whose length reader throws a RangeError when
 * fewer than two bytes are left, and the decoder catches it to wait for more. That
 * happens at the end of every chunk read from the socket, so once per message, and each
 * time V8 captures the stack of a fresh Error, 25 frames deep. In a CPU profile of a
 * callee answering 64-byte calls over TCP one at a time, that throw cost 23 µs of the
 * 45 µs the process spent per call outside the kernel; a RangeError made once and thrown
 * again still cost 5.6.
 *
 * `quietNoiseLengths` gives one connection's decoder a length reader that reads the same
 * big-endian 16-bit length, and for fewer than two bytes returns the largest length a
 * Noise message can have instead of throwing. The decoder then finds the buffer shorter
 * than that message and waits for more bytes, which is what it does on the RangeError.
 * Where the connection does not have the shape this expects (another libp2p or Noise
 * version), nothing changes.
 *
 * ```ts
 * quietNoiseLengths(connection) // once, for a connection whose Noise stream we read
 * ```
 */
import type { Connection } from '@libp2p/interface'

/** The largest Noise message (its length is a 16-bit number): more than a short buffer can hold. */
const NOISE_MAX_MESSAGE_BYTES = 0xffff

/** Noise's own reader (its encoder.js), except for what it does with fewer than two bytes. */
function uint16BE (data: Uint8Array | { length: number, getUint16: (at: number) => number }): number {
  if (data.length < 2) return NOISE_MAX_MESSAGE_BYTES
  if (data instanceof Uint8Array) return (data[0] << 8) + data[1]
  return data.getUint16(0)
}

interface NoiseDecoder {
  lengthDecoder: unknown
  encodingLength: unknown
  maxDataLength: unknown
}

/** True when the connection's Noise stream now reads lengths without an exception per short read. */
export function quietNoiseLengths (connection: Connection): boolean {
  const encrypted = (connection as unknown as { muxer?: { maConn?: { decoder?: NoiseDecoder } } }).muxer?.maConn
  const decoder = encrypted?.decoder
  if (decoder == null || typeof decoder.lengthDecoder !== 'function' || typeof decoder.encodingLength !== 'function') return false
  // Only Noise's decoder (2-byte lengths, its reader) is replaced, and only where the
  // longest message is not refused as too long.
  if ((decoder.encodingLength as (length: number) => number)(0) !== 2 || (decoder.lengthDecoder as { name?: string }).name !== 'uint16BEDecode') return false
  if (typeof decoder.maxDataLength !== 'number' || decoder.maxDataLength < NOISE_MAX_MESSAGE_BYTES) return false
  decoder.lengthDecoder = uint16BE
  return true
}
