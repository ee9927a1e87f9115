/**
 * Transport names as users write them, mapped to the canonical ones.
 */
import { RpcError } from '../errors/rpc-error.js'
import type { TransportName } from './transport.js'

const ALIASES: Record<string, TransportName> = {
  tcp: 'tcp',
  'tcp/ip': 'tcp',
  shm: 'shm',
  'shared memory': 'shm',
  rdma: 'rdma',
  infiniband: 'rdma'
}

export const ALL_TRANSPORTS: readonly TransportName[] = ['tcp', 'shm', 'rdma']

export function parseTransportNames (names: readonly string[]): TransportName[] {
  if (!Array.isArray(names) || names.length === 0) {
    throw new RpcError('BAD_ARGUMENT', 'setTransports needs a non-empty array of transport names')
  }
  const out = new Set<TransportName>()
  for (const name of names) {
    const canonical = typeof name === 'string' ? ALIASES[name.toLowerCase()] : undefined
    if (canonical == null) {
      throw new RpcError('BAD_ARGUMENT', `unknown transport '${String(name)}'; known: ${Object.keys(ALIASES).map(n => `'${n}'`).join(', ')}`)
    }
    out.add(canonical)
  }
  return [...out]
}
