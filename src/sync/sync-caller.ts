/**
 * `sync()`: a call that really blocks the calling thread. A worker thread, started on the
 * first sync call, holds its own lightweight peer in the cohort; the blocked thread hands
 * it the call through a MessagePort and sleeps in `Atomics.wait` until the worker has
 * posted the outcome, which it then takes with `receiveMessageOnPort`. The async path
 * never touches any of this.
 *
 * ```
 *  main thread                         sync worker (own Rpc, own libp2p key)
 *  ───────────                         ─────────────────────────────────────
 *  port.postMessage({ seq, call }) ──► rpc.async_(peer, fn, ...args)
 *  Atomics.wait(done, 0, seq - 1)             │ reply or error
 *        ◄───────────── port.postMessage(outcome); done[0] = seq; Atomics.notify
 *  receiveMessageOnPort(port) → value or throw RpcError
 * ```
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads'
import { RpcError, isRpcErrorCode } from '../errors/rpc-error.js'
import { adoptTensors } from '../tensor/tensor.js'

export interface SyncWorkerConfig {
  /** Name prefix of the worker's peer; the cohort sees it as the caller. */
  name: string
  cohortKey?: string | Uint8Array
  maxFrameBytes: number
  lookupTimeoutMs: number
  /** The parent's shmArenaBytes, for the worker's own shm links. */
  shmArenaBytes?: number
}

export interface SyncCallRequest {
  seq: number
  peer: string
  fn: string
  args: unknown[]
  timeoutMs: number
  /** Addresses that lead to the peer (its own listen addresses, and this Rpc's connect targets). */
  addresses: string[]
}

export type SyncOutcome =
  | { seq: number, ok: true, value: unknown }
  | { seq: number, ok: false, code: string, message: string, remoteName?: string, remoteStack?: string }

/** Time the first call may spend starting the worker and its peer, on top of the call's deadline. */
const STARTUP_ALLOWANCE_MS = 15_000

export class SyncCaller {
  private worker?: Worker
  private port?: MessagePort
  private readonly done = new Int32Array(new SharedArrayBuffer(4))
  private seq = 0
  private closed = false

  constructor (private readonly config: SyncWorkerConfig) {}

  call (peer: string, fn: string, args: unknown[], timeoutMs: number, addresses: string[]): unknown {
    if (this.closed) throw new RpcError('CLOSED', `sync call of '${fn}' on peer '${peer}': the Rpc is closed`, { peer, fn })
    const port = this.start()
    const seq = ++this.seq
    const request: SyncCallRequest = { seq, peer, fn, args, timeoutMs, addresses }
    try {
      port.postMessage(request)
    } catch (err) {
      throw new RpcError('BAD_ARGUMENT', `sync call of '${fn}' on peer '${peer}': arguments cannot be sent: ${(err as Error).message}`, { peer, fn })
    }
    const waitUntil = Date.now() + timeoutMs + STARTUP_ALLOWANCE_MS
    for (;;) {
      // Read the counter before looking at the port: an outcome posted after the look
      // bumps the counter after this read, so the wait below cannot miss it.
      const observed = Atomics.load(this.done, 0)
      const outcome = receiveMessageOnPort(port)?.message as SyncOutcome | undefined
      if (outcome != null) {
        if (outcome.seq === seq) return unwrap(outcome, peer, fn)
        continue // the outcome of an earlier call that gave up waiting
      }
      const left = waitUntil - Date.now()
      if (left <= 0) {
        throw new RpcError('TIMEOUT', `sync call of '${fn}' on peer '${peer}' got no answer from the sync worker within ${timeoutMs / 1000} s`, { peer, fn })
      }
      Atomics.wait(this.done, 0, observed, left)
    }
  }

  async close (): Promise<void> {
    this.closed = true
    const worker = this.worker
    this.worker = undefined
    this.port?.close()
    if (worker != null) await worker.terminate()
  }

  private start (): MessagePort {
    if (this.port != null) return this.port
    const channel = new MessageChannel()
    const worker = new Worker(new URL('./sync-worker.js', import.meta.url), {
      workerData: { config: this.config, port: channel.port2, done: this.done },
      transferList: [channel.port2]
    })
    // The worker must not keep the process alive, nor die silently.
    worker.unref()
    worker.on('error', err => {
      process.emitWarning(`cohort sync worker failed: ${err.message}`)
    })
    // A dead worker is replaced on the next sync() rather than waited on for ever.
    worker.on('exit', () => {
      if (this.worker === worker) {
        this.worker = undefined
        this.port?.close()
        this.port = undefined
      }
    })
    this.worker = worker
    this.port = channel.port1
    return channel.port1
  }
}

function unwrap (outcome: SyncOutcome, peer: string, fn: string): unknown {
  // Crossing threads by structured clone leaves a Tensor a plain { dtype, shape, data }: make it one again.
  if (outcome.ok) return adoptTensors(outcome.value)
  const code = isRpcErrorCode(outcome.code) ? outcome.code : 'REMOTE_ERROR'
  throw new RpcError(code, outcome.message, { peer, fn, remoteName: outcome.remoteName, remoteStack: outcome.remoteStack })
}
