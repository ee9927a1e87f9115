/**
 * The shared-memory transport: same host only, set up over an authenticated TCP link.
 *
 * ```
 *  a (smaller peer id)                                  b
 *   unixListen() at a random abstract name
 *   [SHM_OFFER, name, token] ── over the Noise link ──►
 *                                                        unixConnect(name)
 *   accept; SO_PEERCRED uid must be ours  ◄── token ──── (SO_PEERCRED uid must be ours)
 *   token must match, else drop
 *   memfd (0600, sealed) + 2 eventfds ── SCM_RIGHTS ───► mapSegment(memfd)
 *   ShmLink role a                                       ShmLink role b
 *   ── HELLO over the ring, as on every link (peer-directory.ts) ──
 * ```
 *
 * The listener accepts one connection and is closed at once; the name is in the
 * abstract namespace and the segment is a memfd, so nothing is ever left in the file
 * system or in /dev/shm, whatever happens to either process. Only the peer that Noise
 * authenticated learns the token, so only it can attach. Links are handed to
 * `onInbound` on both sides, like the links of any transport.
 *
 * A shm link that closes is offered again a second later (the Rpc does it), unless its
 * ring was found corrupt: the side that found it then neither offers nor accepts shm
 * with that peer again (distrust()), and the pair stays on TCP.
 *
 * ```ts
 * const shm = new ShmTransport({ maxFrameBytes, localPeerId: () => id })
 * shm.onInbound(link => directory.attach(link, 'shm'))
 * shm.offer(session, tcpLink)               // a's side, after the TCP handshake
 * shm.onOffer(session, frame, tcpLink)      // b's side, on [SHM_OFFER, ...]
 * ```
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { logger } from '@libp2p/logger'
import { encodeFrame, FrameType } from '../../codec/frame.js'
import { RpcError } from '../../errors/rpc-error.js'
import type { Link, Transport, TransportAvailability } from '../transport.js'
import { loadShmNative, type ShmAddon, type Watcher } from './native.js'
import { ShmLink } from './shm-link.js'

const log = logger('cohort:shm')

const SETUP_MAGIC = Buffer.from('cohort-shm/1')

/**
 * Arena size when the Rpc does not set one. Address space only until used: pages are
 * allocated as blocks are first written. A block comes back only after the receiver's
 * garbage collector found its view dead, and V8 collects after about 64 MB of new external
 * memory, so back-to-back 16 MiB payloads keep five or six blocks out; with 64 MiB, a
 * sixth of them went inline through the ring (scratch measurement, 100 echoes).
 */
const DEFAULT_ARENA_BYTES = 256 * 1024 * 1024

export interface ShmTransportInit {
  /** Largest frame accepted from the peer. */
  maxFrameBytes: number
  /** Bytes of each direction's ring (a power of two; default 4 MiB). */
  ringBytes?: number
  /** Bytes of the arena each side makes for out-of-band payloads, when it first sends one (a power of two; default DEFAULT_ARENA_BYTES). */
  arenaBytes?: number
  /** How long an offer waits for the peer to attach (default 5 s). */
  setupTimeoutMs?: number
  /** This process's libp2p peer id. */
  localPeerId: () => string
}

/** Who a peer is, as far as setting up shm is concerned. */
export interface ShmPeer {
  name: string
  peerId: string
}

/**
 * The host identity two peers compare: a hash of the boot id and the uid. Equal values
 * mean same kernel, same boot, same user: a memfd and eventfds can be shared.
 */
export function hostIdentity (): string | undefined {
  try {
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    const uid = process.getuid?.() ?? -1
    return createHash('sha256').update(`cohort/host/v1\0${bootId}\0${uid}`).digest('hex').slice(0, 32)
  } catch {
    return undefined
  }
}

export class ShmTransport implements Transport {
  readonly name = 'shm' as const
  private readonly native?: ShmAddon
  private readonly reason?: string
  private inboundHandler: (link: Link) => void = link => { link.close() }
  /** Setups under way, by remote peer id, so one pair sets up one segment at a time. */
  private readonly setups = new Map<string, () => void>()
  private readonly links = new Set<ShmLink>()
  private stopped = false
  /** Setups offered, accepted, established and failed; links closed for bad bytes (ring or arena). */
  readonly counters = { offered: 0, accepted: 0, established: 0, failed: 0, badFrames: 0 }
  lastError?: string

  constructor (private readonly init: ShmTransportInit) {
    const loaded = loadShmNative()
    this.native = loaded.addon
    this.reason = loaded.reason
  }

  get localPeerId (): string {
    return this.init.localPeerId()
  }

  availability (): TransportAvailability {
    return this.native != null ? { available: true } : { available: false, reason: this.reason }
  }

  onInbound (handler: (link: Link) => void): void {
    this.inboundHandler = handler
  }

