/**
 * The TCP transport: js-libp2p 3 with @libp2p/tcp, Noise and yamux. One long-lived
 * stream per link carries every call and reply; the frames queued in one turn of the
 * event loop leave in one `send`, so libp2p's per-write costs (a yamux header, a Noise
 * seal, a socket write) are paid once per turn rather than once per frame.
 *
 * ```ts
 * const transport = new TcpTransport({ privateKey, prologue, maxFrameBytes: 1 << 26 })
 * await transport.start(['127.0.0.1:0'])
 * const link = await transport.dial('127.0.0.1:1234', AbortSignal.timeout(5000))
 * ```
 */
import './polyfill.js'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { logger } from '@libp2p/logger'
import { FrameInbox } from '../frame-inbox.js'
import { Uint8ArrayList } from 'uint8arraylist'
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { FrameReader } from '../../codec/frame.js'
import { loopSpinner } from '../loop-spinner.js'
import { RpcError } from '../../errors/rpc-error.js'
import { newLinkStats, type Link, type LinkStats, type Transport } from '../transport.js'
import { fromMultiaddr, toMultiaddr } from './address.js'
import { quietNoiseLengths } from './noise-length.js'
import { oneWritePerMessage } from './corked-writes.js'
import { lazyWindowUpdates } from './window-updates.js'

const log = logger('cohort:tcp')

interface NodeWithComponents { components: { transportManager: { listen: (addrs: Multiaddr[]) => Promise<void> } } }

/** libp2p protocol id of the call stream; the major version is the wire protocol's. */
export const CALL_PROTOCOL = '/cohort/rpc/1.0.0'

/** Above this many queued bytes a flush hands libp2p a list instead of copying into one buffer. */
const COPY_LIMIT = 64 * 1024

export interface TcpTransportInit {
  /** The peer's identity key; its public half is the peer id Noise proves. */
  privateKey: PrivateKey
  /** Mixed into every Noise handshake: peers with another prologue cannot connect (the cohort key). */
  prologue?: Uint8Array
  /** Largest frame accepted from the remote end. */
  maxFrameBytes: number
  /** Keep the event loop polling for a short window after traffic (see loop-spinner.ts; default false). */
  spin?: boolean
}

export class TcpTransport implements Transport {
  readonly name = 'tcp' as const
  private node?: Libp2p
  private inboundHandler: (link: Link) => void = link => link.close()
  private readonly links = new Set<TcpLink>()

  constructor (private readonly init: TcpTransportInit) {}

  get localPeerId (): string {
    if (this.node == null) throw new Error('tcp transport is not started')
    return this.node.peerId.toString()
  }

  onInbound (handler: (link: Link) => void): void {
    this.inboundHandler = handler
  }

  async start (listen: string[]): Promise<void> {
    if (this.node == null) {
      this.node = await createLibp2p({
        privateKey: this.init.privateKey,
        addresses: { listen: listen.map(a => toMultiaddr(a).toString()) },
        transports: [tcp()],
        connectionEncrypters: [noise({ prologueBytes: this.init.prologue })],
        streamMuxers: [yamux()],
        connectionManager: {
          // Workers, tests and benchmarks open many connections from one host at once.
          inboundConnectionThreshold: 10_000,
          maxIncomingPendingConnections: 1_000,
          maxConnections: 10_000
        }
      })
      await this.node.handle(CALL_PROTOCOL, (stream, connection) => {
        this.inboundHandler(this.track(new TcpLink(stream, connection, 'inbound', this.init.maxFrameBytes, this.init.spin === true)))
      }, { maxInboundStreams: 16, maxOutboundStreams: 16 })
      return
    }
    // A node started dial-only (connect before listen) binds later through its transport manager.
    if (listen.length > 0) await (this.node as unknown as NodeWithComponents).components.transportManager.listen(listen.map(a => toMultiaddr(a)))
  }

  addresses (): string[] {
    if (this.node == null) return []
    return [...new Set(this.node.getMultiaddrs().map(ma => fromMultiaddr(ma)))]
  }

  async dial (address: string, signal: AbortSignal): Promise<Link> {
    if (this.node == null) throw new Error('tcp transport is not started')
    const connection = await this.node.dial(toMultiaddr(address), { signal })
    const stream = await connection.newStream(CALL_PROTOCOL, { signal })
    return this.track(new TcpLink(stream, connection, 'outbound', this.init.maxFrameBytes, this.init.spin === true))
  }

  async stop (): Promise<void> {
    for (const link of this.links) link.close()
    await this.node?.stop()
  }

  private track (link: TcpLink): TcpLink {
    this.links.add(link)
    link.addCloseHook(() => this.links.delete(link))
    return link
  }
}

class TcpLink implements Link {
  readonly transport = 'tcp' as const
  readonly remotePeerId: string
  private readonly inbox: FrameInbox
  readonly remoteAddress: string
  readonly stats: LinkStats = newLinkStats()
  /** Frames that arrived before the owner set onFrame (the remote may speak first). */
  onClose: (reason: Error | undefined) => void = () => {}

  private readonly reader: FrameReader
  private queue: Uint8Array[] = []
  private queuedBytes = 0
  private readonly maxQueuedBytes: number
  private flushScheduled = false
  /** This turn received more than one frame (cleared when the turn ends). */
  private burst = false
  /** Frames just received are being handled; what they send waits until all are. */
  private receiving = false
  private waitingForDrain = false
  private closed = false
  private readonly closeHooks: Array<() => void> = []
  private readonly deliverBound = (frame: unknown[]): void => {
    // Frames after a close (a handler closed the link) are dropped, as the bytes behind them.
    if (this.closed) return
    this.stats.framesIn++
    this.inbox.deliver(frame)
  }

