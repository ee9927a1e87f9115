/**
 * A dense, row-major tensor: a dtype, a shape and a TypedArray holding the elements on a
 * device. Tensors anywhere in a call's arguments or results travel as raw bytes (see
 * codec/tensor-extension.ts) and arrive with dtype and shape intact.
 *
 * ```ts
 * const t = tensor([[1, 2], [3, 4]])            // float32, shape [2, 2]
 * const u = tensor(new Int32Array(6), [2, 3])   // int32, shape [2, 3]
 * const v = tensor([1n, 2n])                    // bigint64, shape [2]
 * t.row(1).data                                 // Float32Array [3, 4], a view
 * ```
 */
import { RpcError } from '../errors/rpc-error.js'
import { canonicalDType, DTYPES, dtypeOf, type DType, type TypedArray } from './dtype.js'
import { getDevice } from './device.js'

export class Tensor {
  readonly dtype: DType
  readonly shape: readonly number[]
  /** The elements, row-major; on a device other than cpu, that device's storage. */
  readonly data: TypedArray
  /** Where `data` lives ('cpu' unless a device was asked for). */
  readonly device: string

  constructor (dtype: DType, shape: readonly number[], data: TypedArray, device = 'cpu') {
    const size = checkShape(shape)
    if (dtypeOf(data) !== dtype) throw new RpcError('BAD_ARGUMENT', `tensor data is a ${data.constructor.name}, which does not hold ${dtype}`)
    if (data.length !== size) throw new RpcError('BAD_ARGUMENT', `tensor of shape [${shape.join(', ')}] needs ${size} elements, the data has ${data.length}`)
    this.dtype = dtype
    this.shape = Object.freeze([...shape])
    this.data = data
    this.device = device
  }

  /** Number of elements. */
  get size (): number {
    return this.data.length
  }

  /** Sub-tensor `i` along the first dimension; shares this tensor's storage. */
  row (i: number): Tensor {
    if (this.shape.length === 0) throw new RpcError('BAD_ARGUMENT', 'a scalar tensor has no rows')
    if (!Number.isInteger(i) || i < 0 || i >= this.shape[0]) throw new RpcError('BAD_ARGUMENT', `row ${i} is outside a first dimension of ${this.shape[0]}`)
    const stride = this.shape[0] === 0 ? 0 : this.size / this.shape[0]
    return new Tensor(this.dtype, this.shape.slice(1), this.data.subarray(i * stride, (i + 1) * stride), this.device)
  }

  /** The same elements under another shape of the same size; shares storage. */
  reshape (shape: readonly number[]): Tensor {
    return new Tensor(this.dtype, shape, this.data, this.device)
  }

  /** This tensor on another device (itself when it is there already). */
  to (device: string): Tensor {
    if (device === this.device) return this
    const target = getDevice(device)
    const storage = target.allocate(this.dtype, this.size)
    target.copyIn(storage, 0, this.hostData())
    return new Tensor(this.dtype, this.shape, storage, device)
  }

  /** The elements in host memory: `data` itself on cpu, a copy from any other device. */
  hostData (): TypedArray {
    if (this.device === 'cpu') return this.data
    return getDevice(this.device).copyOut(this.data, 0, this.size)
  }

  /** Elements as a flat array of numbers (bigints for the 64-bit dtypes), for tests and logs. */
  toArray (): Array<number | bigint> {
    return Array.from(this.hostData() as ArrayLike<number | bigint>)
  }
}

/**
 * Makes a tensor from a TypedArray, a (nested) array of numbers or bigints, a scalar, or
 * another library's tensor (`{ dtype, shape, data }`, ndarray, onnxruntime's Tensor).
 * `shape` defaults to the data's own; `dtype` to the data's (float32 for plain numbers,
 * bigint64 for bigints); a different dtype converts the elements.
 */
