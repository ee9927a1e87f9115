/**
 * The sync worker: its own Rpc (own key, own name) that makes the calls `sync()` hands it
 * and posts each outcome back, then wakes the blocked thread. See sync-caller.ts.
 */
import { workerData, type MessagePort } from 'node:worker_threads'
import { randomBytes } from 'node:crypto'
import { Rpc } from '../rpc.js'
import { RpcError } from '../errors/rpc-error.js'
import type { SyncCallRequest, SyncOutcome, SyncWorkerConfig } from './sync-caller.js'

const { config, port, done } = workerData as { config: SyncWorkerConfig, port: MessagePort, done: Int32Array }

const rpc = new Rpc({
  name: `${config.name}#sync-${randomBytes(4).toString('hex')}`,
  cohortKey: config.cohortKey,
  maxFrameBytes: config.maxFrameBytes,
  lookupTimeout: config.lookupTimeoutMs / 1000,
  shmArenaBytes: config.shmArenaBytes,
  // A helper of its parent, not a member of the cohort: it dials the callee's addresses directly.
  gossip: false
})

function post (outcome: SyncOutcome): void {
  try {
    port.postMessage(outcome)
  } catch (err) {
    port.postMessage({ seq: outcome.seq, ok: false, code: 'BAD_ARGUMENT', message: `the result cannot be handed to the calling thread: ${(err as Error).message}` })
  }
  Atomics.store(done, 0, outcome.seq)
  Atomics.notify(done, 0)
}

port.on('message', (request: SyncCallRequest) => {
  try {
    call(request)
  } catch (err) {
    // Whatever goes wrong, the blocked thread gets an outcome.
    const rpcError = err instanceof RpcError ? err : new RpcError('BAD_ARGUMENT', (err as Error)?.message ?? String(err))
    post({ seq: request.seq, ok: false, code: rpcError.code, message: rpcError.message })
  }
})

function call (request: SyncCallRequest): void {
  for (const address of request.addresses) {
    try {
      rpc.connect(address)
    } catch {
      // An address a peer advertised that does not parse: skip it, the others may do.
    }
  }
  rpc.setTimeout(request.timeoutMs / 1000)
  rpc.asyncCallback(request.peer, request.fn, (value, error) => {
    if (error == null) {
      post({ seq: request.seq, ok: true, value })
    } else {
      const err = error instanceof RpcError ? error : new RpcError('REMOTE_ERROR', String(error))
      post({ seq: request.seq, ok: false, code: err.code, message: err.message, remoteName: err.remoteName, remoteStack: err.remoteStack })
    }
  }, ...request.args)
}
