/**
 * Devices hold tensor storage. `cpu` is built in; a user adds another (a GPU binding, a
 * pinned-memory pool) with `registerDevice`. A batched endpoint stacks its calls'
 * tensors on the device it names, and tensors leave a device through `copyOut` when
 * they are sent.
 *
 * ```ts
 * registerDevice({
 *   name: 'pinned',
 *   allocate: (dtype, length) => new DTYPES[dtype].array(pool.take(length * DTYPES[dtype].array.BYTES_PER_ELEMENT)),
 *   copyIn: (dst, offset, src) => { dst.set(src as any, offset) },
 *   copyOut: (src, offset, length) => src.subarray(offset, offset + length)
 * })
 * rpc.define('policy', fn, { batchSize: 32, device: 'pinned' })
 * ```
 */
import { RpcError } from '../errors/rpc-error.js'
import { DTYPES, type DType, type TypedArray } from './dtype.js'

export interface Device {
  /** The name endpoints and `Tensor.to` use. */
  readonly name: string
  /** Storage for `length` elements of `dtype` on this device. */
  allocate: (dtype: DType, length: number) => TypedArray
  /** Copies host elements `src` into device storage `dst`, starting at element `offset`. */
  copyIn: (dst: TypedArray, offset: number, src: TypedArray) => void
  /** `length` elements of device storage `src` from element `offset`, in host memory (a view is fine where the device is host memory). */
  copyOut: (src: TypedArray, offset: number, length: number) => TypedArray
}

const cpu: Device = {
  name: 'cpu',
  allocate: (dtype, length) => new DTYPES[dtype].array(length),
  copyIn: (dst, offset, src) => { dst.set(src as any, offset) },
  copyOut: (src, offset, length) => src.subarray(offset, offset + length)
}

const devices = new Map<string, Device>([['cpu', cpu]])

/** Adds a device; throws BAD_ARGUMENT if the name is taken or the device lacks a method. */
export function registerDevice (device: Device): void {
  if (device == null || typeof device.name !== 'string' || device.name === '') throw new RpcError('BAD_ARGUMENT', 'registerDevice(): a device needs a non-empty name')
  for (const method of ['allocate', 'copyIn', 'copyOut'] as const) {
    if (typeof device[method] !== 'function') throw new RpcError('BAD_ARGUMENT', `registerDevice('${device.name}'): ${method} must be a function`)
  }
  if (devices.has(device.name)) throw new RpcError('BAD_ARGUMENT', `registerDevice(): device '${device.name}' is already registered`)
  devices.set(device.name, device)
}

/** The device of that name; throws BAD_ARGUMENT, saying what exists, for any other. */
export function getDevice (name: string): Device {
  const device = devices.get(name)
  if (device != null) return device
  if (name === 'shm') {
    throw new RpcError('BAD_ARGUMENT', "device 'shm' (a shared-memory arena) needs the shared-memory transport, which is not built yet (issue 4); use 'cpu'")
  }
  throw new RpcError('BAD_ARGUMENT', `unknown device ${JSON.stringify(name)}; registered: ${[...devices.keys()].join(', ')}`)
}

export function deviceNames (): string[] {
  return [...devices.keys()]
}