export function tensor (data: unknown, shape?: readonly number[], dtype?: DType | string): Tensor {
  const want = dtype == null ? undefined : canonicalDType(dtype)
  let base: Tensor
  const adopted = data instanceof Tensor ? data : adoptTensorLike(data)
  if (adopted != null) {
    base = adopted
  } else if (ArrayBuffer.isView(data)) {
    const own = dtypeOf(data)
    if (own == null) throw new RpcError('BAD_ARGUMENT', `a ${data.constructor.name} cannot hold tensor elements`)
    base = new Tensor(own, [(data as TypedArray).length], plainView(data as TypedArray))
  } else {
    const { flat, shape: inferred } = flatten(data)
    const kind: DType = flat.length > 0 && typeof flat[0] === 'bigint' ? 'bigint64' : 'float32'
    base = new Tensor(want ?? kind, inferred, convert(flat, want ?? kind))
  }
  if (want != null && want !== base.dtype) base = new Tensor(want, base.shape, convert(base.hostData(), want))
  if (shape != null) base = base.reshape(shape)
  return base
}

/**
 * Another library's tensor as ours, or undefined when `value` is not one: plain
 * `{ dtype, shape, data }`, ndarray (`stride`, `offset`, gathered if not contiguous) and
 * onnxruntime-common (`type`, `dims`, `data`).
 */
export function adoptTensorLike (value: unknown): Tensor | undefined {
  if (value == null || typeof value !== 'object' || value instanceof Tensor || ArrayBuffer.isView(value)) return undefined
  const v = value as Record<string, unknown>
  const shape = Array.isArray(v.shape) ? v.shape : Array.isArray(v.dims) ? v.dims : undefined
  const dtypeName = typeof v.dtype === 'string' ? v.dtype : typeof v.type === 'string' ? v.type : undefined
  if (shape == null || dtypeName == null) return undefined
  let data: unknown
  try {
    data = v.data
  } catch {
    // onnxruntime throws from `data` when the tensor lives on a GPU.
    return undefined
  }
  const own = dtypeOf(data)
  if (own == null) return undefined
  let dtype: DType
  try {
    dtype = canonicalDType(dtypeName)
  } catch {
    return undefined
  }
  const elements = plainView(data as TypedArray)
  const size = checkShape(shape as number[])
  const stride = v.stride
  const offset = typeof v.offset === 'number' ? v.offset : 0
  const typed = dtype === own ? elements : convert(elements, dtype)
  if (!Array.isArray(stride)) return new Tensor(dtype, shape as number[], typed)
  // ndarray: a view with strides into a larger array.
  if (isContiguous(shape as number[], stride, offset, typed.length)) return new Tensor(dtype, shape as number[], typed.subarray(offset, offset + size))
  return new Tensor(dtype, shape as number[], gather(typed, shape as number[], stride as number[], offset))
}

/** Other libraries' tensors inside arrays and plain objects replaced by ours; `value` itself when there are none. */
export function adoptTensors (value: unknown): unknown {
  return mapTensors(value, t => t)
}

/** `value` with every tensor inside it moved to `device`. */
export function tensorsTo (value: unknown, device: string): unknown {
  return mapTensors(value, t => t.to(device))
}

/**
 * `value` with `fn` applied to every tensor (ours, or another library's made ours) inside
 * arrays and plain objects. Containers are copied only where something changed, and
 * containers met twice (shared or cyclic) are walked once.
 */
function mapTensors (value: unknown, fn: (t: Tensor) => Tensor, depth = 0, seen?: Set<object>): unknown {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value
  if (value instanceof Tensor) return fn(value)
  // Frame bodies are shallow; only deeper values pay for cycle tracking.
  if (depth >= 2) {
    seen ??= new Set()
    if (seen.has(value)) return value
    seen.add(value)
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined
    for (let i = 0; i < value.length; i++) {
      const item = value[i]
      const next = mapTensors(item, fn, depth + 1, seen)
      if (next !== item) {
        out ??= value.slice()
        out[i] = next
      }
    }
    return out ?? value
  }
  const adopted = adoptTensorLike(value)
  if (adopted != null) return fn(adopted)
  // Other class instances (Map, Set, Date, ...) travel as they are.
  if (!isPlainObject(value)) return value
  let out: Record<string, unknown> | undefined
  for (const key in value) {
    const item = (value as Record<string, unknown>)[key]
    const next = mapTensors(item, fn, depth + 1, seen)
    if (next !== item) {
      out ??= { ...(value as Record<string, unknown>) }
      out[key] = next
    }
  }
  return out ?? value
}