  async start (): Promise<void> {}

  addresses (): string[] {
    return []
  }

  async dial (): Promise<Link> {
    throw new RpcError('BAD_ARGUMENT', 'shm links are not dialed: they are set up over an authenticated tcp link (see ShmTransport.offer)')
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const cancel of [...this.setups.values()]) cancel()
    for (const link of [...this.links]) link.close(new RpcError('CLOSED', 'the Rpc was closed'))
  }

  /** Peers whose ring we found corrupt: no more segments with them (this process). */
  private readonly distrustedPeers = new Set<string>()

  distrust (peerId: string): void {
    this.distrustedPeers.add(peerId)
  }

  distrusted (peerId: string): boolean {
    return this.distrustedPeers.has(peerId)
  }

  /** True when a setup with this peer is under way. */
  busy (peerId: string): boolean {
    return this.setups.has(peerId)
  }

  /** a's side: listen at a fresh abstract name and send the offer over `via` (a tcp link). */
  offer (peer: ShmPeer, via: Link): void {
    const native = this.native
    if (native == null || this.stopped || this.setups.has(peer.peerId) || via.transport !== 'tcp') return
    let listener: { fd: number, name: string }
    try {
      listener = native.unixListen()
    } catch (err) {
      this.failed(peer, err as Error)
      return
    }
    this.counters.offered++
    const token = randomBytes(32)
    const fds = new Set<number>([listener.fd])
    const watchers: Watcher[] = []
    let done = false
    const cleanup = (keep: number[] = []): void => {
      done = true
      clearTimeout(timer)
      this.setups.delete(peer.peerId)
      for (const w of watchers) w.close()
      for (const fd of fds) if (!keep.includes(fd)) closeQuietly(native, fd)
    }
    const abort = (err: Error): void => {
      if (done) return
      cleanup()
      this.failed(peer, err)
    }
    const timer = setTimeout(() => { abort(new RpcError('TIMEOUT', `peer '${peer.name}' did not attach to the shm segment within ${this.setupTimeout()} ms`)) }, this.setupTimeout())
    this.setups.set(peer.peerId, () => { abort(new RpcError('CLOSED', 'shm setup cancelled')) })

    let connection = -1
    const onToken = (): void => {
      if (done) return
      const message = native.receiveMessage(connection)
      if (message == null) return
      for (const fd of message.fds) closeQuietly(native, fd)
      if (message.data.byteLength !== token.byteLength || !timingSafeEqual(message.data, token)) {
        abort(new RpcError('UNAUTHORIZED', `a process at our shm socket sent a wrong token (expected peer '${peer.name}')`))
        return
      }
      let segment = -1
      let myBell = -1
      let peerBell = -1
      let memory: ArrayBuffer | undefined
      try {
        segment = native.createSegment(this.ringBytes())
        fds.add(segment)
        myBell = native.eventfd()
        fds.add(myBell)
        peerBell = native.eventfd()
        fds.add(peerBell)
        memory = native.mapSegment(segment)
        if (!native.sendMessage(connection, SETUP_MAGIC, [segment, peerBell, myBell])) throw new RpcError('OVERLOADED', 'shm setup socket is full')
      } catch (err) {
        if (memory != null) native.unmapSegment(memory)
        abort(err as Error)
        return
      }
      // The peer holds its own copies now; ours of the segment fd is not needed.
      cleanup([myBell, peerBell, connection])
      this.established(new ShmLink({
        native, memory, role: 'a', myBell, peerBell, socket: connection,
        remotePeerId: peer.peerId, remoteAddress: `shm:${peer.name}`, direction: 'outbound', maxFrameBytes: this.init.maxFrameBytes, arenaBytes: this.arenaBytes()
      }))
    }
    const onConnect = (): void => {
      if (done || connection >= 0) return
      let fd: number
      try {
        fd = native.unixAccept(listener.fd)
        if (fd < 0) return
        fds.add(fd)
        checkUid(native, fd)
      } catch (err) {
        abort(err as Error)
        return
      }
      connection = fd
      // One connection per offer: nobody else gets to try.
      watchers[0].close()
      fds.delete(listener.fd)
      closeQuietly(native, listener.fd)
      const w = new native.Watcher(fd, false, (readable, hangup) => {
        try {
          if (readable) onToken()
          else if (hangup) abort(new RpcError('CLOSED', 'shm setup socket hung up'))
        } catch (err) {
          abort(err as Error)
        }
      })
      watchers.push(w)
      w.start()
    }
    try {
      const w = new native.Watcher(listener.fd, false, () => { onConnect() })
      watchers.push(w)
      w.start()
      via.send(encodeFrame([FrameType.SHM_OFFER, listener.name, token]))
    } catch (err) {
      abort(err as Error)
    }
  }

  /** b's side: an offer came over `via`. Attach, prove we hold the token, receive the fds. */
  onOffer (peer: ShmPeer, frame: unknown[], via: Link): void {
    const native = this.native
    if (native == null || this.stopped || this.setups.has(peer.peerId)) return
    const [, name, token] = frame
    if (via.transport !== 'tcp' || typeof name !== 'string' || !/^cohort-shm-[0-9a-f]{32}$/.test(name) || !(token instanceof Uint8Array) || token.byteLength !== 32) {
      this.failed(peer, new RpcError('BAD_FRAME', 'malformed SHM_OFFER'))
      return
    }
    this.counters.accepted++
    let connection: number
    try {
      connection = native.unixConnect(name)
    } catch (err) {
      this.failed(peer, err as Error)
      return
    }
    let done = false
    let watcher: Watcher | undefined
    const cleanup = (keepSocket: boolean): void => {
      done = true
      clearTimeout(timer)
      this.setups.delete(peer.peerId)
      watcher?.close()
      if (!keepSocket) closeQuietly(native, connection)
    }
    const abort = (err: Error): void => {
      if (done) return
      cleanup(false)
      this.failed(peer, err)
    }
    const timer = setTimeout(() => { abort(new RpcError('TIMEOUT', `peer '${peer.name}' did not send the shm segment within ${this.setupTimeout()} ms`)) }, this.setupTimeout())
    this.setups.set(peer.peerId, () => { abort(new RpcError('CLOSED', 'shm setup cancelled')) })
    const onSegment = (): void => {
      const message = native.receiveMessage(connection)
      if (message == null) return
      if (message.data.byteLength === 0) {
        abort(new RpcError('CLOSED', `peer '${peer.name}' closed the shm setup socket`))
        return
      }
      if (message.fds.length !== 3 || !SETUP_MAGIC.equals(message.data) || message.truncated) {
        for (const fd of message.fds) closeQuietly(native, fd)
        abort(new RpcError('BAD_FRAME', 'shm setup message is not a segment and two doorbells'))
        return
      }
      const [segment, myBell, peerBell] = message.fds
      let memory: ArrayBuffer
      try {
        memory = native.mapSegment(segment)
      } catch (err) {
        for (const fd of message.fds) closeQuietly(native, fd)
        abort(err as Error)
        return
      } finally {
        closeQuietly(native, segment)
      }
      cleanup(true)
      this.established(new ShmLink({
        native, memory, role: 'b', myBell, peerBell, socket: connection,
        remotePeerId: peer.peerId, remoteAddress: `shm:${peer.name}`, direction: 'inbound', maxFrameBytes: this.init.maxFrameBytes, arenaBytes: this.arenaBytes()
      }))
    }
    try {
      checkUid(native, connection)
      watcher = new native.Watcher(connection, false, (readable, hangup) => {
        try {
          if (readable) onSegment()
          else if (hangup) abort(new RpcError('CLOSED', 'shm setup socket hung up'))
        } catch (err) {
          abort(err as Error)
        }
      })
      watcher.start()
      if (!native.sendMessage(connection, token, [])) throw new RpcError('OVERLOADED', 'shm setup socket is full')
    } catch (err) {
      abort(err as Error)
    }
  }

  private established (link: ShmLink): void {
    this.counters.established++
    this.links.add(link)
    link.addCloseHook(() => {
      this.links.delete(link)
      const reason = link.closeReason
      if (reason instanceof RpcError && reason.code === 'BAD_FRAME') {
        this.counters.badFrames++
        this.lastError = `link to ${link.remoteAddress} closed: ${reason.message}`
      }
    })
    if (this.stopped) {
      link.close(new RpcError('CLOSED', 'the Rpc was closed'))
      return
    }
    this.inboundHandler(link)
  }

  private failed (peer: ShmPeer, err: Error): void {
    this.counters.failed++
    this.lastError = `${peer.name}: ${err.message}`
    log('shm setup with %s failed: %s', peer.name, err.message)
  }

  private ringBytes (): number {
    return this.init.ringBytes ?? 4 * 1024 * 1024
  }

  private arenaBytes (): number {
    return this.init.arenaBytes ?? DEFAULT_ARENA_BYTES
  }

  private setupTimeout (): number {
    return this.init.setupTimeoutMs ?? 5_000
  }
}

function checkUid (native: ShmAddon, fd: number): void {
  const { uid } = native.peerCredentials(fd)
  const ours = process.getuid?.()
  if (ours != null && uid !== ours) throw new RpcError('UNAUTHORIZED', `the process at the other end of the shm socket runs as uid ${uid}, not ${ours}`)
}

function closeQuietly (native: ShmAddon, fd: number): void {
  try {
    native.closeFd(fd)
  } catch {}
}
