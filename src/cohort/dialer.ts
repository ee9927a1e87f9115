/**
 * Keeps the connections `connect()` asked for: dials, hands the link to the directory for
 * its handshake, and when the link is lost (or the dial fails) dials again after a
 * backoff, until `stop()`.
 *
 * ```ts
 * const dialer = new Dialer({ transport, directory, backoff: { initialMs: 50, maxMs: 1000 } })
 * dialer.add('127.0.0.1:1234')
 * ```
 */
import { logger } from '@libp2p/logger'
import { SelfLinkError, type PeerDirectory, type PeerSession } from './peer-directory.js'
import type { Transport } from '../transports/transport.js'
import { Backoff, type BackoffInit } from './backoff.js'

const log = logger('cohort:dialer')

export interface DialerInit {
  transport: Transport
  directory: PeerDirectory
  backoff: BackoffInit
  /** Limit on one dial plus handshake. */
  dialTimeoutMs: number
}

export type DialState = 'dialing' | 'connected' | 'waiting' | 'self' | 'stopped'

/** One address `connect()` was given. */
export class DialTarget {
  state: DialState = 'dialing'
  attempts = 0
  connects = 0
  peer?: string
  lastError?: string
  readonly backoff: Backoff
  timer?: NodeJS.Timeout
  abort?: AbortController

  constructor (readonly address: string, backoff: BackoffInit) {
    this.backoff = new Backoff(backoff)
  }
}

export class Dialer {
  private readonly targets = new Map<string, DialTarget>()
  private stopped = false

  constructor (private readonly init: DialerInit) {}

  list (): DialTarget[] {
    return [...this.targets.values()]
  }

  /** Starts keeping a connection to `address`; a second add of one address is a no-op. */
  add (address: string): DialTarget {
    const existing = this.targets.get(address)
    if (existing != null) return existing
    const target = new DialTarget(address, this.init.backoff)
    this.targets.set(address, target)
    if (this.stopped) {
      target.state = 'stopped'
      return target
    }
    this.dial(target)
    return target
  }

  stop (): void {
    this.stopped = true
    for (const target of this.targets.values()) {
      target.state = 'stopped'
      clearTimeout(target.timer)
      target.abort?.abort()
    }
  }

  private dial (target: DialTarget): void {
    if (this.stopped) return
    target.state = 'dialing'
    target.attempts++
    const abort = new AbortController()
    target.abort = abort
    const timer = setTimeout(() => abort.abort(new Error(`dial of ${target.address} took over ${this.init.dialTimeoutMs} ms`)), this.init.dialTimeoutMs)
    this.init.transport.dial(target.address, abort.signal)
      .then(async link => ({ link, session: await this.init.directory.attach(link, target.address) }))
      .then(({ link, session }) => {
        clearTimeout(timer)
        this.connected(target, session)
        // The directory owns onClose after the handshake; wrap it to learn of the loss.
        const owner = link.onClose
        link.onClose = reason => { owner(reason); this.lost(target) }
        if (!link.open) this.lost(target)
      }, (err: Error) => {
        clearTimeout(timer)
        this.failed(target, err)
      })
  }

  private connected (target: DialTarget, session: PeerSession): void {
    if (this.stopped) return
    target.state = 'connected'
    target.connects++
    target.peer = session.name
    target.lastError = undefined
    target.backoff.reset()
  }

  private lost (target: DialTarget): void {
    if (this.stopped) return
    log('link to %s (%s) lost; redialing', target.address, target.peer)
    this.retry(target)
  }

  private failed (target: DialTarget, err: Error): void {
    if (this.stopped) return
    target.lastError = err.message
    if (err instanceof SelfLinkError) {
      // connect() to our own address: nothing to keep.
      target.state = 'self'
      return
    }
    log('dial %s failed: %s', target.address, err.message)
    this.retry(target)
  }

  private retry (target: DialTarget): void {
    target.state = 'waiting'
    target.timer = setTimeout(() => { this.dial(target) }, target.backoff.next())
  }
}
