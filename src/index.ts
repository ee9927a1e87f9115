/**
 * cohort: a peer-to-peer, named RPC mesh. The curated public surface.
 *
 * ```ts
 * import { Rpc, RpcError, tensor } from 'cohort'
 * const rpc = new Rpc({ name: 'learner' })
 * rpc.define('add', (a: number, b: number) => a + b)
 * await rpc.listen('127.0.0.1:0')
 * ```
 */
import './transports/tcp/polyfill.js'

export { Rpc } from './rpc.js'
export type { RpcOptions, Callback } from './rpc.js'
export { Future } from './calls/future.js'
export { Queue } from './endpoints/queue.js'
export type { Reply, QueueItem } from './endpoints/queue.js'
export type { EndpointOptions, QueueOptions } from './endpoints/registry.js'
export { RpcError, RPC_ERROR_CODES } from './errors/rpc-error.js'
export type { RpcErrorCode } from './errors/rpc-error.js'
export { Tensor, tensor } from './tensor/tensor.js'
export { registerDevice } from './tensor/device.js'
export type { Device } from './tensor/device.js'
export type { DType, TypedArray } from './tensor/dtype.js'
export { generateIdentity } from './cohort/identity.js'
export type { DebugInfo } from './debug/debug-info.js'
