/**
 * `Rpc`: the public facade. It checks arguments, wires the layers together and owns no
 * protocol logic: calls live in calls/, endpoints in endpoints/, names in cohort/, links
 * in transports/, and the choice of link in router/.
 *
 * ```ts
 * const host = new Rpc({ name: 'host' })
 * host.define('bar', (s: string) => s.length)
 * await host.listen('127.0.0.1:0')
 *
 * const client = new Rpc()
 * client.connect(host.addresses()[0])
 * console.log(await client.async_('host', 'bar', 'hello'))   // 5
 * ```
 */
import './transports/tcp/polyfill.js'
import { CallTable } from './calls/call-table.js'
import { Future } from './calls/future.js'
import { Dialer } from './cohort/dialer.js'
import { Discovery } from './cohort/discovery.js'
import { latencyTimesLoad } from './cohort/peer-chooser.js'
import { cohortPrologue, loadIdentity } from './cohort/identity.js'
import { PeerDirectory } from './cohort/peer-directory.js'
import { withPrint, type DebugInfo } from './debug/debug-info.js'
import { Dispatcher } from './endpoints/dispatcher.js'
import { getDevice } from './tensor/device.js'
import type { Queue, Reply } from './endpoints/queue.js'
import { EndpointRegistry, type EndpointOptions, type QueueOptions } from './endpoints/registry.js'
import { RpcError } from './errors/rpc-error.js'
import { Router } from './router/router.js'
import { SyncCaller } from './sync/sync-caller.js'
import { ALL_TRANSPORTS, parseTransportNames } from './transports/names.js'
import { TcpTransport } from './transports/tcp/tcp-transport.js'
import { loopSpinner, spinGate } from './transports/loop-spinner.js'
import { ShmTransport, hostIdentity } from './transports/shm/shm-transport.js'
import { ShmLink } from './transports/shm/shm-link.js'
import { RdmaTransport, checkEmulation, type RdmaEmulation } from './transports/rdma/rdma-transport.js'
import type { PeerSession } from './cohort/peer-directory.js'
import { toMultiaddr } from './transports/tcp/address.js'
import type { TransportName } from './transports/transport.js'
import { randomBytes } from 'node:crypto'

export interface RpcOptions {
  /** Unique within the cohort. Default: a random, globally unique name. */
  name?: string
  /** Deadline of each call, in seconds (default 120). */
  timeout?: number
  /** Transports to use: 'tcp'/'tcp/ip', 'shm'/'shared memory', 'rdma'/'infiniband'. Default: all. */
  transports?: string[]
  /** Shared secret: peers without the same key cannot connect. */
  cohortKey?: string | Uint8Array
  /** A persisted key from `generateIdentity()`, so a restarted peer keeps its peer id. */
  identity?: Uint8Array
  /** Largest frame sent or accepted, in bytes (default 256 MiB). */
  maxFrameBytes?: number
  /** Calls this peer may have in flight at once; more fail with OVERLOADED (default 65536). */
  maxInflight?: number
  /** Calls this peer may be serving at once; more get OVERLOADED (default 65536). */
  maxRunning?: number
  /** Seconds a call waits for a link to a peer that is not connected before PEER_NOT_FOUND (default 5). */
  lookupTimeout?: number
  /** Seconds a call in flight waits for its peer's lost link to come back before PEER_NOT_FOUND (default 2). */
  reconnectGrace?: number
  /**
   * Seconds a peer with no link is remembered (default 600): after that its name can be
   * bound afresh and what was learnt about it (latency estimates, round-trip time) goes.
   */
  forgetPeerAfter?: number
  /** Device the tensors in results are put on before a call resolves (default 'cpu'). */
  device?: string
  /**
   * Keep the event loop polling for a short, adaptive window (0.2 to 4 ms) after TCP traffic
   * instead of sleeping, so the next message does not pay for a kernel wake-up (default
   * false). Lowers p50 and p90 of a lone call by a third on a 2-vCPU VM, but makes p99
   * several times worse there (a spinner holds a CPU the peer or the kernel's network work
   * is then queued behind for a time slice), and costs up to a core while traffic is
   * recent. Never spins on one CPU; pauses while the machine is oversubscribed. See
   * transports/loop-spinner.ts. (The shm link always polls its ring this way.)
   */
  spin?: boolean
  /** Bytes of each direction's shared-memory ring (a power of two, default 4 MiB). */
  shmRingBytes?: number
  /**
   * Bytes of the arena a peer makes for each shm link once it sends a payload of 64 KiB or
   * more over it (a power of two from 64 KiB to 1 GiB, default 256 MiB). Payloads go inline
   * through the ring while it is full. See the README, "Shared memory".
   */
  shmArenaBytes?: number
  /**
   * FOR TESTS OF THE BANDIT ONLY: turns the RDMA stub into a loopback arm over another
   * link with `latencyUs` added (read on every send, so it can be changed later). No RDMA is done.
   */
  emulateRdma?: RdmaEmulation
  /** Take part in gossip discovery, failure detection and forwarding (default true). */
  gossip?: boolean
  /**
   * Called (with a NAME_TAKEN RpcError) when this peer's name turns out to be held by another
   * live key: a member refused our HELLO, or gossip shows the holder. connect() does not block,
   * so this is where a later claimant learns it.
   */
  onNameTaken?: (error: RpcError) => void
}

