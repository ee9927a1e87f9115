/**
 * Turning many calls' arguments into one batch, and one batch result back into each
 * call's own result. Pure functions: the endpoint layer decides when a batch runs.
 *
 * Stacking (the first call sets the batch's structure):
 * - a tensor leaf becomes one tensor with a new first dimension of n (the batch's call
 *   count), on the batch's device;
 * - arrays and plain objects are walked: each call must have the same length / keys;
 * - any other leaf becomes an array of the n per-call values.
 *
 * Splitting a result among n calls:
 * - a tensor must have first dimension n; call i gets row i (a view, no copy);
 * - a plain object is walked key by key; each call gets an object with the same keys;
 * - an array of length n is a per-call list (call i gets item i), unless a tensor inside
 *   it has first dimension n: then it is a tuple, like any array of another length, and
 *   is walked item by item;
 * - any other value goes to every call.
 *
 * ```ts
 * const { args, rejected } = stackCalls([[tensor([1, 2]), 'a'], [tensor([3, 4]), 'b']], 'cpu')
 * // args: [Tensor [2, 2], ['a', 'b']]
 * splitResult(tensor([[1], [2]]), 2)   // [Tensor [1], Tensor [1]]
 * ```
 */
import { RpcError } from '../errors/rpc-error.js'
import { getDevice, type Device } from './device.js'
import { isPlainObject, Tensor } from './tensor.js'

export interface StackedCalls {
  /** The batch's arguments, one per argument of a call. */
  args: unknown[]
  /** Indexes (into the input) of the calls in the batch, in order. */
  accepted: number[]
  /** Calls left out because they do not match the first call, each with its BAD_ARGUMENT. */
  rejected: Array<{ index: number, error: RpcError }>
}

/** Stacks the argument lists of calls that match the first one; the others are rejected with the reason. */
export function stackCalls (calls: unknown[][], deviceName: string): StackedCalls {
  const device = getDevice(deviceName)
  const reference = calls[0]
  const accepted: number[] = []
  const rejected: StackedCalls['rejected'] = []
  for (let i = 0; i < calls.length; i++) {
    const mismatch = i === 0 ? undefined : compare(reference, calls[i], 'arguments')
    if (mismatch == null) accepted.push(i)
    else rejected.push({ index: i, error: new RpcError('BAD_ARGUMENT', `${mismatch}; this call was left out of its batch`) })
  }
  const members = accepted.map(i => calls[i])
  return { args: stack(members, device, deviceName) as unknown[], accepted, rejected }
}

/** Splits a batch result among `n` calls; throws an Error saying why when it cannot. */
export function splitResult (result: unknown, n: number): unknown[] {
  return split(result, n, 'the result')
}

function stack (values: unknown[], device: Device, deviceName: string): unknown {
  const first = values[0]
  if (first instanceof Tensor) {
    const rowSize = first.size
    const storage = device.allocate(first.dtype, rowSize * values.length)
    for (let i = 0; i < values.length; i++) device.copyIn(storage, i * rowSize, (values[i] as Tensor).hostData())
    return new Tensor(first.dtype, [values.length, ...first.shape], storage, deviceName)
  }
  if (Array.isArray(first)) return first.map((_, k) => stack(values.map(v => (v as unknown[])[k]), device, deviceName))
  if (isPlainObject(first)) {
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(first)) out[key] = stack(values.map(v => (v as Record<string, unknown>)[key]), device, deviceName)
    return out
  }
  return values
}

/** Why `value` cannot join a batch whose first call has `reference` here, or undefined if it can. */
function compare (reference: unknown, value: unknown, path: string): string | undefined {
  if (reference instanceof Tensor) {
    if (!(value instanceof Tensor)) return `${path} is ${kindOf(value)}, where the batch has a ${reference.dtype} tensor of shape ${shapeText(reference.shape)}`
    if (value.dtype !== reference.dtype) return `${path} has dtype ${value.dtype}, the batch has ${reference.dtype}`
    if (!sameShape(value.shape, reference.shape)) return `${path} has shape ${shapeText(value.shape)}, the batch has ${shapeText(reference.shape)}`
    return undefined
  }
  if (Array.isArray(reference)) {
    if (!Array.isArray(value)) return `${path} is ${kindOf(value)}, where the batch has an array of ${reference.length}`
    if (value.length !== reference.length) return `${path} has ${value.length} items, the batch has ${reference.length}`
    for (let k = 0; k < reference.length; k++) {
      const mismatch = compare(reference[k], value[k], path === 'arguments' ? `argument ${k}` : `${path}[${k}]`)
      if (mismatch != null) return mismatch
    }
    return undefined
  }
  if (isPlainObject(reference)) {
    if (!isPlainObject(value)) return `${path} is ${kindOf(value)}, where the batch has an object`
    const keys = Object.keys(reference)
    const theirs = Object.keys(value)
    if (theirs.length !== keys.length || theirs.some(key => !Object.hasOwn(reference, key))) {
      return `${path} has keys {${theirs.join(', ')}}, the batch has {${keys.join(', ')}}`
    }
    for (const key of keys) {
      const mismatch = compare(reference[key], value[key], `${path}.${key}`)
      if (mismatch != null) return mismatch
    }
    return undefined
  }
  if (value instanceof Tensor || Array.isArray(value) || isPlainObject(value)) return `${path} is ${kindOf(value)}, where the batch has ${kindOf(reference)}`
  return undefined
}

function split (value: unknown, n: number, path: string): unknown[] {
  if (value instanceof Tensor) {
    if (value.shape.length === 0 || value.shape[0] !== n) {
      throw new Error(`${path} is a tensor of shape ${shapeText(value.shape)}; its first dimension must be ${n}, the batch's call count, to split it among the calls`)
    }
    const rows = new Array<unknown>(n)
    for (let i = 0; i < n; i++) rows[i] = value.row(i)
    return rows
  }
  if (Array.isArray(value)) {
    if (value.length === n && !hasBatchTensor(value, n)) return value.slice()
    const columns = value.map((item, k) => split(item, n, `${path}[${k}]`))
    return perCall(n, i => columns.map(column => column[i]))
  }
  if (isPlainObject(value)) {
    const keys = Object.keys(value)
    const columns = keys.map(key => split(value[key], n, `${path}.${key}`))
    return perCall(n, i => {
      const out: Record<string, unknown> = {}
      for (let k = 0; k < keys.length; k++) out[keys[k]] = columns[k][i]
      return out
    })
  }
  return new Array<unknown>(n).fill(value)
}

function hasBatchTensor (value: unknown, n: number): boolean {
  if (value instanceof Tensor) return value.shape[0] === n
  if (Array.isArray(value)) return value.some(item => hasBatchTensor(item, n))
  if (isPlainObject(value)) return Object.values(value).some(item => hasBatchTensor(item, n))
  return false
}

function perCall (n: number, make: (i: number) => unknown): unknown[] {
  const out = new Array<unknown>(n)
  for (let i = 0; i < n; i++) out[i] = make(i)
  return out
}

function sameShape (a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((dim, i) => dim === b[i])
}

function shapeText (shape: readonly number[]): string {
  return `[${shape.join(', ')}]`
}

function kindOf (value: unknown): string {
  if (value instanceof Tensor) return `a ${value.dtype} tensor of shape ${shapeText(value.shape)}`
  if (Array.isArray(value)) return `an array of ${value.length}`
  if (isPlainObject(value)) return 'an object'
  if (value === null) return 'null'
  if (typeof value === 'object') return `a ${(value as object).constructor?.name ?? 'object'}`
  return `a ${typeof value}`
}