  constructor (
    private readonly stream: Stream,
    private readonly connection: Connection,
    readonly direction: 'inbound' | 'outbound',
    maxFrameBytes: number,
    private readonly spin: boolean
  ) {
    this.remotePeerId = connection.remotePeer.toString()
    this.inbox = new FrameInbox(log, this.remotePeerId)
    this.remoteAddress = fromMultiaddr(connection.remoteAddr)
    this.reader = new FrameReader(maxFrameBytes)
    quietNoiseLengths(connection)
    oneWritePerMessage(connection)
    lazyWindowUpdates(stream)
    this.maxQueuedBytes = 2 * maxFrameBytes
    // Frames up to the limit may be in flight while we are busy; let libp2p hold them.
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, maxFrameBytes + 1024 * 1024)
    stream.addEventListener('message', evt => { this.receive(evt.data) })
    stream.addEventListener('close', evt => { this.finish(evt.error) })
    stream.addEventListener('drain', () => {
      this.waitingForDrain = false
      if (this.queue.length > 0) this.scheduleFlush()
    })
  }

  get onFrame (): (frame: unknown[]) => void {
    return this.inbox.onFrame
  }

  set onFrame (handler: (frame: unknown[]) => void) {
    this.inbox.onFrame = handler
  }

  get open (): boolean {
    return !this.closed
  }

  addCloseHook (hook: () => void): void {
    this.closeHooks.push(hook)
  }

  send (frame: Uint8Array): void {
    if (this.closed) throw new RpcError('CLOSED', `link to ${this.remotePeerId} is closed`)
    if (this.queuedBytes + frame.byteLength > this.maxQueuedBytes) {
      // The peer does not read: drop the link rather than grow without end. Calls it
      // carried take the lost-link path (resend to the same process, or fail).
      const err = new RpcError('OVERLOADED', `link to ${this.remotePeerId}: over ${this.maxQueuedBytes} bytes queued while the peer does not read`)
      this.close(err)
      throw err
    }
    this.queue.push(frame)
    this.queuedBytes += frame.byteLength
    this.stats.framesOut++
    this.scheduleFlush()
  }

  close (reason?: Error): void {
    if (this.closed) return
    this.flush()
    this.finish(reason)
    // Closing the connection, not just the stream, lets the remote see the link go at once.
    this.stream.close().catch(() => {}).finally(() => {
      this.connection.close().catch(() => {})
    })
  }

  /**
   * The first frame of a loop turn leaves at once (a lone call pays no wait); frames that
   * follow in the same turn queue up and leave together in one send when the turn ends.
   * In a turn that received several frames at once, answers to them are likely to follow,
   * so even the first waits for the end of the turn: one write instead of two. (libp2p
   * writes to the socket only after the turn anyway, so the first frame loses nothing.)
   */
  private scheduleFlush (): void {
    if (this.flushScheduled || this.waitingForDrain) return
    this.flushScheduled = true
    if (!this.burst && !this.receiving) this.flush()
    setImmediate(this.endOfTurn)
  }

  private readonly endOfTurn = (): void => {
    this.flushScheduled = false
    this.burst = false
    this.flush()
  }

  private flush (): void {
    if (this.queue.length === 0 || this.waitingForDrain || this.stream.status !== 'open') return
    const frames = this.queue
    const bytes = this.queuedBytes
    this.queue = []
    this.queuedBytes = 0
    let payload: Uint8Array | Uint8ArrayList
    if (frames.length === 1) payload = frames[0]
    else if (bytes <= COPY_LIMIT) payload = Buffer.concat(frames, bytes)
    else payload = new Uint8ArrayList(...frames)
    this.stats.bytesOut += bytes
    this.stats.writes++
    if (this.spin) loopSpinner.traffic()
    try {
      if (!this.stream.send(payload)) this.waitingForDrain = true
    } catch (err) {
      log.error('send to %s failed: %e', this.remotePeerId, err)
      this.close(err as Error)
    }
  }

  private receive (data: Uint8Array | Uint8ArrayList): void {
    if (this.closed) return
    this.stats.bytesIn += data.byteLength
    if (this.spin) loopSpinner.traffic()
    const framesBefore = this.stats.framesIn
    this.receiving = true
    try {
      this.reader.push(data, this.deliverBound)
    } catch (err) {
      // Bad bytes put the stream out of step: drop the link, never the process.
      log.error('closing link to %s: %s', this.remotePeerId, (err as Error).message)
      this.stream.abort(err as Error)
      this.connection.close().catch(() => {})
      this.finish(err as Error)
      return
    } finally {
      this.receiving = false
    }
    if (this.stats.framesIn - framesBefore > 1) {
      this.burst = true
      if (!this.flushScheduled) {
        this.flushScheduled = true
        setImmediate(this.endOfTurn)
      }
    } else if (!this.burst) {
      // A lone frame: whatever answered it leaves now.
      this.flush()
    }
  }

  private finish (reason: Error | undefined): void {
    if (this.closed) return
    this.closed = true
    this.queue = []
    for (const hook of this.closeHooks) hook()
    this.onClose(reason)
  }
}
