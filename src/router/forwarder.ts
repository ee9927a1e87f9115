/**
 * `Forwarder`: carries a frame, hop by hop, to a peer this one has no direct link to (two
 * networks with no route between them, joined by a peer with a leg in each). A FORWARD
 * frame wraps the whole inner frame (call, reply, error, ack) with its source and
 * destination names, a hop limit and the source's signature:
 *
 * ```
 *  [FORWARD, source, destination, hopsLeft, innerFrame, signature, sourceRecord]
 *  signature = Ed25519(source's key, ['cohort/forward/v1', source, destination, innerFrame])
 * ```
 *
 * The source's signed record rides along, so a destination that has not heard of the
 * source through gossip yet can still check the signature (and learns a way back).
 *
 * Next hop: the destination itself when linked, else the neighbour whose gossip brought
 * the destination's newest record (it got that record first, so following these pointers
 * leads to the destination without loops), else any other linked neighbour; `hopsLeft`
 * bounds the walk in any case.
 *
 * Trust. Every hop is a member: a FORWARD is only accepted on a link that finished its
 * HELLO (Noise-authenticated, cohort key checked). The destination accepts the inner frame
 * only if the source is a live member it holds a signed record of, and the signature
 * verifies against the key in that record. So a forwarder can drop, delay or replay
 * frames (a replayed call id runs at most once: the callee's dedup table), and it can see
 * their contents (hops are encrypted, the path end to end is not), but it cannot forge or
 * alter a frame from another peer, nor redirect one to another destination.
 *
 * ```ts
 * const forwarder = new Forwarder({ selfName, privateKey, membership, linkedTo, sendDirect, deliver })
 * forwarder.forward('far-away', encodeFrame([FrameType.CALL, ...]))   // false: no hop now
 * ```
 */
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { Packr } from 'msgpackr'
import { decodeFrameBody, encodeFrame, FrameType, HEADER_BYTES } from '../codec/frame.js'
import type { Membership } from '../cohort/membership/membership.js'
import { recordToWire } from '../cohort/membership/peer-record.js'

const log = logger('cohort:forward')
const canonical = new Packr({ useRecords: false, moreTypes: false })

export interface ForwarderInit {
  selfName: () => string
  privateKey: PrivateKey
  membership: Membership
  /** Whether a direct link to `name` exists now. */
  linkedTo: (name: string) => boolean
  /** Names with a direct link now. */
  linked: () => string[]
  /** Sends on a direct link only. */
  sendDirect: (peer: string, frame: Uint8Array) => boolean
  /** Hands an inner frame from `source` to the router, as if it had come on a link from it. */
  deliver: (source: string, peerId: string, frame: unknown[]) => void
  /** Hops a frame may take (default 8). */
  maxHops?: number
}

export interface ForwarderCounters {
  /** Frames this peer wrapped and sent towards a far peer. */
  originated: number
  /** Frames relayed for others. */
  relayed: number
  delivered: number
  /** Dropped: no next hop, hop limit reached, unknown or dead source, bad signature, bad shape. */
  noRoute: number
  hopLimit: number
  unknownSource: number
  badSignature: number
  malformed: number
}

export class Forwarder {
  readonly counters: ForwarderCounters = { originated: 0, relayed: 0, delivered: 0, noRoute: 0, hopLimit: 0, unknownSource: 0, badSignature: 0, malformed: 0 }
  private readonly maxHops: number

  constructor (private readonly init: ForwarderInit) {
    this.maxHops = init.maxHops ?? 8
  }

  /** Sends `frame` towards `destination` through neighbours; false when no neighbour can take it now. */
  forward (destination: string, frame: Uint8Array): boolean {
    const source = this.init.selfName()
    const hop = this.nextHop(destination, source, source)
    if (hop == null) return false
    const signature = this.init.privateKey.sign(signedBytes(source, destination, frame))
    if (!(signature instanceof Uint8Array)) return false
    this.counters.originated++
    return this.init.sendDirect(hop, encodeFrame([FrameType.FORWARD, source, destination, this.maxHops - 1, frame, signature, recordToWire(this.init.membership.record)]))
  }

  /** Whether some neighbour could take a frame for `destination` now. */
  canForward (destination: string): boolean {
    return this.nextHop(destination, this.init.selfName(), this.init.selfName()) != null
  }

  /** A FORWARD frame that arrived on the link from `previous`. */
  receive (previous: string, frame: unknown[]): void {
    const [, source, destination, hopsLeft, inner, signature, sourceRecord] = frame
    if (typeof source !== 'string' || typeof destination !== 'string' || typeof hopsLeft !== 'number' ||
        !(inner instanceof Uint8Array) || !(signature instanceof Uint8Array) || inner.byteLength < HEADER_BYTES) {
      this.counters.malformed++
      return
    }
    if (destination === this.init.selfName()) {
      // The record is checked like any gossiped one (signature, name binding) before it is used.
      if (Array.isArray(sourceRecord) && sourceRecord[0] === source) this.init.membership.merge(previous, [sourceRecord, 0])
      this.arrive(source, destination, inner, signature)
      return
    }
    if (hopsLeft <= 0) {
      this.counters.hopLimit++
      return
    }
    const hop = this.nextHop(destination, previous, source)
    if (hop == null || !this.init.sendDirect(hop, encodeFrame([FrameType.FORWARD, source, destination, hopsLeft - 1, inner, signature, sourceRecord]))) {
      this.counters.noRoute++
      log('no route to %s for a frame from %s', destination, source)
      return
    }
    this.counters.relayed++
  }

  private arrive (source: string, destination: string, inner: Uint8Array, signature: Uint8Array): void {
    const entry = this.init.membership.get(source)
    if (entry == null || entry.state === 'dead' || entry.record.key.byteLength === 0) {
      this.counters.unknownSource++
      return
    }
    let ok = false
    try {
      ok = publicKeyFromProtobuf(entry.record.key).verify(signedBytes(source, destination, inner), signature) === true
    } catch {}
    if (!ok) {
      this.counters.badSignature++
      return
    }
    let decoded: unknown
    try {
      decoded = decodeFrameBody(inner.subarray(HEADER_BYTES))
    } catch {}
    if (!Array.isArray(decoded) || typeof decoded[0] !== 'number' || decoded[0] === FrameType.FORWARD || decoded[0] === FrameType.GOSSIP ||
        decoded[0] === FrameType.HELLO || decoded[0] === FrameType.GOODBYE) {
      this.counters.malformed++
      return
    }
    this.counters.delivered++
    this.init.deliver(source, entry.record.peerId, decoded)
  }

  private nextHop (destination: string, previous: string, source: string): string | undefined {
    if (this.init.linkedTo(destination)) return destination
    const via = this.init.membership.get(destination)
    if (via == null || via.state === 'dead') return undefined
    const towards = via.learnedFrom
    if (towards !== previous && towards !== source && towards !== this.init.selfName() && this.init.linkedTo(towards)) return towards
    const others = this.init.linked().filter(n => n !== previous && n !== source)
    return others.length === 0 ? undefined : others[Math.floor(Math.random() * others.length)]
  }
}

function signedBytes (source: string, destination: string, inner: Uint8Array): Uint8Array {
  return canonical.pack(['cohort/forward/v1', source, destination, inner])
}