/** What a call handler gets called with, and what the caller's callback receives. */
export type Callback<T> = (result: T | undefined, error: RpcError | undefined) => void

const DEFAULTS = {
  timeout: 120,
  maxFrameBytes: 256 * 1024 * 1024,
  maxInflight: 65_536,
  maxRunning: 65_536,
  maxDedupEntries: 1_000_000,
  lookupTimeout: 5,
  reconnectGrace: 2,
  helloTimeoutMs: 10_000,
  dialTimeoutMs: 10_000,
  sweepIntervalMs: 1_000,
  /** A call neither acked nor answered this long after it was sent is sent again (then after 2x, 4x, ...). */
  resendUnackedMs: 2_000,
  /** Seconds a peer with no link is remembered (its name can then be bound afresh). */
  forgetPeerAfter: 600
}

/** A lost shm link is offered again after this long (unless its ring was found corrupt). */
const SHM_RETRY_MS = 1_000

export class Rpc {
  private name: string
  private timeoutMs: number
  private readonly options: RpcOptions
  private readonly maxFrameBytes: number
  private readonly incarnation = PeerDirectory.newIncarnation()
  private readonly registry = new EndpointRegistry()
  private readonly directory: PeerDirectory
  private readonly router: Router
  private readonly calls: CallTable
  private readonly dispatcher: Dispatcher
  private readonly syncCaller: SyncCaller
  private transport?: TcpTransport
  private readonly shm: ShmTransport
  private readonly rdma: RdmaTransport
  private readonly host = hostIdentity()
  private dialer?: Dialer
  private discovery?: Discovery
  /** Start time: the incarnation of this peer's signed record (a restart outranks it). */
  private readonly startedAt = Date.now()
  private readonly lookupTimeoutMs: number
  private readonly forgetPeerAfterMs: number
  private startup?: Promise<void>
  private sweepTimer?: NodeJS.Timeout
  private closing?: Promise<void>
  private readonly connectTargets: string[] = []

