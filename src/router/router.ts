/**
 * Where a frame goes. Outgoing: to one of the peer's links, on the arm (transport) the
 * LatencyBandit ranks best for the frame's size among the enabled ones; a send that
 * throws masks that arm and the next one is tried. Calls to our own name loop back
 * in-process. A peer with no direct link goes to the `extension` (cohort/discovery.ts:
 * lookups, on-demand dials, forwarding). Incoming: CALL frames to the dispatcher,
 * REPLY/ERROR/ACK to the call table, PING/PONG to the bandit's probes, SHM_OFFER to the
 * shm transport, and frame types beyond these (GOSSIP, FORWARD) to the extension.
 *
 * ```ts
 * const router = new Router(directory, () => rpc.getName(), ['tcp', 'shm'])
 * router.calls = callTable; router.dispatcher = dispatcher
 * router.send('host', frame, callId)  // false when 'host' has no link now
 * ```
 *
 * Probes: while calls or replies of a size class flow to a peer with more than one arm,
 * every arm gets a PING of about that size every `PROBE_INTERVAL_MS[class]` and its
 * PONG's round trip is a sample. Nothing is probed while no call is made, so a peer that
 * only gossips costs nothing (gossip every 200 ms had the probes wake both sides' shm
 * pollers 10 times a second). Calls to a peer with more than one arm are timed only for their ack: a call
 * with no REPLY, ERROR or ACK within `ackTimeoutMs` is a sample equal to that timeout on
 * the arm it left on (a reply's time includes the handler's, so it says nothing about the
 * arm). One call per peer and arm is watched at a time, the next one sent once it is
 * answered: an arm that loses calls loses the watched one too, and a busy peer does not
 * cost a table entry per call. With one arm there is no choice to inform, and no call is
 * timed.
 */
import { performance } from 'node:perf_hooks' // not the global, whose every read runs Node's lazy getter
import { logger } from '@libp2p/logger'
import { decodeFrameBody, encodeFrame, frameBytes, FrameType, HEADER_BYTES, inlineFrame } from '../codec/frame.js'
import type { CallTable } from '../calls/call-table.js'
import type { CallerSlot, Dispatcher } from '../endpoints/dispatcher.js'
import type { PeerDirectory, PeerSession } from '../cohort/peer-directory.js'
import { EmulatedRdmaLink, type RdmaEmulation } from '../transports/rdma/rdma-transport.js'
import type { Link, TransportName } from '../transports/transport.js'
import { LatencyBandit, PROBE_BYTES, sizeClassOf, type ArmInfo, type SizeClass } from './latency-bandit.js'

const log = logger('cohort:router')

const RESOLVED = Promise.resolve()

const PROBE_INTERVAL_MS = [100, 1000, 2000]
/** Probes remembered for their PONG at most; beyond, the oldest are let go. */
const MAX_TRACKED = 65_536
/** A free AckWatch. */
const NO_CALL = -1
/** A choice of arm holds at most this long (ms) even when no estimate changed: a masked arm comes back by time. */
const CHOICE_MS = 50
const NO_ARMS: Link[] = []

/**
 * Ways to reach a peer without a direct link, and frame types beyond calls: the cohort's
 * discovery (gossip, lookups, forwarding) plugs in here.
 */
export interface RouterExtension {
  /** No direct link to `peer`: deliver the frame some other way; false when it cannot now. `call`: the frame is a call the call table resends when the peer becomes reachable. */
  route: (peer: string, frame: Uint8Array, call: boolean) => boolean
  /** A frame type the router does not know; true when handled. */
  receive: (from: CallerSlot, frame: unknown[]) => boolean
}

/** How far `send` may look: 'direct' only uses a link to the peer itself. */
export type SendScope = 'any' | 'call' | 'direct'

export interface RouterCounters {
  loopbackFrames: number
  unknownFrames: number
  unroutable: number
  failovers: number
  probes: number
}

export interface RouterOptions {
  /** A call or probe unanswered this long is a sample of this size (ms, default 1000). */
  ackTimeoutMs?: number
  /** Turns the rdma stub into a loopback arm for tests (see rdma-transport.ts). */
  emulateRdma?: RdmaEmulation
}

interface Tracked {
  peer: string
  arm: TransportName
  size: SizeClass
  /** performance.now() at send */
  t0: number
}

/** What send() keeps per peer between sends (see routeOf). */
interface Route {
  /** Never changed once made. */
  arms: Link[]
  linksVersion: number
  enabledVersion: number
  /** The bandit's choice per size class (-1: ask), made at this bandit version and time. */
  choices: number[]
  banditVersion: number
  chosenAt: number
  /** The last clock read of a send on this route (see send()). */
  readAt: number
}

