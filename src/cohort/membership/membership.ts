/**
 * `Membership`: who is in the cohort, and who of them is alive. Pure protocol logic with
 * no sockets and no timers of its own: the host hands in a clock, a random source and
 * `send(peerName, message)`, calls `tick()` every `gossipIntervalMs` and `receive()` for
 * every gossip message. Real peers (cohort/gossip-node.ts) and the simulation
 * (bench/discovery/simulate.ts) run this same code.
 *
 * Three mechanisms, all with bounded message sizes whatever the cohort's size:
 *
 * - Push of fresh news (rumours): every change to an entry is piggybacked on the next
 *   messages, at most `maxRecordsPerMessage` per message, each about
 *   `retransmitMult * ceil(log10(n + 1))` times, fewest-sent first.
 * - Anti-entropy, Scuttlebutt-like: each tick a SYN carries a page of the digest
 *   (name, incarnation, version, state) to a random neighbour; it answers with a DELTA of
 *   the entries it holds newer and the names it wants; a DELTA that asks gets a DELTA back.
 *   Pages rotate over the table, so every entry is compared sooner or later.
 * - SWIM failure detection: every `probeIntervalMs` a random member is pinged; without an
 *   ACK within `probeTimeoutMs`, `indirectProbes` others are asked to ping it; without an
 *   ACK by the end of the interval it is suspect; a suspect that does not refute (by
 *   re-signing its record with a higher version) within the suspicion timeout is dead.
 *   Dead entries stay as tombstones for `tombstoneMs`. Local health (Lifeguard's idea): a
 *   peer whose own probes keep failing, or that had to refute a suspicion of itself, is
 *   probably the slow one; it stretches its probe timeouts by (1 + health), health 0..8.
 *
 * Messages (arrays; entries are [wireRecord, stateRank]):
 *
 * ```
 *  [SYN, digest[[name, incarnation, version, rank]], news]
 *  [DELTA, entries, want[name]]
 *  [PING, seq, news, origin?]        origin: the prober when a helper pings for it
 *  [PING_REQ, seq, target, news]
 *  [ACK, seq, news, origin?]         a helper relays an ACK with an origin to the origin
 * ```
 *
 * Names: a name is bound to one key. A record for a live name with another key loses
 * unless it is older (lower incarnation, then lower peer id): all members pick the same
 * holder, and the later claimant hears of the holder (`nameLost`). Once the holder is dead
 * a new key may take the name; the same key with a higher incarnation (a restart with a
 * persisted identity) takes it at once.
 *
 * What a member can forge: state claims (suspect, dead) are not signed, so a member could
 * declare another suspect or dead; the victim refutes by re-signing. Records (name,
 * addresses, functions) are signed by their subject and cannot be forged.
 *
 * ```ts
 * const m = new Membership({ name: 'a', peerId, incarnation: Date.now(), host, addrs, fns: [] },
 *   { now: Date.now, random: Math.random, send, canReach, signer, verifier })
 * m.start(); setInterval(() => m.tick(), 200)
 * link.onGossip = msg => m.receive('b', msg)
 * ```
 */
import { compareVersions, recordFromWire, recordToWire, type HostIdentity, type PeerRecord, type RecordSigner, type RecordVerifier, type WireRecord } from './peer-record.js'
import { MemberEntry, MemberTable, RANK_STATE, STATE_RANK, type MemberState } from './member-table.js'

const MAX_HEALTH = 8

export const MessageKind = { SYN: 1, DELTA: 2, PING: 3, PING_REQ: 4, ACK: 5 } as const

export type WireEntry = [WireRecord, number]
export type GossipMessage = unknown[]

