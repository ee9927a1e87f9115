/**
 * The interface every transport implements. A transport knows bytes and links, not
 * calls: it carries whole frames (header + body, see codec/frame.ts) between two
 * authenticated peers and says when a link is gone.
 *
 * ```ts
 * const transport = tcpTransport({ privateKey, maxFrameBytes })(components)
 * transport.onInbound(link => attach(link))
 * await transport.start(['127.0.0.1:0'])
 * const link = await transport.dial('127.0.0.1:1234', AbortSignal.timeout(5000))
 * link.onFrame = frame => console.log(frame)
 * link.send(encodeFrame([FrameType.ACK, 1]))
 * ```
 */

/** Canonical transport names. */
export type TransportName = 'tcp' | 'shm' | 'rdma'

export interface Link {
  /** Transport that carries this link. */
  readonly transport: TransportName
  /** Peer id the transport authenticated (for tcp: Noise's remote static key). */
  readonly remotePeerId: string
  /** Address of the remote end, for debugInfo. */
  readonly remoteAddress: string
  readonly direction: 'inbound' | 'outbound'
  readonly open: boolean
  /** Frames received; set by the owner before any frame can arrive (the next tick). */
  onFrame: (frame: unknown[]) => void
  /** Called once when the link is gone, for whatever reason. */
  onClose: (reason: Error | undefined) => void
  /**
   * True when send() takes split frames (codec/out-of-band.ts) as they are: the shm link
   * puts their large parts into its arena. Every other link gets `inlineFrame(frame)`
   * from the router.
   */
  readonly outOfBand?: boolean
  /** Queues one encoded frame; small frames sent in one turn of the loop leave in one write. */
  send: (frame: Uint8Array) => void
  /** Sends what is queued, then closes. */
  close: (reason?: Error) => void
  /** Frames and bytes counted on this link. */
  readonly stats: LinkStats
}

export interface LinkStats {
  framesIn: number
  framesOut: number
  bytesIn: number
  bytesOut: number
  /** Socket-level writes: framesOut / writes is the coalescing factor. */
  writes: number
}

/** Whether an arm can carry links on this machine, and why not. */
export interface TransportAvailability {
  available: boolean
  reason?: string
}

export interface Transport {
  readonly name: TransportName
  /** Whether this transport works here (tcp: always; shm: the addon loaded; rdma: a device). */
  availability?: () => TransportAvailability
  /** Binds the given addresses (none for a dial-only peer). */
  start: (listen: string[]) => Promise<void>
  /** Addresses bound, in the form `connect` accepts. */
  addresses: () => string[]
  /** This transport's own authenticated id. */
  readonly localPeerId: string
  /** Opens a link to an address. Rejects on failure or abort. */
  dial: (address: string, signal: AbortSignal) => Promise<Link>
  /** Receives links the remote side opened. */
  onInbound: (handler: (link: Link) => void) => void
  stop: () => Promise<void>
}

export function newLinkStats (): LinkStats {
  return { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0, writes: 0 }
}