/** The one call of a peer watched for its ack on an arm (NO_CALL: none now). */
interface AckWatch {
  arm: TransportName
  callId: number
  size: SizeClass
  t0: number
}

export class Router {
  calls!: CallTable
  dispatcher!: Dispatcher
  /** Receives SHM_OFFER frames (set by the Rpc when shm is available). */
  onShmOffer?: (session: PeerSession, frame: unknown[], link: Link) => void
  readonly bandit = new LatencyBandit()
  extension?: RouterExtension
  private readonly self: CallerSlot
  private enabled: Set<TransportName>
  readonly counters: RouterCounters = { loopbackFrames: 0, unknownFrames: 0, unroutable: 0, failovers: 0, probes: 0 }
  private readonly ackTimeoutMs: number
  private readonly emulation?: RdmaEmulation
  private readonly emulated = new WeakMap<PeerSession, EmulatedRdmaLink>()
  private readonly ackWatches = new Map<string, AckWatch[]>()
  private readonly routes = new WeakMap<PeerSession, Route>()
  private enabledVersion = 0
  private readonly probes = new Map<number, Tracked>()
  private readonly nextProbeAt = new Map<string, number[]>()
  private nextNonce = 1

  constructor (
    private readonly directory: PeerDirectory,
    private readonly selfName: () => string,
    transports: TransportName[],
    options: RouterOptions = {}
  ) {
    this.enabled = new Set(transports)
    this.ackTimeoutMs = options.ackTimeoutMs ?? 1000
    this.emulation = options.emulateRdma
    const slot = { calleeState: undefined as unknown }
    this.self = Object.defineProperty(slot, 'name', { get: selfName, enumerable: true }) as CallerSlot
  }

  setTransports (transports: TransportName[]): void {
    this.enabled = new Set(transports)
    this.enabledVersion++
  }

  enabledTransports (): TransportName[] {
    return [...this.enabled]
  }

  isEnabled (transport: TransportName): boolean {
    return this.enabled.has(transport)
  }

  /**
   * Sends a frame to a peer by name: on the direct arm the bandit ranks best, or else
   * (unless `scope` is 'direct') the way the discovery extension knows. False when
   * neither reaches the peer now. `callId` marks a CALL frame, whose ack times the arm.
   * A split frame (codec/out-of-band.ts) goes as it is only to a link that takes it
   * (`Link.outOfBand`); everything else here gets the ordinary frame.
   */
  send (peer: string, frame: Uint8Array, scope: SendScope = 'any', callId?: number): boolean {
    if (peer === this.selfName()) {
      this.counters.loopbackFrames++
      // Now, not in the microtask: the caller may change its buffers once we return.
      const inline = inlineFrame(frame)
      // A plain promise job, not queueMicrotask, which makes an AsyncResource for each
      // (a fifth of a self-call's CPU in a profile); the callback never throws.
      RESOLVED.then(() => {
        try {
          this.receive(this.self, decodeFrameBody(new Uint8Array(inline.buffer, inline.byteOffset + HEADER_BYTES, inline.byteLength - HEADER_BYTES)))
        } catch (err) {
          log.error('loopback frame failed: %e', err)
        }
      })
      return true
    }
    const session = this.directory.get(peer)
    const route = session == null ? undefined : this.routeOf(session)
    const arms = route?.arms ?? NO_ARMS
    if (session == null || route == null || arms.length === 0) {
      if (scope !== 'direct' && this.extension?.route(peer, inlineFrame(frame), scope === 'call') === true) return true
      this.counters.unroutable++
      return false
    }
    const size = sizeClassOf(frameBytes(frame))
    const several = arms.length > 1
    // With several arms, the probe schedule, the choice of arm and the ack watch need the
    // clock, none of them to the microsecond: a small frame goes by the time of the route's
    // last read, and the clock is read once it has gone (a read is 65-70 ns, which sat
    // between a call or a reply and its publish). Probes go first, so they time the arm,
    // not the wait behind this very frame; a probe that is due reads the clock for itself.
    const before = !several ? 0 : size === 0 ? route.readAt : performance.now()
    if (several && scope !== 'direct') this.probe(session, arms, size, before)
    const first = several ? arms[this.choose(route, peer, size, before)] : arms[0]
    let sent = this.trySend(peer, first, frame)
    if (sent == null && several) {
      // Fail over along the bandit's order; the failed arm is masked now and ranks last.
      for (const transport of this.bandit.rank(peer, arms.map(l => l.transport), size)) {
        const link = arms.find(l => l.transport === transport)
        if (link == null || link === first) continue
        this.counters.failovers++
        sent = this.trySend(peer, link, frame)
        if (sent != null) break
      }
    }
    if (sent == null) {
      // Every link closed under us (or dropped itself past its queue bound): callers treat
      // this as "no link now" and wait for the next one, as for any lost link.
      this.counters.unroutable++
      return false
    }
    this.bandit.chose(peer, sent.transport, size)
    // With one arm there is nothing to choose between, so no ack timing either.
    if (!several) return true
    const now = size === 0 ? performance.now() : before
    route.readAt = now
    if (callId != null) this.watchAck(peer, sent.transport, size, callId, now)
    return true
  }

