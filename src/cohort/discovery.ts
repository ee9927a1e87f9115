/**
 * `Discovery`: runs this peer's `Membership` over its real links and puts what it learns
 * to use. It is the router's extension (see RouterExtension): GOSSIP frames go to the
 * membership and FORWARD frames to the forwarder; a frame for a peer with no direct link
 * is sent by the cheapest way that works:
 *
 * ```
 *  name unknown (or dead) ──► ask neighbours; a call waits (its lookup timer, within its deadline)
 *  known, no link, dialable ──► dial its addresses; a call waits for the link (peerUp sends it)
 *  known, dial failed ──────► forward hop by hop (router/forwarder.ts); retry the dial after a while
 * ```
 *
 * Replies, errors and acks never wait: they are forwarded at once while a dial is tried.
 * SWIM's verdicts reach the call table: a dead peer's calls fail with PEER_NOT_FOUND at
 * once; a peer known only through gossip that restarted fails the calls its predecessor
 * held. A HELLO under a live member's name with another key is refused (NAME_TAKEN).
 *
 * Not done here: links from on-demand dials are not kept (redialed) when lost, only used
 * until then; the next hop of a forwarded frame follows gossip's reverse path or a random
 * neighbour, with no route advertisements; the sync() worker has gossip off and reaches a
 * peer only by its gossiped addresses.
 *
 * ```ts
 * const discovery = new Discovery({ privateKey, transport, directory, router, calls, ... })
 * router.extension = discovery
 * discovery.start()
 * ```
 */
import type { PrivateKey } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { encodeFrame, FrameType } from '../codec/frame.js'
import { RpcError } from '../errors/rpc-error.js'
import type { CallTable } from '../calls/call-table.js'
import type { CallerSlot } from '../endpoints/dispatcher.js'
import { Forwarder } from '../router/forwarder.js'
import type { Router, RouterExtension } from '../router/router.js'
import type { Transport } from '../transports/transport.js'
import { Membership, type ChangeKind, type MembershipOptions } from './membership/membership.js'
import type { MemberEntry } from './membership/member-table.js'
import { ed25519RecordSigner, ed25519RecordVerifier, localHostIdentity, type PeerRecord } from './membership/peer-record.js'
import type { PeerDirectory } from './peer-directory.js'
import { chooseTwoRandom, type PeerScores } from './peer-chooser.js'

const log = logger('cohort:discovery')

export interface DiscoveryInit {
  selfName: () => string
  peerId: string
  /** Process start time in ms (the record's incarnation). */
  incarnation: number
  privateKey: PrivateKey
  transport: Transport
  directory: PeerDirectory
  router: Router
  calls: CallTable
  /** Addresses this peer listens on (tcp). */
  addresses: () => string[]
  /** Functions this peer defines now. */
  functions: () => string[]
  /** Limit on one on-demand dial plus handshake. */
  dialTimeoutMs: number
  /** After a failed dial, how long to forward instead of dialing again. */
  redialAfterMs?: number
  /** Direct links this peer keeps at least (dialing random members), so gossip does not hang on one seed. */
  minNeighbours?: number
  membership?: Partial<MembershipOptions>
  /** Told when this peer's name is held by another live key (a NAME_TAKEN refusal, or gossip). */
  nameTaken?: (error: RpcError) => void
}

export interface DiscoveryCounters {
  gossipMessagesOut: number
  gossipBytesOut: number
  gossipMessagesIn: number
  dials: number
  dialFailures: number
  lookups: number
  /** Why the last on-demand dial failed. */
  lastDialError?: string
}

/** One row of debugInfo's membership table. */
export interface MemberInfo {
  name: string
  peerId: string
  state: string
  incarnation: number
  version: number
  addresses: Array<[string, string[]]>
  host: { bootId: string, uid: number }
  functions: number
  /** 'self', or the neighbour whose gossip brought the newest record. */
  learnedFrom: string
  lastHeardMsAgo: number
  directLink: boolean
}

