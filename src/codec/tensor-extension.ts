/**
 * How a Tensor travels inside a msgpack body: one extension value holding the dtype's
 * code, the shape and the elements as one raw byte string (msgpack bin), so a tensor
 * costs its bytes plus a few, never a list of numbers.
 *
 * ```
 *  ext 0x54 ('T')  [ dtype code, [d0, d1, ...], bin <d0*d1*...*itemsize bytes> ]
 * ```
 *
 * Bytes are in the host's order; every platform Node supports for this library is
 * little-endian. The receiver's tensor never shares memory with the body it arrived in:
 * bytes that are a view into a frame are copied once into fresh aligned storage.
 */
import { addExtension } from 'msgpackr'
import { DTYPES, dtypeFromCode } from '../tensor/dtype.js'
import { checkShape, Tensor } from '../tensor/tensor.js'

export const TENSOR_EXTENSION_TYPE = 0x54

/** Registers the Tensor extension with msgpackr (it applies to every Packr). */
export function registerTensorExtension (): void {
  addExtension({
    Class: Tensor,
    type: TENSOR_EXTENSION_TYPE,
    write (t: Tensor) {
      const host = t.hostData()
      // A Buffer (not a plain Uint8Array) is what msgpackr writes as bin; it is a view, not a copy.
      return [DTYPES[t.dtype].code, t.shape, Buffer.from(host.buffer, host.byteOffset, host.byteLength)]
    },
    read (fields: unknown) {
      if (!Array.isArray(fields) || fields.length !== 3) throw new Error('tensor value is not [dtype, shape, bytes]')
      const [code, shape, bytes] = fields
      if (!(bytes instanceof Uint8Array)) throw new Error('tensor value carries no byte string')
      return tensorFromBytes(code, shape, bytes)
    }
  })
}

/**
 * A tensor over `bytes`. Bytes that own their whole (non-shared) buffer from offset 0 are
 * adopted as they are: a private copy the shm decoder made (frame.ts), or one block of a
 * peer's arena read in place (out-of-band.ts), which is aligned for every dtype. Any
 * other view, into a frame say, is copied once into fresh aligned storage.
 */
export function tensorFromBytes (code: unknown, shape: unknown, bytes: Uint8Array): Tensor {
  const dtype = typeof code === 'number' ? dtypeFromCode(code) : undefined
  if (dtype == null) throw new Error(`tensor value has an unknown dtype code ${String(code)}`)
  const size = checkShape(shape as number[])
  const Array_ = DTYPES[dtype].array
  if (bytes.byteLength !== size * Array_.BYTES_PER_ELEMENT) {
    throw new Error(`${dtype} tensor of shape [${(shape as number[]).join(', ')}] needs ${size * Array_.BYTES_PER_ELEMENT} bytes, it carries ${bytes.byteLength}`)
  }
  if (bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.byteLength && !(bytes.buffer instanceof SharedArrayBuffer)) {
    return new Tensor(dtype, shape as number[], new Array_(bytes.buffer, 0, size))
  }
  const data = new Array_(size)
  new Uint8Array(data.buffer).set(bytes)
  return new Tensor(dtype, shape as number[], data)
}