  /** Estimates and counts per arm for one peer, for debugInfo. */
  banditInfo (peer: string): ArmInfo[] {
    return this.bandit.info(peer)
  }

  /** Counts calls and probes whose ack is overdue as samples; the Rpc calls this every second. */
  sweep (now = performance.now()): void {
    for (const [key, t] of this.probes) {
      if (now - t.t0 < this.ackTimeoutMs) break // insertion order is send order
      this.probes.delete(key)
      this.bandit.missingAck(t.peer, t.arm, t.size, this.ackTimeoutMs)
    }
    for (const [peer, watches] of this.ackWatches) {
      for (const watch of watches) {
        if (watch.callId === NO_CALL || now - watch.t0 < this.ackTimeoutMs) continue
        watch.callId = NO_CALL
        this.bandit.missingAck(peer, watch.arm, watch.size, this.ackTimeoutMs)
      }
    }
  }

  /** Directory event: a peer has a link. */
  peerUp (session: PeerSession, restarted: boolean): void {
    this.calls.onPeerUp(session.name, restarted)
  }

  /** Directory event: a peer lost its last link. */
  peerDown (session: PeerSession): void {
    this.calls.onPeerDown(session.name)
  }

  /**
   * Directory event: a peer was pruned. Its estimates, probe schedule and ack watches go,
   * so a cohort whose workers come and go under fresh names keeps bounded state, and a
   * process that comes back under an old name is measured afresh.
   */
  peerForgotten (name: string): void {
    this.bandit.forget(name)
    this.ackWatches.delete(name)
    this.nextProbeAt.delete(name)
    this.calls.forgetPeer(name)
  }

  /** Directory event: one of several links to a peer closed; what was in flight on it is resent. */
  linkDown (session: PeerSession, link: Link): void {
    log('%s link to %s closed; %d link(s) left', link.transport, session.name, session.links.length)
    this.calls.onLinkLost(session.name)
  }

  /** A decoded frame from a peer (or from ourselves), and the link it came on. */
  receive (from: CallerSlot, frame: unknown[], link?: Link): void {
    switch (frame[0]) {
      case FrameType.CALL: this.dispatcher.onCall(from, frame); break
      case FrameType.REPLY: this.acked(from.name, frame[1]); this.calls.onReply(from.name, frame[1], frame[2]); break
      case FrameType.ERROR: this.acked(from.name, frame[1]); this.calls.onError(from.name, frame); break
      case FrameType.ACK: this.acked(from.name, frame[1]); this.calls.onAck(from.name, frame[1]); break
      case FrameType.PING:
        try {
          link?.send(encodeFrame([FrameType.PONG, frame[1]]))
        } catch {}
        break
      case FrameType.PONG: this.ponged(from.name, frame[1]); break
      case FrameType.SHM_OFFER:
        if (link != null && 'links' in from) this.onShmOffer?.(from as PeerSession, frame, link)
        break
      default:
        if (this.extension?.receive(from, frame) === true) break
        this.counters.unknownFrames++
        log('ignoring frame type %s from %s', frame[0], from.name)
    }
  }

  /**
   * The peer's route: made again when its links or the enabled arms changed or one of its
   * arms closed, else the one kept from the last send (making it and asking the bandit
   * for every frame took about 0.9 µs of a pipelined caller's ~6 per call over shm).
   */
  private routeOf (session: PeerSession): Route {
    const route = this.routes.get(session)
    if (route != null && route.linksVersion === session.linksVersion && route.enabledVersion === this.enabledVersion && allOpen(route.arms)) return route
    const fresh: Route = { arms: this.eligible(session), linksVersion: session.linksVersion, enabledVersion: this.enabledVersion, banditVersion: -1, choices: [-1, -1, -1], chosenAt: 0, readAt: 0 }
    this.routes.set(session, fresh)
    return fresh
  }

