/**
 * The RDMA ("infiniband") arm. It is a STUB: there is no verbs code, it never moves
 * data by RDMA, and it is never chosen unless a test asks for emulation. It exists so
 * the transport interface, the bandit and debugInfo already have the arm.
 *
 * With `RpcOptions.emulateRdma = { latencyUs }` the router gets an `EmulatedRdmaLink`
 * per peer: a loopback arm that carries each frame over another live link to the same
 * peer (shm when there is one, else tcp) after `latencyUs` of added delay, and whose
 * probes report exactly `2 * latencyUs` as their round trip, so a test can make the arm
 * look slower or faster than the real ones. `latencyUs` is read on every send: change
 * it on the options object and the arm changes.
 *
 * ```ts
 * const rpc = new Rpc({ emulateRdma: { latencyUs: 5000 } })   // tests of the bandit only
 * rpc.debugInfo().transports.find(t => t.name === 'rdma')      // reason says EMULATED
 * ```
 */
import { existsSync, readdirSync } from 'node:fs'
import { RpcError } from '../../errors/rpc-error.js'
import { newLinkStats, type Link, type LinkStats, type Transport, type TransportAvailability } from '../transport.js'

export interface RdmaEmulation {
  /** Added one-way latency, µs; also what the arm's probes report (twice, as a round trip). */
  latencyUs: number
}

const DEVICE_DIR = '/sys/class/infiniband'

/** Why there is no RDMA here. There never is: even with a device, this arm is a stub. */
export function rdmaAvailability (emulation?: RdmaEmulation): TransportAvailability {
  if (emulation != null) {
    return { available: true, reason: `EMULATED for tests: a loopback arm over another link with ${emulation.latencyUs} µs added; no RDMA is done` }
  }
  try {
    if (existsSync(DEVICE_DIR) && readdirSync(DEVICE_DIR).length > 0) {
      return { available: false, reason: `a device exists under ${DEVICE_DIR}, but this arm is a stub (no verbs code yet)` }
    }
  } catch {}
  return { available: false, reason: `no device under ${DEVICE_DIR}` }
}

export function checkEmulation (value: unknown): RdmaEmulation | undefined {
  if (value == null) return undefined
  const latency = (value as RdmaEmulation).latencyUs
  if (typeof value !== 'object' || typeof latency !== 'number' || !Number.isFinite(latency) || latency < 0) {
    throw new RpcError('BAD_ARGUMENT', 'emulateRdma must be { latencyUs: number >= 0 }')
  }
  return value as RdmaEmulation
}

/** The stub transport: nothing to listen on, nothing to dial. */
export class RdmaTransport implements Transport {
  readonly name = 'rdma' as const
  readonly localPeerId = ''

  constructor (private readonly emulation?: RdmaEmulation) {}

  availability (): TransportAvailability {
    return rdmaAvailability(this.emulation)
  }

  async start (): Promise<void> {}
  addresses (): string[] { return [] }
  onInbound (): void {}
  async stop (): Promise<void> {}

  async dial (): Promise<Link> {
    throw new RpcError('PEER_NOT_FOUND', `rdma: ${rdmaAvailability(this.emulation).reason ?? 'unavailable'}`)
  }
}

/** The emulated arm to one peer (see the module comment). Never used without emulation. */
export class EmulatedRdmaLink implements Link {
  readonly transport = 'rdma' as const
  readonly direction = 'outbound' as const
  readonly stats: LinkStats = newLinkStats()
  onFrame: (frame: unknown[]) => void = () => {}
  onClose: (reason: Error | undefined) => void = () => {}

  constructor (readonly emulation: RdmaEmulation, public carrier: Link) {}

  get remotePeerId (): string { return this.carrier.remotePeerId }
  get remoteAddress (): string { return `emulated-rdma via ${this.carrier.transport}` }
  get open (): boolean { return this.carrier.open }

  send (frame: Uint8Array): void {
    const carrier = this.carrier
    if (!carrier.open) throw new RpcError('CLOSED', 'emulated rdma: the carrier link is closed')
    this.stats.framesOut++
    this.stats.bytesOut += frame.byteLength
    this.stats.writes++
    const ms = this.emulation.latencyUs / 1000
    if (ms < 1) {
      carrier.send(frame)
      return
    }
    // A frame that finds its carrier gone is lost like any frame on a lost link: the
    // call table resends calls when a link to their peer closes.
    setTimeout(() => { if (carrier.open) try { carrier.send(frame) } catch {} }, ms)
  }

  /** Round trip its probes report, µs. */
  probeRoundTripUs (): number {
    return 2 * this.emulation.latencyUs
  }

  close (): void {}
}
