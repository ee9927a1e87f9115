/**
 * `SimulatedCohort`: many `Membership`s (the very protocol code real peers run) in one
 * process, on a simulated clock and a simulated network that loses and delays messages.
 * Time jumps from event to event, so 10,000 peers run much faster than real time.
 *
 * Every peer starts from one shared snapshot of a settled cohort (see MemberTable's
 * baseline), so memory grows with what changes, not with N².
 *
 * ```ts
 * const sim = await SimulatedCohort.create({ size: 1000, lossRate: 0.01, delayMs: [1, 10], crypto: false })
 * const joiner = sim.join('newcomer')           // knows one seed, like connect(address)
 * sim.runUntil(() => sim.knowing('newcomer', 'alive') >= 0.999 * sim.aliveCount(), 30_000)
 * ```
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Packr } from 'msgpackr'
import { Membership, type MembershipOptions, type ChangeKind } from '../../src/cohort/membership/membership.js'
import { MemberEntry, MemberTable, type MemberState } from '../../src/cohort/membership/member-table.js'
import { ed25519RecordSigner, ed25519RecordVerifier, unsignedRecords, type RecordSigner, type RecordVerifier } from '../../src/cohort/membership/peer-record.js'
import { seededRandom } from '../../src/cohort/membership/seeded-random.js'

export interface SimOptions {
  size: number
  /** Fraction of messages lost. */
  lossRate: number
  /** One-way delay, uniform in [min, max] ms. */
  delayMs: [number, number]
  /** Sign and verify records with real Ed25519 keys (slower to set up). */
  crypto: boolean
  seed?: number
  membership?: Partial<MembershipOptions>
  /** One message in `byteSample` is encoded to measure bytes. */
  byteSample?: number
}

interface Event {
  at: number
  seq: number
  run: () => void
}

/** A min-heap of events by time (then by insertion order). */
class EventQueue {
  private readonly heap: Event[] = []
  private seq = 0

  get size (): number {
    return this.heap.length
  }

  push (at: number, run: () => void): void {
    const heap = this.heap
    heap.push({ at, seq: this.seq++, run })
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (less(heap[parent], heap[i])) break
      ;[heap[parent], heap[i]] = [heap[i], heap[parent]]
      i = parent
    }
  }

  peek (): Event | undefined {
    return this.heap[0]
  }

  pop (): Event | undefined {
    const heap = this.heap
    const top = heap[0]
    const last = heap.pop()
    if (heap.length > 0 && last != null) {
      heap[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < heap.length && less(heap[l], heap[m])) m = l
        if (r < heap.length && less(heap[r], heap[m])) m = r
        if (m === i) break
        ;[heap[m], heap[i]] = [heap[i], heap[m]]
        i = m
      }
    }
    return top
  }
}

function less (a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}

export interface SimPeer {
  name: string
  membership: Membership
  up: boolean
}

const packr = new Packr({ useRecords: false })

export class SimulatedCohort {
  now = 0
  readonly peers = new Map<string, SimPeer>()
  readonly random: () => number
  messages = 0
  sampledBytes = 0
  sampledMessages = 0
  dropped = 0
  private readonly queue = new EventQueue()
  /** (subject name, state) → how many peers have seen it; filled from change events. */
  private readonly seen = new Map<string, Set<string>>()
  private readonly watched = new Set<string>()

  private constructor (readonly options: SimOptions, private readonly crypto: { verifier: RecordVerifier }) {
    this.random = seededRandom(options.seed ?? 1)
  }

  static async create (options: SimOptions): Promise<SimulatedCohort> {
    const sim = new SimulatedCohort(options, { verifier: options.crypto ? ed25519RecordVerifier : unsignedRecords })
    const baseline = new MemberTable()
    const selves: Array<{ name: string, peerId: string, signer: RecordSigner }> = []
    for (let i = 0; i < options.size; i++) {
      const name = `p${i}`
      const { signer, peerId } = await sim.identity(i)
      const record = signer.sign({ name, peerId, incarnation: 1, version: 1, addrs: [['tcp', [`10.0.${i >> 8}.${i & 255}:4000`]]], host: { bootId: `boot-${i}`, uid: 1000 }, fns: ['step', 'infer'] })
      baseline.set(new MemberEntry(record, 'alive', 'baseline', 0))
      selves.push({ name, peerId, signer })
    }
    for (const self of selves) sim.addPeer(self.name, self.peerId, 1, self.signer, baseline)
    return sim
  }

  private async identity (i: number): Promise<{ signer: RecordSigner, peerId: string }> {
    if (!this.options.crypto) return { signer: unsignedRecords, peerId: `sim-peer-${i}` }
    const key = await generateKeyPair('Ed25519')
    return { signer: ed25519RecordSigner(key), peerId: key.publicKey.toString() }
  }

