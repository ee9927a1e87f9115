/**
 * Names to peers. Every link starts with a HELLO each way; the directory checks that the
 * peer id in the HELLO is the one the transport authenticated, binds the name to it, and
 * refuses a second live key for a name with NAME_TAKEN. After the handshake, frames go
 * to `onFrame` with the session they came from.
 *
 * ```ts
 * const directory = new PeerDirectory({ self, helloTimeoutMs: 10_000 }, events)
 * transport.onInbound(link => directory.attach(link))
 * directory.linkFor('host')?.send(frame)
 * ```
 */
import { randomBytes } from 'node:crypto'
import { logger } from '@libp2p/logger'
import { encodeFrame, FrameType, PROTOCOL_VERSION, type HelloBody } from '../codec/frame.js'
import { RpcError, isRpcErrorCode } from '../errors/rpc-error.js'
import type { Link } from '../transports/transport.js'

const log = logger('cohort:directory')

/** What this process says of itself in a HELLO. */
export interface SelfDescription {
  name: () => string
  peerId: () => string
  addresses: () => string[]
  transports: () => string[]
  /** Host identity (boot id and uid, hashed); peers with the same one may use shared memory. */
  host?: () => string | undefined
  readonly incarnation: string
}

export type PeerState = 'connected' | 'disconnected'

/** One named peer as this process knows it. */
export class PeerSession {
  links: Link[] = []
  /** Counts changes to `links`, so what is derived from them (the router's arms) knows when to look again. */
  linksVersion = 0
  state: PeerState = 'connected'
  readonly firstSeen = Date.now()
  /** A frame came since `heardAt` was last brought up to date: set per frame, where a clock read was about 60 ns of every call's path. */
  heard = false
  private heardAt = Date.now()
  /** The peer's host identity from its HELLO, if it sent one. */
  host?: string
  /** State kept by the callee side for this caller (at-most-once table); reset on restart. */
  calleeState: unknown

  constructor (
    readonly name: string,
    public peerId: string,
    public incarnation: string,
    public addrs: string[],
    public transports: string[],
    /** How this process learned of the peer: 'inbound' or the address it dialed. */
    public learnedFrom: string
  ) {}

  /**
   * When the peer was last heard from (Date.now() clock): frames that came since the last
   * look count as heard at `now`, so the answer is late by at most the time between looks
   * (the Rpc's sweep looks every second, and a link that closes looks as it goes).
   */
  lastHeard (now = Date.now()): number {
    if (this.heard) {
      this.heard = false
      this.heardAt = now
    }
    return this.heardAt
  }

  /** The link to send on: the newest open one. */
  link (): Link | undefined {
    for (let i = this.links.length - 1; i >= 0; i--) {
      if (this.links[i].open) return this.links[i]
    }
    return undefined
  }
}

export interface DirectoryEvents {
  /** A peer has a usable link. `restarted` when it is a new process under a known name. */
  peerUp: (session: PeerSession, restarted: boolean) => void
  /** A peer's last link closed. */
  peerDown: (session: PeerSession) => void
  /** A frame from a peer after its handshake, and the link it came on. */
  frame: (session: PeerSession, frame: unknown[], link: Link) => void
  /** One of a peer's links closed while others remain (calls in flight on it must be resent). */
  linkDown?: (session: PeerSession, link: Link, reason: Error | undefined) => void
  /** A peer was pruned (no link for a long time): whatever is kept per peer name can go. */
  peerForgotten?: (name: string) => void
}

export interface DirectoryInit {
  self: SelfDescription
  /** How long a link may stay silent before its HELLO. */
  helloTimeoutMs: number
  /** The peer id that gossip says holds a live name, if any (a HELLO under another key is refused). */
  nameHolder?: (name: string) => string | undefined
}

/** The link leads back to this very peer (connect() was given its own address). */
export class SelfLinkError extends Error {}

/** Why a link did not become a session; kept for debugInfo and the dialer. */
export interface Refusal {
  code: string
  message: string
  at: number
}

export class PeerDirectory {
  private readonly byName = new Map<string, PeerSession>()
  refusalsReceived = 0
  refusalsSent = 0
  lastRefusal?: Refusal