export interface MembershipOptions {
  /** How often the host calls tick(). */
  gossipIntervalMs: number
  /** Neighbours a tick pushes news to (the first also gets the digest page). */
  fanout: number
  /** Digest entries per SYN. */
  digestSize: number
  /** Records per message (news + delta), and names per want list. */
  maxRecordsPerMessage: number
  /** Each piece of news is sent about retransmitMult * ceil(log10(n + 1)) times. */
  retransmitMult: number
  probeIntervalMs: number
  probeTimeoutMs: number
  indirectProbes: number
  /** Suspicion lasts suspicionMult * max(1, log10(n + 1)) probe intervals. */
  suspicionMult: number
  /** How long a dead entry is remembered. */
  tombstoneMs: number
  /** Names the table holds at most; records of further names are dropped (and counted). */
  maxMembers: number
}

export const DEFAULT_MEMBERSHIP_OPTIONS: MembershipOptions = {
  gossipIntervalMs: 200,
  fanout: 3,
  digestSize: 16,
  maxRecordsPerMessage: 16,
  retransmitMult: 4,
  probeIntervalMs: 1000,
  probeTimeoutMs: 500,
  indirectProbes: 3,
  suspicionMult: 4,
  tombstoneMs: 60_000,
  maxMembers: 100_000
}

export interface MembershipDeps {
  now: () => number
  random: () => number
  /** Sends to a peer over a direct link; false when there is none now. */
  send: (to: string, message: GossipMessage) => boolean
  /** Whether a direct link to `name` exists now (gossip and probes only use direct links). */
  canReach: (name: string) => boolean
  /**
   * Names with a direct link now, to pick neighbours from (a real peer: its sessions).
   * Without it, neighbours are random members for which canReach() holds (a simulation).
   */
  linked?: () => string[]
  signer: RecordSigner
  verifier: RecordVerifier
  events?: Partial<MembershipEvents>
}

export type ChangeKind = 'join' | 'update' | 'restart' | 'suspect' | 'alive' | 'dead' | 'forget'

export interface MembershipEvents {
  /** An entry changed; `restart` when a new process (or a new key) holds the name. */
  change: (entry: MemberEntry, kind: ChangeKind) => void
  /** Another key holds this peer's name, and the cohort keeps it: this peer lost the name. */
  nameLost: (holder: PeerRecord) => void
}

/** What this peer says of itself; the membership signs it. */
export interface SelfDescription {
  name: string
  peerId: string
  incarnation: number
  host: HostIdentity
  addrs: Array<[string, string[]]>
  fns: string[]
}

export interface MembershipCounters {
  messagesIn: number
  messagesOut: number
  recordsAccepted: number
  /** Records whose signature or key did not verify: dropped. */
  recordsRejected: number
  /** Messages or entries that did not parse: dropped. */
  malformed: number
  /** Records for a live name under another key that lost the tie-break. */
  nameConflicts: number
  refutations: number
  /** Records of new names dropped because the table was full. */
  tableFull: number
  probes: number
  indirectProbes: number
  suspected: number
  declaredDead: number
}

interface Probe {
  target: string
  seq: number
  startedAt: number
  indirect: boolean
}

export class Membership {
  readonly table: MemberTable
  readonly options: MembershipOptions
  readonly counters: MembershipCounters = {
    messagesIn: 0, messagesOut: 0, recordsAccepted: 0, recordsRejected: 0, malformed: 0, nameConflicts: 0,
    refutations: 0, tableFull: 0, probes: 0, indirectProbes: 0, suspected: 0, declaredDead: 0
  }

  /** Set when another key holds our name (see MembershipEvents.nameLost). */
  nameLostTo?: PeerRecord
  private self: PeerRecord
  private readonly news = new Map<string, number>()
  private readonly suspects = new Set<string>()
  private readonly dead = new Set<string>()
  private probe?: Probe
  private nextProbeAt = 0
  private lastTickAt = 0
  /** Lifeguard's local health multiplier: 0 healthy .. MAX_HEALTH; stretches probe timeouts. */
  health = 0
  private seq = 0
  private cursor = 0
  private stopped = false