/** An object literal (or one made with a null prototype): walked as a container of values. */
export function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** The element count of `shape`; throws BAD_ARGUMENT unless it is a list of non-negative integers. */
export function checkShape (shape: readonly unknown[]): number {
  if (!Array.isArray(shape)) throw new RpcError('BAD_ARGUMENT', 'a tensor shape must be an array of non-negative integers')
  let size = 1
  for (const dim of shape) {
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0) {
      throw new RpcError('BAD_ARGUMENT', `tensor shape [${shape.join(', ')}] must hold non-negative integers`)
    }
    size *= dim
  }
  return size
}

function plainView (data: TypedArray): TypedArray {
  // Buffer and Uint8ClampedArray become a plain Uint8Array over the same bytes.
  if (data.constructor === Uint8Array || !(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) return data
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
}

function convert (values: ArrayLike<number | bigint>, dtype: DType): TypedArray {
  const info = DTYPES[dtype]
  const out = new info.array(values.length)
  if (values.length === 0) return out
  const fromBig = typeof values[0] === 'bigint'
  if (fromBig === info.bigint) {
    out.set(values as any)
    return out
  }
  for (let i = 0; i < values.length; i++) {
    const x = values[i]
    if (info.bigint) {
      if (!Number.isInteger(x)) throw new RpcError('BAD_ARGUMENT', `${String(x)} is not an integer and cannot be stored as ${dtype}`)
      ;(out as BigInt64Array)[i] = BigInt(x)
    } else {
      (out as Float64Array)[i] = Number(x)
    }
  }
  return out
}

function flatten (data: unknown): { flat: Array<number | bigint>, shape: number[] } {
  if (typeof data === 'number' || typeof data === 'bigint') return { flat: [data], shape: [] }
  if (!Array.isArray(data)) throw new RpcError('BAD_ARGUMENT', `tensor(): cannot make a tensor from ${describe(data)}`)
  const shape: number[] = []
  for (let level: unknown = data; Array.isArray(level); level = level[0]) shape.push(level.length)
  const flat: Array<number | bigint> = []
  const walk = (node: unknown, dim: number): void => {
    if (dim === shape.length) {
      if (typeof node !== 'number' && typeof node !== 'bigint') throw new RpcError('BAD_ARGUMENT', `tensor(): element ${describe(node)} is not a number or a bigint`)
      flat.push(node)
      return
    }
    if (!Array.isArray(node) || node.length !== shape[dim]) throw new RpcError('BAD_ARGUMENT', `tensor(): nested arrays are ragged at depth ${dim} (expected length ${shape[dim]})`)
    for (const child of node) walk(child, dim + 1)
  }
  walk(data, 0)
  if (flat.some(x => typeof x !== typeof flat[0])) throw new RpcError('BAD_ARGUMENT', 'tensor(): numbers and bigints cannot be mixed')
  return { flat, shape }
}

function isContiguous (shape: number[], stride: unknown[], offset: number, length: number): boolean {
  let expected = 1
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] > 1 && stride[d] !== expected) return false
    expected *= shape[d]
  }
  return offset + expected <= length
}

function gather (data: TypedArray, shape: number[], stride: number[], offset: number): TypedArray {
  const size = shape.reduce((a, b) => a * b, 1)
  const out = new (data.constructor as new (n: number) => TypedArray)(size)
  const index = new Array<number>(shape.length).fill(0)
  for (let i = 0; i < size; i++) {
    let at = offset
    for (let d = 0; d < shape.length; d++) at += index[d] * stride[d]
    if (!(at >= 0 && at < data.length)) throw new RpcError('BAD_ARGUMENT', `ndarray strides [${stride.join(', ')}] and offset ${offset} reach outside its data`)
    out[i] = data[at]
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++index[d] < shape[d]) break
      index[d] = 0
    }
  }
  return out
}

function describe (value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'an object'
  return `${typeof value} ${String(value)}`
}