  constructor (private readonly init: DirectoryInit, private readonly events: DirectoryEvents) {}

  static newIncarnation (): string {
    return randomBytes(8).toString('hex')
  }

  get (name: string): PeerSession | undefined {
    return this.byName.get(name)
  }

  sessions (): PeerSession[] {
    return [...this.byName.values()]
  }

  linkFor (name: string): Link | undefined {
    return this.byName.get(name)?.link()
  }

  /**
   * Runs the handshake on a new link. Resolves with the session once the peer's HELLO
   * is accepted; rejects (and closes the link) when it is refused or the link dies first.
   */
  attach (link: Link, learnedFrom: string): Promise<PeerSession> {
    return new Promise((resolve, reject) => {
      let settled = false
      const timer = setTimeout(() => {
        fail(new RpcError('TIMEOUT', `peer ${link.remotePeerId} at ${link.remoteAddress} sent no HELLO within ${this.init.helloTimeoutMs} ms`))
      }, this.init.helloTimeoutMs)
      const fail = (err: Error): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        link.close(err)
        reject(err)
      }
      link.onClose = reason => { fail(reason ?? new RpcError('CLOSED', `link to ${link.remoteAddress} closed during the handshake`)) }
      // Our HELLO must be queued before anything else: setting onFrame below may deliver the
      // peer's HELLO at once, and binding sends the calls that waited for this peer.
      try {
        link.send(encodeFrame([FrameType.HELLO, this.hello()]))
      } catch (err) {
        fail(err as Error)
        return
      }
      link.onFrame = frame => {
        if (settled) return
        if (frame[0] === FrameType.GOODBYE) {
          fail(this.refused(frame, link))
          return
        }
        if (frame[0] !== FrameType.HELLO) {
          this.refuse(link, 'BAD_FRAME', `expected HELLO, got frame type ${String(frame[0])}`)
          fail(new RpcError('BAD_FRAME', `peer at ${link.remoteAddress} sent frame type ${String(frame[0])} before HELLO`))
          return
        }
        const problem = this.checkHello(frame[1], link)
        if (problem != null) {
          if (problem.code !== 'SELF') this.refuse(link, problem.code, problem.message)
          fail(problem.code === 'SELF' ? new SelfLinkError(problem.message) : new RpcError(problem.code, problem.message))
          return
        }
        settled = true
        clearTimeout(timer)
        resolve(this.bind(link, frame[1] as HelloBody, learnedFrom))
      }
    })
  }

  private hello (): HelloBody {
    const self = this.init.self
    return {
      v: PROTOCOL_VERSION,
      name: self.name(),
      peerId: self.peerId(),
      incarnation: self.incarnation,
      addrs: self.addresses(),
      transports: self.transports(),
      host: self.host?.()
    }
  }

  private checkHello (body: unknown, link: Link): { code: 'BAD_FRAME' | 'NAME_TAKEN' | 'UNAUTHORIZED' | 'SELF', message: string } | undefined {
    if (body == null || typeof body !== 'object') return { code: 'BAD_FRAME', message: 'HELLO body is not an object' }
    const hello = body as Partial<HelloBody>
    if (typeof hello.v !== 'number' || Math.floor(hello.v) !== PROTOCOL_VERSION) {
      return { code: 'BAD_FRAME', message: `protocol version ${String(hello.v)} is not supported (this peer speaks ${PROTOCOL_VERSION})` }
    }
    if (typeof hello.name !== 'string' || hello.name === '' || typeof hello.incarnation !== 'string' ||
        !Array.isArray(hello.addrs) || !hello.addrs.every(a => typeof a === 'string') ||
        !Array.isArray(hello.transports) || !hello.transports.every(x => typeof x === 'string')) {
      return { code: 'BAD_FRAME', message: 'HELLO lacks name, incarnation, addrs or transports' }
    }
    if (hello.peerId !== link.remotePeerId) {
      return { code: 'UNAUTHORIZED', message: `HELLO claims peer id ${String(hello.peerId)} but the link authenticated ${link.remotePeerId}` }
    }
    const self = this.init.self
    if (hello.peerId === self.peerId()) return { code: 'SELF', message: `address ${link.remoteAddress} is this peer itself` }
    if (hello.name === self.name()) return { code: 'NAME_TAKEN', message: `name '${hello.name}' is taken by the peer you connected to` }
    const existing = this.byName.get(hello.name)
    if (existing != null && existing.peerId !== hello.peerId && existing.link() != null) {
      return { code: 'NAME_TAKEN', message: `name '${hello.name}' is held by another live peer (${existing.peerId})` }
    }
    const holder = this.init.nameHolder?.(hello.name)
    if (holder != null && holder !== hello.peerId) {
      return { code: 'NAME_TAKEN', message: `name '${hello.name}' is held by another live member of the cohort (${holder})` }
    }
    return undefined
  }

  private refused (frame: unknown[], link: Link): RpcError {
    this.refusalsReceived++
    const code = isRpcErrorCode(frame[1]) ? frame[1] : 'UNAUTHORIZED'
    const message = typeof frame[2] === 'string' ? frame[2] : 'refused'
    this.lastRefusal = { code, message, at: Date.now() }
    log('%s refused us: %s %s', link.remoteAddress, code, message)
    return new RpcError(code, `peer at ${link.remoteAddress} refused the connection: ${message}`)
  }

  private refuse (link: Link, code: string, message: string): void {
    this.refusalsSent++
    log('refusing %s: %s %s', link.remoteAddress, code, message)
    try {
      link.send(encodeFrame([FrameType.GOODBYE, code, message]))
    } catch {}
  }

  private bind (link: Link, hello: HelloBody, learnedFrom: string): PeerSession {
    let session = this.byName.get(hello.name)
    let restarted = false
    if (session == null) {
      session = new PeerSession(hello.name, hello.peerId, hello.incarnation, hello.addrs, hello.transports, learnedFrom)
      this.byName.set(hello.name, session)
    } else {
      restarted = session.peerId !== hello.peerId || session.incarnation !== hello.incarnation
      if (restarted) {
        // A new process under the name: links of the old one are dead to us.
        const old = session.links
        session.links = []
        session.linksVersion++
        for (const link of old) link.close(new RpcError('PEER_NOT_FOUND', `peer '${hello.name}' restarted`))
        session.peerId = hello.peerId
        session.incarnation = hello.incarnation
        session.calleeState = undefined
      }
      session.addrs = hello.addrs
      session.transports = hello.transports
      session.learnedFrom = learnedFrom
    }
    session.host = typeof hello.host === 'string' ? hello.host : undefined
    const bound = session
    bound.links.push(link)
    bound.linksVersion++
    bound.state = 'connected'
    bound.heard = true
    link.onFrame = frame => {
      bound.heard = true
      if (frame[0] === FrameType.GOODBYE) {
        // The peer refused us after sending its HELLO (for instance our name is taken there).
        link.close(this.refused(frame, link))
        return
      }
      this.events.frame(bound, frame, link)
    }
    link.onClose = reason => {
      // What this link heard is dated now, not at the next sweep.
      bound.lastHeard()
      const index = bound.links.indexOf(link)
      if (index >= 0) bound.links.splice(index, 1)
      bound.linksVersion++
      if (bound.link() == null && bound.state === 'connected') {
        bound.state = 'disconnected'
        this.events.peerDown(bound)
      } else if (index >= 0 && bound.state === 'connected') {
        this.events.linkDown?.(bound, link, reason)
      }
    }
    this.events.peerUp(bound, restarted)
    return bound
  }

  /** Forgets peers not heard from for `forgetAfterMs` that have no link now, so churn does not grow the table; dates what every peer heard since the last look. */
  prune (now: number, forgetAfterMs: number): void {
    for (const [name, session] of this.byName) {
      const heardAt = session.lastHeard(now)
      if (session.state === 'disconnected' && session.links.length === 0 && heardAt < now - forgetAfterMs) {
        this.byName.delete(name)
        this.events.peerForgotten?.(name)
      }
    }
  }

  /** Closes every link; sessions stay for debugInfo. */
  closeAll (reason: Error): void {
    for (const session of this.byName.values()) {
      for (const link of [...session.links]) link.close(reason)
    }
  }
}