  constructor (self: SelfDescription, private readonly deps: MembershipDeps, options: Partial<MembershipOptions> = {}, baseline?: MemberTable) {
    this.options = { ...DEFAULT_MEMBERSHIP_OPTIONS, ...options }
    this.table = new MemberTable(baseline)
    const known = baseline?.get(self.name)?.record
    if (known != null && known.peerId === self.peerId && known.incarnation === self.incarnation) {
      this.self = known // a simulated peer that is already in the shared snapshot
    } else {
      this.self = deps.signer.sign({ ...self, version: 1 })
      this.table.set(new MemberEntry(this.self, 'alive', 'self', deps.now()))
    }
  }

  get name (): string {
    return this.self.name
  }

  get record (): PeerRecord {
    return this.self
  }

  /** Announces this peer: its record is news, and probing starts at a random phase. */
  start (): void {
    this.stopped = false
    this.news.set(this.self.name, 0)
    this.nextProbeAt = this.deps.now() + this.deps.random() * this.options.probeIntervalMs
  }

  /** Stops sending (a simulated or closing peer); receive() still answers nothing. */
  stop (): void {
    this.stopped = true
  }

  /** Changes what this peer says of itself: re-signs with the next version and spreads it. */
  updateSelf (change: { addrs?: Array<[string, string[]]>, fns?: string[] }): void {
    const { key: _k, sig: _s, ...unsigned } = this.self
    this.resign({ ...unsigned, ...change, version: this.self.version + 1 })
  }

  get (name: string): MemberEntry | undefined {
    return this.table.get(name)
  }

  /** Live members (not this peer), for lookups and function-addressed calls. */
  * alive (): Generator<MemberEntry> {
    for (const entry of this.table) {
      if (entry.state !== 'dead' && entry.record.name !== this.self.name) yield entry
    }
  }

  /** Asks up to `maxRecordsPerMessage` neighbours for a name's record (a lookup). */
  ask (name: string): number {
    let asked = 0
    for (const neighbour of this.neighbours(this.options.maxRecordsPerMessage, name)) {
      if (this.transmit(neighbour, [MessageKind.DELTA, [], [name]])) asked++
    }
    return asked
  }

  /** A new neighbour: tell it who we are and a page of what we know, without waiting for the next tick. */
  greet (name: string): void {
    if (this.stopped || name === this.self.name) return
    const self = this.table.get(this.self.name)
    const news = this.takeNews(this.options.maxRecordsPerMessage - 1).filter(e => e[0][0] !== this.self.name)
    this.transmit(name, [MessageKind.SYN, this.digestPage(), self == null ? news : [toWire(self), ...news]])
  }

  /** One round: gossip to a few neighbours, advance the probe, expire suspicion and tombstones. */
  tick (): void {
    if (this.stopped) return
    const now = this.deps.now()
    // Local health: if this peer itself stalled (a busy loop), the silence was ours; do not blame the probe target for it.
    const lag = this.lastTickAt === 0 ? 0 : now - this.lastTickAt - this.options.gossipIntervalMs
    this.lastTickAt = now
    if (lag > this.options.gossipIntervalMs && this.probe != null) this.probe.startedAt += lag
    this.gossip()
    this.advanceProbe(now)
    this.expire(now)
  }

  receive (from: string, message: unknown): void {
    if (this.stopped) return
    this.counters.messagesIn++
    if (!Array.isArray(message) || typeof message[0] !== 'number') {
      this.counters.malformed++
      return
    }
    const heard = this.table.get(from)
    if (heard != null && heard.record.name !== this.self.name) this.table.mutable(from)!.lastHeard = this.deps.now()
    switch (message[0]) {
      case MessageKind.SYN: this.onSyn(from, message); break
      case MessageKind.DELTA: this.onDelta(from, message); break
      case MessageKind.PING: this.onPing(from, message); break
      case MessageKind.PING_REQ: this.onPingReq(from, message); break
      case MessageKind.ACK: this.onAck(from, message); break
      default: this.counters.malformed++
    }
  }

  // ---- gossip ---------------------------------------------------------------------------