  constructor (options: RpcOptions = {}) {
    if (options == null || typeof options !== 'object') throw new RpcError('BAD_ARGUMENT', 'Rpc options must be an object')
    this.options = options
    this.name = options.name ?? `peer-${randomBytes(12).toString('hex')}`
    checkName(this.name)
    this.timeoutMs = secondsToMs('timeout', options.timeout ?? DEFAULTS.timeout)
    const transports = options.transports == null ? [...ALL_TRANSPORTS] : parseTransportNames(options.transports)
    cohortPrologue(options.cohortKey) // checks the key's type now rather than at the first dial
    if (options.identity != null && !(options.identity instanceof Uint8Array)) {
      throw new RpcError('BAD_ARGUMENT', 'identity must be the Uint8Array that generateIdentity() returned')
    }
    if (options.onNameTaken != null && typeof options.onNameTaken !== 'function') throw new RpcError('BAD_ARGUMENT', 'onNameTaken must be a function')
    if (options.spin != null && typeof options.spin !== 'boolean') throw new RpcError('BAD_ARGUMENT', 'spin must be true or false')
    const maxFrameBytes = this.maxFrameBytes = positiveInteger('maxFrameBytes', options.maxFrameBytes ?? DEFAULTS.maxFrameBytes)
    const lookupTimeoutMs = this.lookupTimeoutMs = secondsToMs('lookupTimeout', options.lookupTimeout ?? DEFAULTS.lookupTimeout)
    this.forgetPeerAfterMs = secondsToMs('forgetPeerAfter', options.forgetPeerAfter ?? DEFAULTS.forgetPeerAfter)

    this.directory = new PeerDirectory({
      helloTimeoutMs: DEFAULTS.helloTimeoutMs,
      nameHolder: name => this.discovery?.holderOf(name),
      self: {
        name: () => this.name,
        peerId: () => this.transport?.localPeerId ?? '',
        addresses: () => this.addresses(),
        transports: () => this.router.enabledTransports().filter(t => this.availability(t).available),
        host: () => this.host,
        incarnation: this.incarnation
      }
    }, {
      peerUp: (session, restarted) => {
        this.router.peerUp(session, restarted)
        this.offerShm(session)
        this.discovery?.linkUp(session.name)
      },
      peerDown: session => { this.router.peerDown(session) },
      peerForgotten: name => { this.router.peerForgotten(name) },
      linkDown: (session, link, reason) => {
        this.router.linkDown(session, link)
        // A shm link torn down (not found corrupt) is set up again once things settle.
        if (link.transport !== 'shm') return
        if (reason instanceof RpcError && reason.code === 'BAD_FRAME') this.shm.distrust(session.peerId)
        else setTimeout(() => { this.offerShm(session) }, SHM_RETRY_MS).unref()
      },
      frame: (session, frame, link) => { this.router.receive(session, frame, link) }
    })
    const emulateRdma = checkEmulation(options.emulateRdma)
    const ring = options.shmRingBytes
    if (ring != null && (!Number.isInteger(ring) || ring < 4096 || ring > 2 ** 30 || (ring & (ring - 1)) !== 0)) {
      throw new RpcError('BAD_ARGUMENT', 'shmRingBytes must be a power of two from 4096 to 2^30')
    }
    const arena = options.shmArenaBytes
    if (arena != null && (!Number.isInteger(arena) || arena < 2 ** 16 || arena > 2 ** 30 || (arena & (arena - 1)) !== 0)) {
      throw new RpcError('BAD_ARGUMENT', 'shmArenaBytes must be a power of two from 2^16 (64 KiB) to 2^30 (1 GiB)')
    }
    this.router = new Router(this.directory, () => this.name, transports, { emulateRdma })
    this.shm = new ShmTransport({
      maxFrameBytes,
      ringBytes: options.shmRingBytes,
      arenaBytes: options.shmArenaBytes,
      localPeerId: () => this.transport?.localPeerId ?? ''
    })
    this.rdma = new RdmaTransport(emulateRdma)
    this.shm.onInbound(link => {
      const session = this.directory.sessions().find(s => s.peerId === link.remotePeerId)
      this.directory.attach(link, session?.learnedFrom ?? 'shm').catch(() => {})
    })
    this.router.onShmOffer = (session, frame, link) => {
      if (this.shmWanted(session) && session.peerId < this.localPeerId()) this.shm.onOffer(session, frame, link)
    }
    this.calls = new CallTable({
      maxInflight: positiveInteger('maxInflight', options.maxInflight ?? DEFAULTS.maxInflight),
      maxFrameBytes,
      lookupTimeoutMs,
      reconnectGraceMs: secondsToMs('reconnectGrace', options.reconnectGrace ?? DEFAULTS.reconnectGrace),
      resultDevice: getDevice(options.device ?? 'cpu').name,
      send: (peer, frame, callId) => this.router.send(peer, frame, 'call', callId),
      hasLink: peer => peer === this.name || this.directory.linkFor(peer) != null
    })
    this.dispatcher = new Dispatcher(this.registry, {
      selfName: () => this.name,
      maxRunning: positiveInteger('maxRunning', options.maxRunning ?? DEFAULTS.maxRunning),
      maxDedupEntries: DEFAULTS.maxDedupEntries,
      maxFrameBytes,
      send: (peer, frame) => this.router.send(peer, frame)
    })
    this.router.calls = this.calls
    this.router.dispatcher = this.dispatcher
    this.syncCaller = new SyncCaller({
      name: this.name,
      cohortKey: options.cohortKey,
      maxFrameBytes,
      lookupTimeoutMs,
      shmArenaBytes: options.shmArenaBytes
    })
  }

