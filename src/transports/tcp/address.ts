/**
 * Addresses as users write them (`host:port`, `tcp://host:port`, a multiaddr) to and
 * from libp2p multiaddrs.
 */
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { RpcError } from '../../errors/rpc-error.js'
import { isIP } from 'node:net'

export function toMultiaddr (address: string): Multiaddr {
  if (typeof address !== 'string' || address === '') {
    throw new RpcError('BAD_ARGUMENT', `address must be a non-empty string, got ${typeof address}`)
  }
  if (address.startsWith('/')) {
    try {
      return multiaddr(address)
    } catch (err) {
      throw new RpcError('BAD_ARGUMENT', `'${address}' is not a valid multiaddr: ${(err as Error).message}`)
    }
  }
  const hostPort = address.startsWith('tcp://') ? address.slice('tcp://'.length) : address
  const match = /^(?:\[([^\]]+)\]|([^:/\s]+)):(\d{1,5})$/.exec(hostPort)
  if (match == null) {
    throw new RpcError('BAD_ARGUMENT', `'${address}' is not an address: use host:port, tcp://host:port or a multiaddr`)
  }
  const host = match[1] ?? match[2]
  const port = Number(match[3])
  if (port > 65535) throw new RpcError('BAD_ARGUMENT', `port ${port} in '${address}' is above 65535`)
  const family = isIP(host)
  if (family === 4) return multiaddr(`/ip4/${host}/tcp/${port}`)
  if (family === 6) return multiaddr(`/ip6/${host}/tcp/${port}`)
  if (host === 'localhost') return multiaddr(`/ip4/127.0.0.1/tcp/${port}`)
  return multiaddr(`/dns/${host}/tcp/${port}`)
}

/** `host:port` for a TCP multiaddr; the multiaddr string for anything else. */
export function fromMultiaddr (ma: Multiaddr): string {
  const parts = ma.getComponents()
  const ip = parts.find(p => p.name === 'ip4' || p.name === 'ip6' || p.name === 'dns' || p.name === 'dns4' || p.name === 'dns6')
  const tcp = parts.find(p => p.name === 'tcp')
  if (ip?.value == null || tcp?.value == null) return ma.toString()
  return ip.name === 'ip6' ? `[${ip.value}]:${tcp.value}` : `${ip.value}:${tcp.value}`
}