  private gossip (): void {
    const targets = this.neighbours(this.options.fanout)
    for (let i = 0; i < targets.length; i++) {
      if (i === 0) {
        this.transmit(targets[i], [MessageKind.SYN, this.digestPage(), this.takeNews(this.options.maxRecordsPerMessage)])
      } else if (this.news.size > 0) {
        this.transmit(targets[i], [MessageKind.SYN, [], this.takeNews(this.options.maxRecordsPerMessage)])
      }
    }
  }

  private digestPage (): unknown[] {
    const size = this.table.size
    const count = Math.min(size, this.options.digestSize)
    const page: unknown[] = []
    for (let i = 0; i < count; i++) {
      const entry = this.table.get(this.table.nameAt((this.cursor + i) % size))
      if (entry != null) page.push([entry.record.name, entry.record.incarnation, entry.record.version, STATE_RANK[entry.state]])
    }
    this.cursor = size === 0 ? 0 : (this.cursor + count) % size
    return page
  }

  private onSyn (from: string, message: unknown[]): void {
    const [, digest, news] = message
    this.mergeAll(from, news)
    if (!Array.isArray(digest)) {
      this.counters.malformed++
      return
    }
    const delta: WireEntry[] = []
    const want: string[] = []
    const max = this.options.maxRecordsPerMessage
    for (const item of digest.slice(0, this.options.digestSize * 4)) {
      if (!Array.isArray(item) || typeof item[0] !== 'string' || typeof item[1] !== 'number' || typeof item[2] !== 'number' || typeof item[3] !== 'number') {
        this.counters.malformed++
        continue
      }
      const local = this.table.get(item[0])
      const order = local == null ? -1 : compareClaims(local.record, STATE_RANK[local.state], { incarnation: item[1], version: item[2] }, item[3])
      if (order < 0 && want.length < max) want.push(item[0])
      else if (order > 0 && delta.length < max && local != null) delta.push(toWire(local))
    }
    if (delta.length > 0 || want.length > 0) this.transmit(from, [MessageKind.DELTA, delta, want])
  }

  private onDelta (from: string, message: unknown[]): void {
    const [, entries, want] = message
    this.mergeAll(from, entries)
    if (!Array.isArray(want) || want.length === 0) return
    const reply: WireEntry[] = []
    for (const name of want.slice(0, this.options.maxRecordsPerMessage)) {
      const local = typeof name === 'string' ? this.table.get(name) : undefined
      if (local != null) reply.push(toWire(local))
    }
    if (reply.length > 0) this.transmit(from, [MessageKind.DELTA, reply, []])
  }

  /** The least-sent news, at most `max`; each counts as sent once more. */
  private takeNews (max: number, mustInclude?: string): WireEntry[] {
    const out: WireEntry[] = []
    if (mustInclude != null) {
      const entry = this.table.get(mustInclude)
      if (entry != null) out.push(toWire(entry))
    }
    if (this.news.size === 0) return out
    const limit = this.options.retransmitMult * Math.ceil(Math.log10(this.table.size + 1))
    const picked = [...this.news].sort((a, b) => a[1] - b[1]).slice(0, max - out.length)
    for (const [name, sent] of picked) {
      const entry = this.table.get(name)
      if (entry == null || sent + 1 >= limit) this.news.delete(name)
      else this.news.set(name, sent + 1)
      if (entry != null && name !== mustInclude) out.push(toWire(entry))
    }
    return out
  }

  private mergeAll (from: string, entries: unknown): void {
    if (entries == null) return
    if (!Array.isArray(entries)) {
      this.counters.malformed++
      return
    }
    for (const item of entries.slice(0, this.options.maxRecordsPerMessage * 2)) this.merge(from, item)
  }