export class Discovery implements RouterExtension {
  readonly membership: Membership
  readonly forwarder: Forwarder
  readonly counters: DiscoveryCounters = { gossipMessagesOut: 0, gossipBytesOut: 0, gossipMessagesIn: 0, dials: 0, dialFailures: 0, lookups: 0 }
  private timer?: NodeJS.Timeout
  private readonly dialing = new Set<string>()
  private readonly unreachableUntil = new Map<string, number>()
  private readonly asked = new Map<string, number>()
  private readonly farSlots = new Map<string, CallerSlot & { peerId: string }>()
  private lastSelf = ''
  private lastRefusalSeen = 0
  private stopped = false

  constructor (private readonly init: DiscoveryInit) {
    const signer = ed25519RecordSigner(init.privateKey)
    this.membership = new Membership({
      name: init.selfName(),
      peerId: init.peerId,
      incarnation: init.incarnation,
      host: localHostIdentity(),
      addrs: [['tcp', init.addresses()]],
      fns: init.functions()
    }, {
      now: Date.now,
      random: Math.random,
      send: (to, message) => this.sendGossip(to, message),
      canReach: name => this.linkedTo(name),
      linked: () => this.linked(),
      signer,
      verifier: ed25519RecordVerifier,
      events: {
        change: (entry, kind) => { this.changed(entry, kind) },
        nameLost: holder => { this.nameLost(holder) }
      }
    }, init.membership)
    this.lastSelf = this.selfSummary()
    this.forwarder = new Forwarder({
      selfName: init.selfName,
      privateKey: init.privateKey,
      membership: this.membership,
      linkedTo: name => this.linkedTo(name),
      linked: () => this.linked(),
      sendDirect: (peer, frame) => init.router.send(peer, frame, 'direct'),
      deliver: (source, peerId, frame) => {
        // A frame from the source is news that it lives (SWIM counts it as an answer to a probe).
        const entry = this.membership.table.mutable(source)
        if (entry != null && entry.record.peerId === peerId) entry.lastHeard = Date.now()
        init.router.receive(this.slotFor(source, peerId), frame)
      }
    })
  }

  start (): void {
    this.membership.start()
    this.timer = setInterval(() => { this.tick() }, this.membership.options.gossipIntervalMs)
    this.timer.unref()
  }

  stop (): void {
    this.stopped = true
    this.membership.stop()
    clearInterval(this.timer)
  }

  /** A peer this one has a direct link to now. */
  linkedTo (name: string): boolean {
    return this.init.directory.linkFor(name) != null
  }

  /**
   * Linked members, the neighbours to gossip with and forward through. A linked peer whose
   * record has not come within a few seconds does not gossip (a sync() worker, or a peer with
   * gossip off) and is left out.
   */
  linked (): string[] {
    const out: string[] = []
    const now = Date.now()
    for (const session of this.init.directory.sessions()) {
      if (session.link() == null) continue
      if (this.membership.get(session.name) != null || now - session.firstSeen < 5_000) out.push(session.name)
    }
    return out
  }

  /** A direct link came up: greet the neighbour with our record at once. */
  linkUp (name: string): void {
    this.unreachableUntil.delete(name)
    this.membership.greet(name)
  }

  /** The key gossip says holds a live name (for the HELLO check), if any. */
  holderOf (name: string): string | undefined {
    const entry = this.membership.get(name)
    return entry == null || entry.state === 'dead' || name === this.init.selfName() ? undefined : entry.record.peerId
  }

  /** Addresses gossip knows for `name` (for sync()). */
  addressesOf (name: string): string[] {
    const entry = this.membership.get(name)
    return entry == null ? [] : tcpAddresses(entry)
  }

  /** Another key holds our name in the cohort (we claimed it later). */
  get nameTakenBy (): PeerRecord | undefined {
    return this.membership.nameLostTo
  }

