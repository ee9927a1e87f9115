/**
 * The one error type every call ends with when it does not end with a value.
 *
 * ```ts
 * try { await rpc.async_('host', 'bar') } catch (err) {
 *   if (err instanceof RpcError && err.code === 'TIMEOUT') retryLater()
 * }
 * ```
 */

/** Stable codes a program can switch on. */
export type RpcErrorCode =
  | 'TIMEOUT'
  | 'FUNCTION_NOT_FOUND'
  | 'PEER_NOT_FOUND'
  | 'REMOTE_ERROR'
  | 'CANCELLED'
  | 'CLOSED'
  | 'OVERLOADED'
  | 'BAD_ARGUMENT'
  | 'BAD_FRAME'
  | 'NAME_TAKEN'
  | 'UNAUTHORIZED'

export const RPC_ERROR_CODES: readonly RpcErrorCode[] = [
  'TIMEOUT', 'FUNCTION_NOT_FOUND', 'PEER_NOT_FOUND', 'REMOTE_ERROR', 'CANCELLED', 'CLOSED',
  'OVERLOADED', 'BAD_ARGUMENT', 'BAD_FRAME', 'NAME_TAKEN', 'UNAUTHORIZED'
]

export interface RpcErrorDetails {
  /** The peer the call was addressed to, when there is one. */
  peer?: string
  /** The function the call was addressed to, when there is one. */
  fn?: string
  /** For REMOTE_ERROR: the `name` of the error the remote handler threw. */
  remoteName?: string
  /** For REMOTE_ERROR: the remote stack, as the remote printed it. */
  remoteStack?: string
}

export class RpcError extends Error {
  readonly code: RpcErrorCode
  readonly peer?: string
  readonly fn?: string
  readonly remoteName?: string
  readonly remoteStack?: string

  constructor (code: RpcErrorCode, message: string, details: RpcErrorDetails = {}) {
    super(message)
    this.name = 'RpcError'
    this.code = code
    this.peer = details.peer
    this.fn = details.fn
    this.remoteName = details.remoteName
    this.remoteStack = details.remoteStack
    if (details.remoteStack != null) {
      // Keep both sides in view: where the caller was, then where the remote threw.
      this.stack = `${this.stack ?? ''}\n    --- remote stack (peer '${details.peer ?? '?'}') ---\n${details.remoteStack}`
    }
  }
}

export function isRpcErrorCode (code: unknown): code is RpcErrorCode {
  return typeof code === 'string' && (RPC_ERROR_CODES as readonly string[]).includes(code)
}

/** "function 'bar' on peer 'host'": the phrase every call error message starts from. */
export function describeCall (peer: string, fn: string): string {
  return `function '${fn}' on peer '${peer}'`
}

/**
 * The one place a thrown value from a handler becomes the fields of an error frame.
 * An `RpcError` thrown by a handler keeps its code (a handler may say OVERLOADED or
 * BAD_ARGUMENT itself); anything else is REMOTE_ERROR.
 */
export function errorToWire (err: unknown): { code: RpcErrorCode, name: string, message: string, stack: string } {
  if (err instanceof RpcError) {
    return { code: err.code, name: err.remoteName ?? err.name, message: err.message, stack: err.remoteStack ?? err.stack ?? '' }
  }
  if (err instanceof Error) {
    return { code: 'REMOTE_ERROR', name: err.name, message: err.message, stack: err.stack ?? '' }
  }
  return { code: 'REMOTE_ERROR', name: 'Error', message: `handler threw a non-Error value: ${safeString(err)}`, stack: '' }
}

/** The one place an error frame becomes the caller's `RpcError`. */
export function errorFromWire (peer: string, fn: string, code: unknown, name: unknown, message: unknown, stack: unknown): RpcError {
  const safeCode = isRpcErrorCode(code) ? code : 'REMOTE_ERROR'
  const text = typeof message === 'string' ? message : safeString(message)
  const remoteName = typeof name === 'string' ? name : 'Error'
  if (safeCode === 'REMOTE_ERROR') {
    return new RpcError('REMOTE_ERROR', `${describeCall(peer, fn)} threw ${remoteName}: ${text}`, {
      peer, fn, remoteName, remoteStack: typeof stack === 'string' && stack !== '' ? stack : undefined
    })
  }
  return new RpcError(safeCode, text, { peer, fn })
}

function safeString (value: unknown): string {
  try {
    return String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}