  /** Applies one entry (a signed record and a state claim about it). */
  merge (from: string, item: unknown): void {
    const record = Array.isArray(item) ? recordFromWire(item[0]) : undefined
    const rank = Array.isArray(item) ? item[1] : undefined
    if (record == null || (rank !== 0 && rank !== 1 && rank !== 2)) {
      this.counters.malformed++
      return
    }
    const now = this.deps.now()
    if (record.name === this.self.name) {
      this.mergeAboutSelf(record, rank)
      return
    }
    const local = this.table.get(record.name)
    if (local == null) {
      if (this.table.size >= this.options.maxMembers) {
        this.counters.tableFull++
        return
      }
      if (!this.verify(record)) return
      const entry = new MemberEntry(record, RANK_STATE[rank], from, now)
      this.table.set(entry)
      this.trackState(entry)
      this.changed(entry, rank === 0 ? 'join' : RANK_STATE[rank])
      return
    }
    if (local.record.peerId !== record.peerId) {
      const buried = local.buried
      if (buried != null && buried.peerId === record.peerId && record.incarnation <= buried.incarnation) return
      if (local.state !== 'dead' && !older(record, local.record)) {
        // A second live key for the name: the holder stays; tell the claimant.
        this.counters.nameConflicts++
        this.news.set(local.record.name, 0)
        return
      }
      if (local.state === 'dead' && rank === 2) return
      if (!this.verify(record)) return
      const entry = this.table.mutable(record.name)!
      entry.buried = local.state === 'dead' ? { peerId: local.record.peerId, incarnation: local.record.incarnation } : undefined
      this.replace(entry, record, rank, from, now, 'restart')
      return
    }
    const order = compareVersions(record, local.record)
    if (order < 0 || (order === 0 && rank <= STATE_RANK[local.state])) return
    if (order === 0) {
      // Same record, worse news about it.
      const entry = this.table.mutable(record.name)!
      entry.state = RANK_STATE[rank]
      entry.since = now
      this.trackState(entry)
      this.changed(entry, entry.state)
      return
    }
    if (!this.verify(record)) return
    const entry = this.table.mutable(record.name)!
    const restarted = record.incarnation !== local.record.incarnation
    const kind: ChangeKind = restarted ? 'restart' : rank === 0 && local.state !== 'alive' ? 'alive' : rank === 0 ? 'update' : RANK_STATE[rank]
    this.replace(entry, record, rank, from, now, kind)
  }

  private replace (entry: MemberEntry, record: PeerRecord, rank: number, from: string, now: number, kind: ChangeKind): void {
    entry.record = record
    entry.state = RANK_STATE[rank]
    entry.learnedFrom = from
    entry.lastHeard = now
    entry.since = now
    this.trackState(entry)
    this.changed(entry, kind)
  }

  private mergeAboutSelf (record: PeerRecord, rank: number): void {
    const self = this.self
    if (record.peerId === self.peerId) {
      const order = compareVersions(record, self)
      if (order === 0 && rank > 0) {
        // Someone suspects us, or thinks us dead: refute with a higher version.
        this.counters.refutations++
        this.health = Math.min(MAX_HEALTH, this.health + 1)
        this.updateSelf({})
      } else if (order > 0 && record.incarnation > self.incarnation && this.verify(record)) {
        // A newer process with our own identity: it has taken the name back.
        this.lose(record)
      }
      return
    }
    if (rank === 2 || !older(record, self)) {
      this.counters.nameConflicts++
      this.news.set(self.name, 0) // spread our claim so the later claimant hears of it
      return
    }
    if (this.verify(record)) this.lose(record)
  }

  private lose (holder: PeerRecord): void {
    if (this.nameLostTo != null && compareVersions(holder, this.nameLostTo) <= 0 && holder.peerId === this.nameLostTo.peerId) return
    this.nameLostTo = holder
    this.deps.events?.nameLost?.(holder)
  }

  private verify (record: PeerRecord): boolean {
    if (this.deps.verifier.verify(record)) {
      this.counters.recordsAccepted++
      return true
    }
    this.counters.recordsRejected++
    return false
  }

  private resign (unsigned: Omit<PeerRecord, 'key' | 'sig'>): void {
    this.self = this.deps.signer.sign(unsigned)
    const entry = this.table.mutable(this.self.name)
    if (entry != null && entry.record.peerId === this.self.peerId) {
      entry.record = this.self
      entry.state = 'alive'
    } else if (entry == null) {
      this.table.set(new MemberEntry(this.self, 'alive', 'self', this.deps.now()))
    }
    this.news.set(this.self.name, 0)
  }

