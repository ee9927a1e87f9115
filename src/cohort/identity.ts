/**
 * A peer's identity is a libp2p key pair: its public half is the peer id Noise proves on
 * every connection, and a peer's name is bound to it. Persist `generateIdentity()`'s bytes
 * and pass them as `identity` so a restarted peer keeps its id.
 *
 * ```ts
 * const identity = await generateIdentity()        // Uint8Array, keep it secret
 * const rpc = new Rpc({ name: 'learner', identity })
 * ```
 */
import { createHash } from 'node:crypto'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { RpcError } from '../errors/rpc-error.js'

/** A new Ed25519 identity, serialised (libp2p protobuf form) for storage. */
export async function generateIdentity (): Promise<Uint8Array> {
  return privateKeyToProtobuf(await generateKeyPair('Ed25519'))
}

export async function loadIdentity (identity: Uint8Array | undefined): Promise<PrivateKey> {
  if (identity == null) return await generateKeyPair('Ed25519')
  if (!(identity instanceof Uint8Array)) {
    throw new RpcError('BAD_ARGUMENT', 'identity must be the Uint8Array that generateIdentity() returned')
  }
  try {
    return privateKeyFromProtobuf(identity)
  } catch (err) {
    throw new RpcError('BAD_ARGUMENT', `identity is not a serialised private key: ${(err as Error).message}`)
  }
}

/**
 * The Noise prologue for a cohort key. Both ends mix it into the handshake hash, so a
 * peer with another key (or none) fails the handshake and never reaches the call layer.
 */
export function cohortPrologue (cohortKey: string | Uint8Array | undefined): Uint8Array | undefined {
  if (cohortKey == null) return undefined
  if (typeof cohortKey !== 'string' && !(cohortKey instanceof Uint8Array)) {
    throw new RpcError('BAD_ARGUMENT', 'cohortKey must be a string or a Uint8Array')
  }
  if (cohortKey.length === 0) throw new RpcError('BAD_ARGUMENT', 'cohortKey must not be empty')
  return createHash('sha256').update('cohort/key/v1\0').update(cohortKey).digest()
}