  setName (name: string): void {
    checkName(name)
    if (this.startup != null) throw new RpcError('BAD_ARGUMENT', `setName('${name}') must come before listen() and connect()`)
    this.name = name
  }

  getName (): string {
    return this.name
  }

  /** Binds an address (`host:port`, `tcp://host:port` or a multiaddr; port 0 picks a free one). */
  async listen (address: string): Promise<void> {
    this.checkOpen('listen')
    toMultiaddr(address)
    const first = this.startup == null
    await this.start(first ? [address] : [])
    if (!first) await this.transport?.start([address])
  }

  /** Addresses this peer listens on, in the form `connect` accepts. */
  addresses (): string[] {
    return this.transport?.addresses() ?? []
  }

  /** Connects to a peer at `address` and keeps the connection (redialing with backoff) until close(). Returns at once. */
  connect (address: string): void {
    this.checkOpen('connect')
    toMultiaddr(address) // throws BAD_ARGUMENT now, not at the first dial
    if (!this.connectTargets.includes(address)) this.connectTargets.push(address)
    this.start([]).then(() => { this.dialer?.add(address) }, () => {})
  }

  define (name: string, fn: (...args: any[]) => unknown, opts?: EndpointOptions): void {
    this.registry.define(name, fn, opts)
  }

  defineDeferred (name: string, fn: (reply: Reply, ...args: any[]) => void, opts?: EndpointOptions): void {
    this.registry.defineDeferred(name, fn, opts)
  }

  defineQueue<Args extends unknown[] = any[]> (name: string, opts?: QueueOptions): Queue<Args> {
    return this.registry.defineQueue<Args>(name, opts)
  }

  /** Removes a function; resolves once its calls in flight have ended. Calls still queued fail with FUNCTION_NOT_FOUND. */
  async undefine (name: string): Promise<void> {
    await this.registry.undefine(name, endpoint => {
      this.dispatcher.closeEndpoint(endpoint, new RpcError('FUNCTION_NOT_FOUND', `function '${name}' on peer '${this.name}' was undefined while the call waited in its queue`, { peer: this.name, fn: name }), true)
    })
  }

  async_<T = any> (peer: string, fn: string, ...args: unknown[]): Future<T> {
    return this.calls.start<T>(peer, fn, args, this.timeoutMs)
  }

  asyncCallback<T = any> (peer: string, fn: string, callback: Callback<T>, ...args: unknown[]): void {
    if (typeof callback !== 'function') throw new RpcError('BAD_ARGUMENT', 'asyncCallback() needs a callback function', { peer, fn })
    this.calls.start<T>(peer, fn, args, this.timeoutMs).whenSettled((value, error) => {
      try {
        callback(value, error)
      } catch (err) {
        // A throwing callback must not end other calls; report it like an uncaught exception.
        queueMicrotask(() => { throw err })
      }
    })
  }