  private changed (entry: MemberEntry, kind: ChangeKind): void {
    this.news.set(entry.record.name, 0)
    this.deps.events?.change?.(entry, kind)
  }

  /** Our own verdict on a member: its new state from `now`, tracked and gossiped. */
  private verdict (entry: MemberEntry, state: 'suspect' | 'dead', now: number): void {
    entry.state = state
    entry.since = now
    this.trackState(entry)
    this.changed(entry, state)
  }

  private trackState (entry: MemberEntry): void {
    const name = entry.record.name
    if (entry.state === 'suspect') this.suspects.add(name)
    else this.suspects.delete(name)
    if (entry.state === 'dead') this.dead.add(name)
    else this.dead.delete(name)
  }

  // ---- SWIM -----------------------------------------------------------------------------

  private advanceProbe (now: number): void {
    const probe = this.probe
    if (probe != null) {
      const stretch = 1 + this.health
      if (!probe.indirect && now - probe.startedAt >= this.options.probeTimeoutMs * stretch) {
        this.probeIndirectly(probe)
      } else if (now - probe.startedAt >= this.options.probeIntervalMs * stretch) {
        this.probe = undefined
        this.health = Math.min(MAX_HEALTH, this.health + 1)
        // Any message from the target during the probe counts as an answer.
        if ((this.table.get(probe.target)?.lastHeard ?? 0) < probe.startedAt) this.suspect(probe.target, now)
      }
    }
    if (this.probe != null || now < this.nextProbeAt) return
    this.nextProbeAt = now + this.options.probeIntervalMs * (1 + this.health)
    const target = this.pickProbeTarget()
    if (target == null) return
    this.counters.probes++
    const probeNow: Probe = { target, seq: ++this.seq, startedAt: now, indirect: false }
    this.probe = probeNow
    const suspected = this.table.get(target)?.state === 'suspect' ? target : undefined
    const sent = this.deps.canReach(target) && this.transmit(target, [MessageKind.PING, probeNow.seq, this.takeNews(this.options.maxRecordsPerMessage, suspected)])
    if (!sent) this.probeIndirectly(probeNow)
  }

  private pickProbeTarget (): string | undefined {
    for (let attempt = 0; attempt < 8; attempt++) {
      const name = this.table.randomName(this.deps.random)
      const entry = name == null ? undefined : this.table.get(name)
      if (entry != null && name !== this.self.name && entry.state !== 'dead') return name
    }
    return undefined
  }

  private probeIndirectly (probe: Probe): void {
    probe.indirect = true
    for (const helper of this.neighbours(this.options.indirectProbes, probe.target)) {
      this.counters.indirectProbes++
      this.transmit(helper, [MessageKind.PING_REQ, probe.seq, probe.target, this.takeNews(this.options.maxRecordsPerMessage)])
    }
  }

  private onPing (from: string, message: unknown[]): void {
    const [, seq, news, origin] = message
    this.mergeAll(from, news)
    if (typeof seq !== 'number') {
      this.counters.malformed++
      return
    }
    this.transmit(from, [MessageKind.ACK, seq, this.takeNews(this.options.maxRecordsPerMessage), typeof origin === 'string' ? origin : undefined])
  }

  private onPingReq (from: string, message: unknown[]): void {
    const [, seq, target, news] = message
    this.mergeAll(from, news)
    if (typeof seq !== 'number' || typeof target !== 'string') {
      this.counters.malformed++
      return
    }
    // News about the target itself (a suspicion) goes along, so that it can refute.
    const aboutTarget = Array.isArray(news) ? news.filter(e => Array.isArray(e) && Array.isArray(e[0]) && e[0][0] === target).slice(0, 1) : []
    if (target !== this.self.name && this.deps.canReach(target)) this.transmit(target, [MessageKind.PING, seq, aboutTarget, from])
  }

