/**
 * Element types a tensor can hold, each bound to the TypedArray that stores it and to
 * the one-byte code that names it on the wire.
 *
 * ```ts
 * dtypeOf(new Float32Array(4))     // 'float32'
 * canonicalDType('int64')          // 'bigint64' (onnxruntime's name)
 * new (DTYPES.float64.array)(8)    // Float64Array(8)
 * ```
 */
import { RpcError } from '../errors/rpc-error.js'

export type DType =
  | 'float32' | 'float64'
  | 'int8' | 'int16' | 'int32' | 'bigint64'
  | 'uint8' | 'uint16' | 'uint32' | 'biguint64'

export type TypedArray =
  | Float32Array | Float64Array
  | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Uint8Array | Uint16Array | Uint32Array | BigUint64Array | Uint8ClampedArray

export interface TypedArrayConstructor {
  new (length: number): TypedArray
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): TypedArray
  readonly BYTES_PER_ELEMENT: number
}

export interface DTypeInfo {
  /** The TypedArray that stores elements of this type. */
  readonly array: TypedArrayConstructor
  /** Names the dtype on the wire; never reuse a code. */
  readonly code: number
  /** Elements are bigint rather than number. */
  readonly bigint: boolean
}

export const DTYPES: Readonly<Record<DType, DTypeInfo>> = {
  float32: { array: Float32Array, code: 1, bigint: false },
  float64: { array: Float64Array, code: 2, bigint: false },
  int8: { array: Int8Array, code: 3, bigint: false },
  int16: { array: Int16Array, code: 4, bigint: false },
  int32: { array: Int32Array, code: 5, bigint: false },
  bigint64: { array: BigInt64Array, code: 6, bigint: true },
  uint8: { array: Uint8Array, code: 7, bigint: false },
  uint16: { array: Uint16Array, code: 8, bigint: false },
  uint32: { array: Uint32Array, code: 9, bigint: false },
  biguint64: { array: BigUint64Array, code: 10, bigint: true }
}

const BY_CODE = new Map<number, DType>(Object.entries(DTYPES).map(([name, info]) => [info.code, name as DType]))

// Names other libraries use: onnxruntime ('int64', 'bool'), numpy ('float', 'double'), ndarray ('uint8_clamped').
const ALIASES: Record<string, DType> = {
  float: 'float32',
  double: 'float64',
  int64: 'bigint64',
  uint64: 'biguint64',
  bool: 'uint8',
  uint8_clamped: 'uint8'
}

/** The canonical dtype for a name (ours or a common alias); throws BAD_ARGUMENT for anything else. */
export function canonicalDType (name: unknown): DType {
  if (typeof name === 'string') {
    if (Object.hasOwn(DTYPES, name)) return name as DType
    if (Object.hasOwn(ALIASES, name)) return ALIASES[name]
  }
  throw new RpcError('BAD_ARGUMENT', `unknown dtype ${JSON.stringify(name)}; use one of ${Object.keys(DTYPES).join(', ')}`)
}

export function dtypeFromCode (code: number): DType | undefined {
  return BY_CODE.get(code)
}

/** The dtype a TypedArray stores, or undefined for anything that is not one of ours. */
export function dtypeOf (data: unknown): DType | undefined {
  if (!ArrayBuffer.isView(data)) return undefined
  switch (data.constructor) {
    case Float32Array: return 'float32'
    case Float64Array: return 'float64'
    case Int8Array: return 'int8'
    case Int16Array: return 'int16'
    case Int32Array: return 'int32'
    case BigInt64Array: return 'bigint64'
    case Uint8Array: return 'uint8'
    case Uint8ClampedArray: return 'uint8'
    case Uint16Array: return 'uint16'
    case Uint32Array: return 'uint32'
    case BigUint64Array: return 'biguint64'
  }
  // Buffer and other Uint8Array subclasses.
  if (data instanceof Uint8Array) return 'uint8'
  return undefined
}
