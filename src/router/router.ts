/**
 * Where a frame goes. Outgoing: to the peer's link on an enabled transport (today only
 * tcp carries links; shm and rdma arrive with issue 4, and with them the latency bandit
 * that picks an arm per message), or back into this process for calls to our own name.
 * Incoming: CALL frames to the dispatcher, REPLY/ERROR/ACK to the call table. A peer with
 * no direct link, and frame types beyond these (GOSSIP, FORWARD), go to the `extension`
 * (cohort/discovery.ts: lookups, on-demand dials, forwarding).
 *
 * ```ts
 * const router = new Router(directory, () => rpc.getName(), ['tcp'])
 * router.calls = callTable; router.dispatcher = dispatcher
 * router.send('host', frame)  // false when 'host' has no link now
 * ```
 */
import { logger } from '@libp2p/logger'
import { decodeValue, FrameType, HEADER_BYTES } from '../codec/frame.js'
import type { CallTable } from '../calls/call-table.js'
import type { CallerSlot, Dispatcher } from '../endpoints/dispatcher.js'
import type { PeerDirectory, PeerSession } from '../cohort/peer-directory.js'
import type { TransportName } from '../transports/transport.js'

const log = logger('cohort:router')

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
}

export class Router {
  calls!: CallTable
  dispatcher!: Dispatcher
  extension?: RouterExtension
  private readonly self: CallerSlot
  private enabled: Set<TransportName>
  readonly counters: RouterCounters = { loopbackFrames: 0, unknownFrames: 0, unroutable: 0 }

  constructor (
    private readonly directory: PeerDirectory,
    private readonly selfName: () => string,
    transports: TransportName[]
  ) {
    this.enabled = new Set(transports)
    const slot = { calleeState: undefined as unknown }
    this.self = Object.defineProperty(slot, 'name', { get: selfName, enumerable: true }) as CallerSlot
  }

  setTransports (transports: TransportName[]): void {
    this.enabled = new Set(transports)
  }

  enabledTransports (): TransportName[] {
    return [...this.enabled]
  }

  /** Sends a frame to a peer by name; false when no enabled link reaches it now. */
  send (peer: string, frame: Uint8Array, scope: SendScope = 'any'): boolean {
    if (peer === this.selfName()) {
      this.counters.loopbackFrames++
      queueMicrotask(() => {
        try {
          this.receive(this.self, decodeValue(frame.subarray(HEADER_BYTES)) as unknown[])
        } catch (err) {
          log.error('loopback frame failed: %e', err)
        }
      })
      return true
    }
    const link = this.directory.linkFor(peer)
    if (link == null || !this.enabled.has(link.transport)) {
      if (scope !== 'direct' && this.extension?.route(peer, frame, scope === 'call') === true) return true
      this.counters.unroutable++
      return false
    }
    try {
      link.send(frame)
    } catch {
      // The link closed under us (or dropped itself past its queue bound): callers treat
      // this as "no link now" and wait for the next one, as for any lost link.
      this.counters.unroutable++
      return false
    }
    return true
  }

  /** Directory event: a peer has a link. */
  peerUp (session: PeerSession, restarted: boolean): void {
    this.calls.onPeerUp(session.name, restarted)
  }

  /** Directory event: a peer lost its last link. */
  peerDown (session: PeerSession): void {
    this.calls.onPeerDown(session.name)
  }

  /** A decoded frame from a peer (or from ourselves). */
  receive (from: CallerSlot, frame: unknown[]): void {
    switch (frame[0]) {
      case FrameType.CALL: this.dispatcher.onCall(from, frame); break
      case FrameType.REPLY: this.calls.onReply(from.name, frame[1], frame[2]); break
      case FrameType.ERROR: this.calls.onError(from.name, frame); break
      case FrameType.ACK: this.calls.onAck(from.name, frame[1]); break
      default:
        if (this.extension?.receive(from, frame) === true) break
        this.counters.unknownFrames++
        log('ignoring frame type %s from %s', frame[0], from.name)
    }
  }
}