  private onAck (from: string, message: unknown[]): void {
    const [, seq, news, origin] = message
    this.mergeAll(from, news)
    if (typeof origin === 'string' && origin !== this.self.name) {
      // We pinged for `origin`: relay the ACK.
      this.transmit(origin, [MessageKind.ACK, seq, []])
      return
    }
    const probe = this.probe
    if (probe != null && probe.seq === seq) {
      this.probe = undefined
      this.health = Math.max(0, this.health - 1)
      const entry = this.table.mutable(probe.target)
      if (entry != null) entry.lastHeard = this.deps.now()
    }
  }

  private suspect (name: string, now: number): void {
    const local = this.table.get(name)
    if (local == null || local.state !== 'alive') return
    const entry = this.table.mutable(name)!
    this.counters.suspected++
    this.verdict(entry, 'suspect', now)
    // Tell the suspect itself at once (directly, or through helpers), so that a live one refutes soon.
    const news = [toWire(entry)]
    if (this.deps.canReach(name)) this.transmit(name, [MessageKind.SYN, [], news])
    else for (const helper of this.neighbours(2, name)) this.transmit(helper, [MessageKind.PING_REQ, ++this.seq, name, news])
  }

  private expire (now: number): void {
    const suspicionMs = this.options.suspicionMult * Math.max(1, Math.log10(this.table.size + 1)) * this.options.probeIntervalMs
    for (const name of this.suspects) {
      const entry = this.table.get(name)
      if (entry == null || entry.state !== 'suspect') {
        this.suspects.delete(name)
      } else if (now - entry.since >= suspicionMs) {
        this.counters.declaredDead++
        this.verdict(this.table.mutable(name)!, 'dead', now)
      }
    }
    for (const name of this.dead) {
      const entry = this.table.get(name)
      if (entry == null || entry.state !== 'dead') {
        this.dead.delete(name)
      } else if (now - entry.since >= this.options.tombstoneMs) {
        this.dead.delete(name)
        this.news.delete(name)
        if (this.table.delete(name)) this.deps.events?.change?.(entry, 'forget')
      }
    }
  }

  // ---- helpers --------------------------------------------------------------------------

  /** Up to `count` distinct live members with a direct link, chosen at random. */
  private neighbours (count: number, except?: string): string[] {
    const out: string[] = []
    if (this.deps.linked != null) {
      const linked = this.deps.linked()
      for (let attempt = 0; attempt < count * 4 && out.length < count && linked.length > 0; attempt++) {
        const name = linked[Math.floor(this.deps.random() * linked.length)]
        if (name === this.self.name || name === except || out.includes(name) || this.table.get(name)?.state === 'dead') continue
        out.push(name)
      }
      return out
    }
    const size = this.table.size
    for (let attempt = 0; attempt < count * 4 && out.length < count && size > 1; attempt++) {
      const name = this.table.randomName(this.deps.random)
      if (name == null || name === this.self.name || name === except || out.includes(name)) continue
      if (this.table.get(name)?.state !== 'dead' && this.deps.canReach(name)) out.push(name)
    }
    return out
  }

  private transmit (to: string, message: GossipMessage): boolean {
    this.counters.messagesOut++
    return this.deps.send(to, message)
  }
}

function toWire (entry: MemberEntry): WireEntry {
  return [recordToWire(entry.record), STATE_RANK[entry.state]]
}

/** a's claim vs b's: by (incarnation, version), then by how bad the news is. */
function compareClaims (a: { incarnation: number, version: number }, rankA: number, b: { incarnation: number, version: number }, rankB: number): number {
  const order = compareVersions(a, b)
  if (order !== 0) return order
  return rankA === rankB ? 0 : rankA > rankB ? 1 : -1
}

/** Whether record `a` claimed the name before `b` (earlier start, then lower peer id). */
function older (a: PeerRecord, b: PeerRecord): boolean {
  if (a.incarnation !== b.incarnation) return a.incarnation < b.incarnation
  return a.peerId < b.peerId
}

export type { MemberState }