  /**
   * Calls `fn` on some live peer that defines it (this one included), chosen by power of
   * two choices on latency times load. When no definer is known yet, waits for gossip to
   * bring one (at most the lookup timeout, within the call's deadline), then fails with
   * FUNCTION_NOT_FOUND.
   */
  asyncAny<T = any> (fn: string, ...args: unknown[]): Future<T> {
    if (typeof fn !== 'string' || fn === '') return this.async_<T>('', fn, ...args) // the call table reports the bad argument
    const peer = this.pickDefiner(fn)
    if (peer != null) return this.async_<T>(peer, fn, ...args)
    let inner: Future<T> | undefined
    let timer: NodeJS.Timeout | undefined
    const outer = new Future<T>(() => {
      clearTimeout(timer)
      // A call made already ends with its own error, naming the peer; this one before that.
      inner?.cancel()
      return new RpcError('CANCELLED', `the call of '${fn}' on any peer that defines it was cancelled by the caller`, { fn })
    })
    const giveUpAt = Date.now() + Math.min(this.lookupTimeoutMs, this.timeoutMs)
    const poll = (): void => {
      if (outer.done()) return
      const found = this.closing == null ? this.pickDefiner(fn) : undefined
      if (found != null) {
        inner = this.async_<T>(found, fn, ...args)
        inner.whenSettled((value, error) => { error != null ? outer.reject(error) : outer.resolve(value as T) })
      } else if (this.closing != null || Date.now() >= giveUpAt) {
        outer.reject(new RpcError(this.closing != null ? 'CLOSED' : 'FUNCTION_NOT_FOUND', `no live peer known to '${this.name}' defines '${fn}'`, { fn }))
      } else {
        timer = setTimeout(poll, 50)
      }
    }
    poll()
    return outer
  }

  /** `asyncAny`, blocking like `sync`: the definer must be known already (else FUNCTION_NOT_FOUND at once). */
  syncAny<T = any> (fn: string, ...args: unknown[]): T {
    // sync() cannot call this very Rpc, so only other peers are candidates.
    const peer = this.pickDefiner(fn, false)
    if (peer == null) throw new RpcError('FUNCTION_NOT_FOUND', `syncAny('${fn}'): no other live peer known to '${this.name}' defines it`, { fn })
    return this.sync<T>(peer, fn, ...args)
  }

  private pickDefiner (fn: string, includeSelf = true): string | undefined {
    const selfDefines = includeSelf && this.registry.get(fn) != null
    if (this.discovery == null) return selfDefines ? this.name : undefined
    const inflight = this.calls.perPeer()
    // The bandit's measured estimate where it has one (peers with several arms are probed);
    // else the call table's own round-trip average.
    const estimateMs = (peer: string): number | undefined => {
      const us = this.router.bandit.peerEstimateUs(peer)
      return us != null ? us / 1000 : this.calls.rttMs(peer)
    }
    const scores = latencyTimesLoad({ estimateMs }, { inflight: peer => inflight.get(peer) ?? 0 })
    return this.discovery.choose(fn, scores, selfDefines)
  }

  /** Calls and blocks this thread until the result is back; throws RpcError on failure. */
  sync<T = any> (peer: string, fn: string, ...args: unknown[]): T {
    this.checkOpen('sync')
    if (peer === this.name) {
      throw new RpcError('BAD_ARGUMENT', `sync('${peer}', '${fn}') calls this Rpc itself: the thread that must serve the call is the one sync() blocks, so it would deadlock; use async_()`, { peer, fn })
    }
    const session = this.directory.get(peer)
    const addresses = [...new Set([...(session?.addrs ?? []), ...(this.discovery?.addressesOf(peer) ?? []), ...this.connectTargets])]
    return this.syncCaller.call(peer, fn, args, this.timeoutMs, addresses) as T
  }

  /** Deadline of each call from now on, in seconds. */
  setTimeout (seconds: number): void {
    this.timeoutMs = secondsToMs('timeout', seconds)
  }

  /** Restricts the transports used: any of 'tcp'/'tcp/ip', 'shm'/'shared memory', 'rdma'/'infiniband'. */
  setTransports (names: string[]): void {
    this.router.setTransports(parseTransportNames(names))
    // shm allowed again: peers on this host get a segment without waiting for a reconnect.
    for (const session of this.directory.sessions()) this.offerShm(session)
  }