  /** A live member that defines `fn`, by power of two choices on `scores`; undefined when none is known. */
  choose (fn: string, scores: PeerScores, selfDefines: boolean): string | undefined {
    const candidates: string[] = selfDefines ? [this.init.selfName()] : []
    for (const entry of this.membership.alive()) {
      if (entry.state === 'alive' && entry.record.fns.includes(fn)) candidates.push(entry.record.name)
    }
    return chooseTwoRandom(candidates, scores, Math.random)
  }

  // ---- RouterExtension ------------------------------------------------------------------

  route (peer: string, frame: Uint8Array, call: boolean): boolean {
    if (this.stopped) return false
    const entry = this.membership.get(peer)
    if (entry == null || entry.state === 'dead') {
      this.lookup(peer)
      return false
    }
    // A peer that does not listen (a dial-only client) can only be reached by forwarding.
    if (tcpAddresses(entry).length > 0 && this.dialable(peer)) {
      this.dial(entry)
      if (call) return false // the call table sends it on peerUp, or after the dial failed
    } else if (this.dialing.has(peer) && call) {
      return false
    }
    return this.forwarder.forward(peer, frame)
  }

  receive (from: CallerSlot, frame: unknown[]): boolean {
    if (frame[0] === FrameType.GOSSIP) {
      if (from.name !== this.init.selfName()) {
        this.counters.gossipMessagesIn++
        this.membership.receive(from.name, frame[1])
      }
      return true
    }
    if (frame[0] === FrameType.FORWARD) {
      if (from.name !== this.init.selfName()) this.forwarder.receive(from.name, frame)
      return true
    }
    return false
  }

  // ---- debugInfo ------------------------------------------------------------------------

  table (): MemberInfo[] {
    const now = Date.now()
    const out: MemberInfo[] = []
    for (const entry of this.membership.table) {
      const r = entry.record
      out.push({
        name: r.name,
        peerId: r.peerId,
        state: entry.state,
        incarnation: r.incarnation,
        version: r.version,
        addresses: r.addrs,
        host: r.host,
        functions: r.fns.length,
        learnedFrom: entry.learnedFrom,
        lastHeardMsAgo: entry.learnedFrom === 'self' ? 0 : now - entry.lastHeard,
        directLink: this.linkedTo(r.name)
      })
    }
    return out
  }

  // ---- internals ------------------------------------------------------------------------

  private tick (): void {
    if (this.stopped) return
    const summary = this.selfSummary()
    if (summary !== this.lastSelf) {
      this.lastSelf = summary
      this.membership.updateSelf({ addrs: [['tcp', this.init.addresses()]], fns: this.init.functions() })
    }
    this.membership.tick()
    this.keepNeighbours()
    const refusal = this.init.directory.lastRefusal
    if (refusal != null && refusal.code === 'NAME_TAKEN' && refusal.at > this.lastRefusalSeen) {
      this.lastRefusalSeen = refusal.at
      this.tellNameTaken(`name '${this.init.selfName()}' is taken: ${refusal.message}`)
    }
  }

  private selfSummary (): string {
    return JSON.stringify([this.init.addresses(), this.init.functions()])
  }

  private sendGossip (to: string, message: unknown[]): boolean {
    const frame = encodeFrame([FrameType.GOSSIP, message])
    if (!this.init.router.send(to, frame, 'direct')) return false
    this.counters.gossipMessagesOut++
    this.counters.gossipBytesOut += frame.byteLength
    return true
  }

  /** Dials a random live member when this peer has fewer than `minNeighbours` links. */
  private keepNeighbours (): void {
    const min = this.init.minNeighbours ?? 3
    if (this.linked().length >= min || this.dialing.size > 0) return
    for (let attempt = 0; attempt < 4; attempt++) {
      const name = this.membership.table.randomName(Math.random)
      const entry = name == null ? undefined : this.membership.get(name)
      if (entry == null || entry.state !== 'alive' || name === this.init.selfName() || this.linkedTo(entry.record.name) || !this.dialable(entry.record.name)) continue
      this.dial(entry)
      return
    }
  }