  private addPeer (name: string, peerId: string, incarnation: number, signer: RecordSigner, baseline?: MemberTable, seed?: string): SimPeer {
    const peer: SimPeer = { name, up: true, membership: undefined as unknown as Membership }
    peer.membership = new Membership(
      { name, peerId, incarnation, host: { bootId: 'sim', uid: 0 }, addrs: [['tcp', [`sim:${name}`]]], fns: ['step'] },
      {
        now: () => this.now,
        random: this.random,
        send: (to, message) => this.send(name, to, message),
        canReach: to => this.peers.has(to),
        // A newcomer knows only its seed until gossip tells it more.
        linked: seed == null ? undefined : () => peer.membership.table.size > 8 ? sampleNames(peer.membership.table, 8, this.random) : [seed],
        signer,
        verifier: this.crypto.verifier,
        events: { change: (entry, kind) => { this.observe(name, entry, kind) } }
      },
      this.options.membership,
      baseline
    )
    this.peers.set(name, peer)
    peer.membership.start()
    const interval = peer.membership.options.gossipIntervalMs
    const tick = (): void => {
      if (!peer.up) return
      peer.membership.tick()
      this.queue.push(this.now + interval, tick)
    }
    this.queue.push(this.now + this.random() * interval, tick)
    return peer
  }

  /** A new peer that knows only `seed` (a random member by default). Returns its name. */
  async join (name: string, seed = `p${Math.floor(this.random() * this.options.size)}`): Promise<string> {
    const { signer, peerId } = await this.identity(this.options.size + this.peers.size)
    this.addPeer(name, peerId, 2, signer, undefined, seed)
    return name
  }

  /** Stops a peer dead: it sends nothing and receives nothing from now on. */
  kill (name: string): void {
    const peer = this.peers.get(name)
    if (peer == null) return
    peer.up = false
    peer.membership.stop()
  }

  /** Counts, from now on, how many peers learn each state of `subject`. */
  watch (subject: string): void {
    this.watched.add(subject)
  }

  /** How many peers (other than the subject) have seen `subject` in `state`. */
  knowing (subject: string, state: MemberState | 'join'): number {
    return this.seen.get(`${subject}\0${state}`)?.size ?? 0
  }

  aliveCount (except?: string): number {
    let n = 0
    for (const peer of this.peers.values()) if (peer.up && peer.name !== except) n++
    return n
  }

  /** Runs events until `done()` holds (checked every `checkMs`) or `limitMs` of simulated time pass. */
  runUntil (done: () => boolean, limitMs: number, checkMs = 10): boolean {
    const end = this.now + limitMs
    let nextCheck = this.now
    for (;;) {
      if (this.now >= nextCheck) {
        if (done()) return true
        nextCheck = this.now + checkMs
      }
      const event = this.queue.peek()
      if (event == null || event.at > end) {
        this.now = end
        return done()
      }
      this.queue.pop()
      if (event.at > this.now) this.now = event.at
      event.run()
    }
  }

  /** Runs for `ms` of simulated time. */
  runFor (ms: number): void {
    this.runUntil(() => false, ms)
  }

  /** Mean bytes per message, from the sampled messages. */
  get meanMessageBytes (): number {
    return this.sampledMessages === 0 ? 0 : this.sampledBytes / this.sampledMessages
  }

  private observe (observer: string, entry: MemberEntry, kind: ChangeKind): void {
    const subject = entry.record.name
    if (!this.watched.has(subject) || observer === subject) return
    const state = kind === 'join' ? 'join' : entry.state
    const key = `${subject}\0${state}`
    let set = this.seen.get(key)
    if (set == null) this.seen.set(key, set = new Set())
    set.add(observer)
    if (state === 'alive' || kind === 'join') {
      let alive = this.seen.get(`${subject}\0alive`)
      if (alive == null) this.seen.set(`${subject}\0alive`, alive = new Set())
      alive.add(observer)
    }
  }

  private send (from: string, to: string, message: unknown[]): boolean {
    const sender = this.peers.get(from)
    if (sender == null || !sender.up) return false
    this.messages++
    const sample = this.options.byteSample ?? 64
    if (this.messages % sample === 0) {
      this.sampledBytes += packr.pack(message).byteLength + 4 + 8 // frame header + FORWARD-free link framing
      this.sampledMessages++
    }
    if (this.random() < this.options.lossRate) {
      this.dropped++
      return true
    }
    const [min, max] = this.options.delayMs
    this.queue.push(this.now + min + this.random() * (max - min), () => {
      const receiver = this.peers.get(to)
      if (receiver != null && receiver.up) receiver.membership.receive(from, message)
    })
    return true
  }
}

function sampleNames (table: MemberTable, count: number, random: () => number): string[] {
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    const name = table.randomName(random)
    if (name != null) out.push(name)
  }
  return out
}