  debugInfo (): DebugInfo {
    const inflight = this.calls.perPeer()
    const enabled = new Set(this.router.enabledTransports())
    const now = Date.now()
    return withPrint({
      name: this.name,
      peerId: this.transport != null && this.startup != null ? safe(() => this.transport?.localPeerId) : undefined,
      incarnation: this.incarnation,
      addresses: this.addresses(),
      transports: ALL_TRANSPORTS.map((name: TransportName) => ({
        name,
        enabled: enabled.has(name),
        ...this.availability(name),
        ...(name === 'shm' ? { counters: { ...this.shm.counters }, lastError: this.shm.lastError } : {})
      })),
      peers: this.directory.sessions().map(s => ({
        name: s.name,
        peerId: s.peerId,
        state: s.state,
        incarnation: s.incarnation,
        addresses: s.addrs,
        transports: s.transports,
        learnedFrom: s.learnedFrom,
        lastHeardMsAgo: now - s.lastHeard(now),
        callsInFlight: inflight.get(s.name) ?? 0,
        links: s.links.map(l => ({
          transport: l.transport,
          direction: l.direction,
          remoteAddress: l.remoteAddress,
          ...l.stats,
          ...(l instanceof ShmLink ? { shm: l.details() } : {})
        })),
        bandit: this.router.banditInfo(s.name)
      })),
      connections: (this.dialer?.list() ?? []).map(t => ({
        address: t.address, state: t.state, peer: t.peer, attempts: t.attempts, connects: t.connects, lastError: t.lastError
      })),
      membership: this.discovery?.table() ?? [],
      nameTakenBy: this.discovery?.nameTakenBy == null ? undefined : { peerId: this.discovery.nameTakenBy.peerId, incarnation: this.discovery.nameTakenBy.incarnation },
      endpoints: this.registry.list().map(e => ({
        name: e.name,
        kind: e.kind,
        running: e.running,
        queued: e.kind === 'queue' ? e.queue.length : undefined,
        batch: e.batch != null ? `${e.batch.batchSize} on ${e.batch.device}, ${e.batch.maxWaitMs} ms` : e.kind === 'queue' ? e.queue.batchInfo() : undefined,
        gathering: e.batcher?.waiting
      })),
      counters: {
        inflight: this.calls.inflight,
        calls: this.calls.counters,
        served: { ...this.dispatcher.counters, running: this.dispatcher.running },
        router: this.router.counters,
        spin: { tcp: this.options.spin === true, ...loopSpinner.stats, ...spinGate.stats, windowUs: Math.round(loopSpinner.window.ms * 1000) },
        gossip: this.discovery == null ? undefined : { ...this.discovery.counters, ...this.discovery.membership.counters },
        forwarding: this.discovery?.forwarder.counters,
        handshakes: { refusalsSent: this.directory.refusalsSent, refusalsReceived: this.directory.refusalsReceived, lastRefusal: this.directory.lastRefusal }
      }
    })
  }

  /** Fails pending calls with CLOSED, closes every link and the listener; the process can then exit. */
  async close (): Promise<void> {
    this.closing ??= this.shutdown()
    await this.closing
  }

  private async shutdown (): Promise<void> {
    const closed = new RpcError('CLOSED', 'the Rpc was closed')
    this.calls.close(closed)
    for (const endpoint of this.registry.list()) this.dispatcher.closeEndpoint(endpoint, new RpcError('CLOSED', `peer '${this.name}' closed while the call waited in '${endpoint.name}'`), false)
    clearInterval(this.sweepTimer)
    this.dialer?.stop()
    this.discovery?.stop()
    await this.startup?.catch(() => {})
    this.directory.closeAll(closed)
    await Promise.allSettled([this.shm.stop(), this.transport?.stop(), this.syncCaller.close()])
  }