  /** Index in `route.arms` of the bandit's best arm for class `size`, asked again only once its estimates or masks changed. */
  private choose (route: Route, peer: string, size: SizeClass, now: number): number {
    if (route.banditVersion !== this.bandit.version || now - route.chosenAt > CHOICE_MS) {
      route.banditVersion = this.bandit.version
      route.chosenAt = now
      route.choices.fill(-1)
    }
    if (route.choices[size] < 0) route.choices[size] = this.bandit.best(peer, route.arms, size, Date.now())
    return route.choices[size]
  }

  /** Open links to the peer on enabled arms: the newest per transport, plus the emulated rdma arm. */
  private eligible (session: PeerSession): Link[] {
    // Never changed once made: a send below may close a link and re-enter send() for a
    // resend, which then makes a route of its own.
    const arms: Link[] = []
    let carrier: Link | undefined
    for (let i = session.links.length - 1; i >= 0; i--) {
      const link = session.links[i]
      if (!link.open) continue
      if (carrier == null || link.transport === 'shm') carrier = link
      if (!this.enabled.has(link.transport)) continue
      if (!arms.some(a => a.transport === link.transport)) arms.push(link)
    }
    if (this.emulation != null && this.enabled.has('rdma') && carrier != null) {
      let rdma = this.emulated.get(session)
      if (rdma == null) this.emulated.set(session, rdma = new EmulatedRdmaLink(this.emulation, carrier))
      rdma.carrier = carrier
      arms.push(rdma)
    }
    return arms
  }

  private trySend (peer: string, link: Link, frame: Uint8Array): Link | undefined {
    try {
      link.send(link.outOfBand === true ? frame : inlineFrame(frame))
      return link
    } catch {
      this.bandit.fail(peer, link.transport)
      return undefined
    }
  }

  /** Probes every arm in class `size` if one is due by `at` (a time perhaps a send old); each probe is timed from a read of its own. */
  private probe (session: PeerSession, arms: Link[], size: SizeClass, at: number): void {
    let next = this.nextProbeAt.get(session.name)
    if (next == null) this.nextProbeAt.set(session.name, next = [0, 0, 0])
    if (at < next[size]) return
    const now = performance.now()
    next[size] = now + PROBE_INTERVAL_MS[size]
    this.sweep(now)
    const padding = PROBE_BYTES[size] > 0 ? new Uint8Array(PROBE_BYTES[size]) : undefined
    for (const link of [...arms]) {
      const nonce = this.nextNonce++
      const frame = encodeFrame(padding == null ? [FrameType.PING, nonce] : [FrameType.PING, nonce, padding])
      try {
        link.send(frame)
      } catch {
        this.bandit.fail(session.name, link.transport)
        continue
      }
      this.counters.probes++
      this.track(this.probes, nonce, { peer: session.name, arm: link.transport, size, t0: now })
    }
  }

  private ponged (peer: string, nonce: unknown): void {
    const t = typeof nonce === 'number' ? this.probes.get(nonce) : undefined
    if (t == null || t.peer !== peer) return
    this.probes.delete(nonce as number)
    let us = (performance.now() - t.t0) * 1000
    if (t.arm === 'rdma' && this.emulation != null) us = 2 * this.emulation.latencyUs
    this.bandit.sample(peer, t.arm, t.size, us)
  }

  private acked (peer: string, id: unknown): void {
    const watches = this.ackWatches.get(peer)
    if (watches == null) return
    for (const watch of watches) if (watch.callId === id) watch.callId = NO_CALL
  }

  /** Watches call `callId`, just sent on `arm`, for its ack, unless a call there is watched already. */
  private watchAck (peer: string, arm: TransportName, size: SizeClass, callId: number, now: number): void {
    let watches = this.ackWatches.get(peer)
    if (watches == null) this.ackWatches.set(peer, watches = [])
    let watch: AckWatch | undefined
    for (const w of watches) if (w.arm === arm) watch = w
    if (watch == null) watches.push(watch = { arm, callId: NO_CALL, size, t0: 0 })
    if (watch.callId !== NO_CALL) return
    watch.callId = callId
    watch.size = size
    watch.t0 = now
  }

  private track (map: Map<number, Tracked>, key: number, t: Tracked): void {
    map.delete(key)
    map.set(key, t)
    if (map.size > MAX_TRACKED) map.delete(map.keys().next().value as number)
  }
}

function allOpen (links: Link[]): boolean {
  for (let i = 0; i < links.length; i++) if (!links[i].open) return false
  return true
}
