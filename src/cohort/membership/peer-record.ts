/**
 * `PeerRecord`: what a peer says of itself to the cohort, signed with its libp2p key so
 * that nobody else can put words in its mouth (other addresses, other functions, its name
 * bound to another key). A record travels inside gossip as a compact array; the receiver
 * checks that the public key in it hashes to the claimed peer id and that the signature
 * covers every field, and drops (and counts) a record that fails.
 *
 * Records are ordered by (incarnation, version): the incarnation is the process start
 * time, so a restarted process outranks its predecessor; the version counts changes within
 * one process (addresses, functions, refuting a suspicion).
 *
 * ```ts
 * const signer = ed25519RecordSigner(privateKey)
 * const record = signer.sign({ name: 'learner', peerId, incarnation: Date.now(), version: 1,
 *   addrs: [['tcp', ['127.0.0.1:1234']]], host: localHostIdentity(), fns: ['step'] })
 * ed25519RecordVerifier.verify(recordFromWire(recordToWire(record))) // true
 * ```
 */
import { readFileSync } from 'node:fs'
import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { Packr } from 'msgpackr'

/** Where a peer runs: same boot id and uid means shared memory can reach it. */
export interface HostIdentity {
  bootId: string
  uid: number
}

export interface PeerRecord {
  name: string
  /** libp2p peer id (base58 multihash of `key`). */
  peerId: string
  /** Process start time in ms: a restart outranks the process before it. */
  incarnation: number
  /** Changes within one incarnation (addresses, functions, refuted suspicion). */
  version: number
  /** Addresses per transport, as [transport, addresses] pairs (an array so the signed bytes are canonical). */
  addrs: Array<[string, string[]]>
  host: HostIdentity
  /** Functions the peer defines. */
  fns: string[]
  /** libp2p protobuf encoding of the public key; empty in simulations that skip crypto. */
  key: Uint8Array
  sig: Uint8Array
}

export type UnsignedRecord = Omit<PeerRecord, 'key' | 'sig'>

/** Signs this peer's own record. */
export interface RecordSigner {
  sign: (record: UnsignedRecord) => PeerRecord
}

/** Checks a record received from someone else. */
export interface RecordVerifier {
  verify: (record: PeerRecord) => boolean
}

/** A record as it travels: [name, peerId, incarnation, version, addrs, bootId, uid, fns, key, sig]. */
export type WireRecord = [string, string, number, number, Array<[string, string[]]>, string, number, string[], Uint8Array, Uint8Array]

// A plain packr (no records, no structured clone): the same fields always give the same bytes.
const canonical = new Packr({ useRecords: false, moreTypes: false })
const DOMAIN = 'cohort/peer-record/v1'

/** The bytes a record's signature covers. */
export function signedBytes (record: Omit<PeerRecord, 'sig'>): Uint8Array {
  return canonical.pack([DOMAIN, record.name, record.peerId, record.incarnation, record.version, record.addrs,
    record.host.bootId, record.host.uid, record.fns, record.key])
}

export function recordToWire (r: PeerRecord): WireRecord {
  return [r.name, r.peerId, r.incarnation, r.version, r.addrs, r.host.bootId, r.host.uid, r.fns, r.key, r.sig]
}

/** Parses a wire record; undefined when its shape is wrong (the caller counts it as rejected). */
export function recordFromWire (w: unknown): PeerRecord | undefined {
  if (!Array.isArray(w) || w.length !== 10) return undefined
  const [name, peerId, incarnation, version, addrs, bootId, uid, fns, key, sig] = w as unknown[]
  if (typeof name !== 'string' || name === '' || name.length > 256 || typeof peerId !== 'string' || peerId.length > 128) return undefined
  if (!isCount(incarnation) || !isCount(version) || typeof bootId !== 'string' || bootId.length > 64 || !isCount(uid)) return undefined
  if (!Array.isArray(addrs) || addrs.length > 8 || !addrs.every(isTransportAddrs)) return undefined
  if (!Array.isArray(fns) || fns.length > 4096 || !fns.every(f => typeof f === 'string')) return undefined
  if (!(key instanceof Uint8Array) || !(sig instanceof Uint8Array) || key.byteLength > 128 || sig.byteLength > 128) return undefined
  return { name, peerId, incarnation, version, addrs: addrs as Array<[string, string[]]>, host: { bootId, uid }, fns: fns as string[], key, sig }
}

function isCount (x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}

function isTransportAddrs (x: unknown): boolean {
  return Array.isArray(x) && x.length === 2 && typeof x[0] === 'string' && Array.isArray(x[1]) &&
    x[1].length <= 16 && x[1].every((a: unknown) => typeof a === 'string' && a.length <= 512)
}

/** Signs with the peer's libp2p Ed25519 key (the key Noise authenticates on every link). */
export function ed25519RecordSigner (privateKey: PrivateKey): RecordSigner {
  const key = publicKeyToProtobuf(privateKey.publicKey)
  return {
    sign (record) {
      const unsigned = { ...record, key }
      const sig = privateKey.sign(signedBytes(unsigned))
      if (!(sig instanceof Uint8Array)) throw new Error('record signing must be synchronous (Ed25519 in Node is)')
      return { ...unsigned, sig }
    }
  }
}

/** Checks that `key` is the peer id's key and the signature covers the record. */
export const ed25519RecordVerifier: RecordVerifier = {
  verify (record) {
    try {
      const publicKey = publicKeyFromProtobuf(record.key)
      if (publicKey.toString() !== record.peerId) return false
      const ok = publicKey.verify(signedBytes(record), record.sig)
      return ok === true // a Promise (not Node's Ed25519) counts as a failure
    } catch {
      return false
    }
  }
}

/** For simulations that measure the protocol, not the crypto: signs nothing, accepts all. */
export const unsignedRecords: RecordSigner & RecordVerifier = {
  sign: record => ({ ...record, key: new Uint8Array(0), sig: new Uint8Array(0) }),
  verify: () => true
}

let hostIdentity: HostIdentity | undefined

/** This machine's boot id and this process's uid. */
export function localHostIdentity (): HostIdentity {
  if (hostIdentity != null) return hostIdentity
  let bootId = 'unknown'
  try {
    bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {}
  hostIdentity = { bootId, uid: typeof process.getuid === 'function' ? process.getuid() : -1 >>> 0 }
  return hostIdentity
}

/** a > b: 1, equal: 0, a < b: -1, comparing (incarnation, version). */
export function compareVersions (a: { incarnation: number, version: number }, b: { incarnation: number, version: number }): number {
  if (a.incarnation !== b.incarnation) return a.incarnation > b.incarnation ? 1 : -1
  if (a.version !== b.version) return a.version > b.version ? 1 : -1
  return 0
}