  private dialable (name: string): boolean {
    if (this.dialing.has(name)) return false
    const until = this.unreachableUntil.get(name)
    return until == null || until <= Date.now()
  }

  private dial (entry: MemberEntry): void {
    const name = entry.record.name
    const peerId = entry.record.peerId
    const addresses = tcpAddresses(entry)
    if (addresses.length === 0 || this.dialing.has(name)) return
    this.dialing.add(name)
    this.counters.dials++
    void (async () => {
      for (const address of addresses) {
        if (this.stopped) break
        try {
          const link = await this.init.transport.dial(address, AbortSignal.timeout(this.init.dialTimeoutMs))
          if (link.remotePeerId !== peerId) {
            // Another process now listens there; the directory binds it under its own name.
            void this.init.directory.attach(link, `gossip: ${address}`).catch(() => {})
            continue
          }
          await this.init.directory.attach(link, `gossip: ${address}`)
          this.dialing.delete(name)
          return
        } catch (err) {
          this.counters.lastDialError = `${name} at ${address}: ${(err as Error).message}`
          log('dial %s at %s failed: %s', name, address, (err as Error).message)
        }
      }
      this.dialing.delete(name)
      if (this.stopped) return
      this.counters.dialFailures++
      this.unreachableUntil.set(name, Date.now() + (this.init.redialAfterMs ?? 10_000))
      // Calls that waited for the dial go by forwarding now.
      this.init.calls.flush(name)
    })()
  }

  private lookup (name: string): void {
    const now = Date.now()
    const last = this.asked.get(name)
    if (last != null && now - last < 500) return
    if (this.asked.size > 1024) this.asked.clear()
    this.asked.set(name, now)
    this.counters.lookups++
    this.membership.ask(name)
  }

  private changed (entry: MemberEntry, kind: ChangeKind): void {
    const name = entry.record.name
    switch (kind) {
      case 'join':
      case 'update':
      case 'alive':
        this.init.calls.flush(name)
        break
      case 'restart':
        this.farSlots.delete(name)
        this.unreachableUntil.delete(name)
        // A peer with a direct link restarts through its HELLO; one known only by gossip restarts here.
        if (!this.linkedTo(name)) this.init.calls.onPeerUp(name, true)
        break
      case 'dead': {
        this.unreachableUntil.delete(name)
        // With an open direct link the link decides (a killed process's TCP link closes at once, and
        // the call table's reconnect grace fails its calls); SWIM's verdict may be a false suspicion
        // of a peer too busy to answer probes, which it will refute.
        if (this.linkedTo(name)) break
        // Likewise a peer whose forwarded frames reached us a moment ago.
        if (Date.now() - entry.lastHeard < 2 * this.membership.options.probeIntervalMs) break
        this.init.calls.failPeer(name, `the cohort declared peer '${name}' dead (no answer to direct or indirect probes)`)
        break
      }
      default:
        break
    }
  }

  private nameLost (holder: PeerRecord): void {
    this.tellNameTaken(`name '${holder.name}' is held by another live peer (${holder.peerId}) that claimed it first`)
  }

  private tellNameTaken (message: string): void {
    log.error(message)
    try {
      this.init.nameTaken?.(new RpcError('NAME_TAKEN', message))
    } catch (err) {
      queueMicrotask(() => { throw err })
    }
  }

  /** The caller slot (dedup state) for frames forwarded from `source`: its session when it has one, else a slot of its own. */
  private slotFor (source: string, peerId: string): CallerSlot {
    const session = this.init.directory.get(source)
    if (session != null && session.peerId === peerId) return session
    let slot = this.farSlots.get(source)
    if (slot == null || slot.peerId !== peerId) {
      if (this.farSlots.size > 4096) this.farSlots.clear()
      slot = { name: source, peerId, calleeState: undefined }
      this.farSlots.set(source, slot)
    }
    return slot
  }
}

function tcpAddresses (entry: MemberEntry): string[] {
  return entry.record.addrs.find(a => a[0] === 'tcp')?.[1] ?? []
}