  private async start (listen: string[]): Promise<void> {
    this.startup ??= (async () => {
      const privateKey = await loadIdentity(this.options.identity)
      const transport = new TcpTransport({
        privateKey,
        prologue: cohortPrologue(this.options.cohortKey),
        maxFrameBytes: this.maxFrameBytes,
        spin: this.options.spin
      })
      transport.onInbound(link => {
        this.directory.attach(link, 'inbound').catch(() => {})
      })
      try {
        await transport.start(listen)
      } catch (err) {
        await transport.stop().catch(() => {})
        throw err
      }
      this.transport = transport
      if (this.options.gossip !== false) {
        const discovery = new Discovery({
          selfName: () => this.name,
          peerId: transport.localPeerId,
          incarnation: this.startedAt,
          privateKey,
          transport,
          directory: this.directory,
          router: this.router,
          calls: this.calls,
          addresses: () => transport.addresses(),
          functions: () => this.registry.list().map(e => e.name),
          dialTimeoutMs: DEFAULTS.dialTimeoutMs,
          nameTaken: this.options.onNameTaken
        })
        this.discovery = discovery
        this.router.extension = discovery
        discovery.start()
      }
      this.dialer = new Dialer({
        transport,
        directory: this.directory,
        backoff: { initialMs: 50, maxMs: 1000 },
        dialTimeoutMs: DEFAULTS.dialTimeoutMs
      })
      // connect() calls made while (an earlier attempt at) starting was under way.
      for (const address of this.connectTargets) this.dialer.add(address)
      this.sweepTimer = setInterval(() => {
        this.dispatcher.sweep()
        this.router.sweep()
        this.calls.resendUnacked(DEFAULTS.resendUnackedMs)
        this.directory.prune(Date.now(), this.forgetPeerAfterMs)
      }, DEFAULTS.sweepIntervalMs).unref()
      if (this.closing != null) {
        clearInterval(this.sweepTimer)
        this.dialer.stop()
        this.discovery?.stop()
        await transport.stop()
      }
    })()
    try {
      await this.startup
    } catch (err) {
      // A failed start (say, the port is taken) must not stick: let listen/connect try again.
      this.startup = undefined
      this.transport = undefined
      throw err
    }
  }

  private availability (name: TransportName): { available: boolean, reason?: string } {
    if (name === 'tcp') return { available: true }
    if (name === 'shm') return this.shm.availability()
    return this.rdma.availability()
  }

  private localPeerId (): string {
    return safe(() => this.transport?.localPeerId) ?? ''
  }

  /** Both ends can and may use shared memory, and have none yet. */
  private shmWanted (session: PeerSession): boolean {
    return this.closing == null && this.router.isEnabled('shm') && this.shm.availability().available &&
      this.host != null && session.host === this.host && session.transports.includes('shm') &&
      session.state === 'connected' && !session.links.some(l => l.transport === 'shm' && l.open) &&
      !this.shm.busy(session.peerId) && !this.shm.distrusted(session.peerId)
  }

  /** The peer with the smaller id offers a segment over the TCP link; the other answers (router.onShmOffer). */
  private offerShm (session: PeerSession): void {
    if (!this.shmWanted(session) || !(this.localPeerId() < session.peerId)) return
    const tcp = session.links.find(l => l.transport === 'tcp' && l.open)
    if (tcp != null) this.shm.offer(session, tcp)
  }

  private checkOpen (what: string): void {
    if (this.closing != null) throw new RpcError('CLOSED', `${what}(): the Rpc is closed`)
  }
}

function checkName (name: unknown): asserts name is string {
  if (typeof name !== 'string' || name === '' || name.length > 256) {
    throw new RpcError('BAD_ARGUMENT', 'a peer name must be a string of 1 to 256 characters')
  }
}

function secondsToMs (what: string, seconds: unknown): number {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds <= 0) {
    throw new RpcError('BAD_ARGUMENT', `${what} must be a positive number of seconds, got ${String(seconds)}`)
  }
  // setTimeout cannot wait longer than 2^31-1 ms.
  return Math.min(Math.round(seconds * 1000), 2 ** 31 - 1)
}

function positiveInteger (what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new RpcError('BAD_ARGUMENT', `${what} must be a positive integer, got ${String(value)}`)
  }
  return value
}

function safe<T> (fn: () => T): T | undefined {
  try {
    return fn()
  } catch {
    return undefined
  }
}
