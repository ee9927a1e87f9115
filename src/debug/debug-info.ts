/**
 * The plain object `debugInfo()` returns, and its `print()`: a few readable tables.
 */
import type { ArmInfo } from '../router/latency-bandit.js'
import type { TransportName } from '../transports/transport.js'
import type { MemberInfo } from '../cohort/discovery.js'

export interface TransportInfo {
  name: TransportName
  enabled: boolean
  available: boolean
  /** Why an arm is unavailable (or, for an emulated arm, that it is emulated). */
  reason?: string
  /** shm: setups offered, accepted, established, failed. */
  counters?: Record<string, number>
  lastError?: string
}

export interface LinkInfo {
  transport: TransportName
  direction: 'inbound' | 'outbound'
  remoteAddress: string
  framesIn: number
  framesOut: number
  bytesIn: number
  bytesOut: number
  writes: number
  /** shm links: doorbell rings sent and received, spin hits, sleeps, the spin window. */
  shm?: Record<string, number>
}

export interface PeerInfo {
  name: string
  peerId: string
  state: string
  incarnation: string
  addresses: string[]
  transports: string[]
  learnedFrom: string
  /** Since the last frame from the peer, to within a second (see PeerSession.lastHeard). */
  lastHeardMsAgo: number
  callsInFlight: number
  links: LinkInfo[]
  /** The latency bandit's view of each arm to this peer: estimates per size class, choices, counts. */
  bandit: ArmInfo[]
}

export interface ConnectionInfo {
  address: string
  state: string
  peer?: string
  attempts: number
  connects: number
  lastError?: string
}

/** One member of the cohort as gossip knows it (see cohort/discovery.ts). */
export type MembershipInfo = MemberInfo

export interface DebugInfo {
  name: string
  peerId?: string
  incarnation: string
  addresses: string[]
  transports: TransportInfo[]
  peers: PeerInfo[]
  connections: ConnectionInfo[]
  /** The cohort's membership table (empty with gossip off). */
  membership: MembershipInfo[]
  /** Set when another live key holds this peer's name (it claimed the name later). */
  nameTakenBy?: { peerId: string, incarnation: number }
  /** `batch`: batchSize/device of a batched endpoint; `gathering`: calls waiting for their batch to run. */
  endpoints: Array<{ name: string, kind: string, running: number, queued?: number, batch?: string, gathering?: number }>
  counters: Record<string, unknown>
  /** Prints the tables to stdout (or returns them with `print(false)`). */
  print: (toStdout?: boolean) => string
}

export function withPrint (info: Omit<DebugInfo, 'print'>): DebugInfo {
  const out = info as DebugInfo
  Object.defineProperty(out, 'print', {
    enumerable: false,
    value: (toStdout = true): string => {
      const text = render(info)
      if (toStdout) process.stdout.write(text + '\n')
      return text
    }
  })
  return out
}

function render (info: Omit<DebugInfo, 'print'>): string {
  const lines: string[] = []
  lines.push(`cohort peer '${info.name}' ${info.peerId ?? '(not started)'} incarnation ${info.incarnation}`)
  lines.push(`listening on: ${info.addresses.join(', ') || '(nothing)'}`)
  lines.push('', table(['transport', 'enabled', 'available', 'note'],
    info.transports.map(t => [t.name, yes(t.enabled), yes(t.available), t.reason ?? ''])))
  lines.push('', table(['peer', 'state', 'incarnation', 'in flight', 'learned from', 'last heard', 'links (transport dir frames in/out writes)'],
    info.peers.map(p => [p.name, p.state, p.incarnation, String(p.callsInFlight), p.learnedFrom, `${p.lastHeardMsAgo} ms ago`,
      p.links.map(l => `${l.transport} ${l.direction} ${l.framesIn}/${l.framesOut} ${l.writes}`).join('; ') || '-'])))
  const arms = info.peers.flatMap(p => p.bandit.map(a => [p.name, a.transport,
    `${a.estimatesUs.small ?? '-'} / ${a.estimatesUs.medium ?? '-'} / ${a.estimatesUs.large ?? '-'}`,
    `${a.chosen.small} / ${a.chosen.medium} / ${a.chosen.large}`,
    `${a.samples.small} / ${a.samples.medium} / ${a.samples.large}`,
    String(a.failures), String(a.missingAcks), yes(a.masked)]))
  lines.push('', table(['peer', 'arm', 'estimate µs (small/medium/large)', 'chosen', 'samples', 'failures', 'missing acks', 'masked'], arms))
  lines.push('', table(['connect()', 'state', 'peer', 'attempts', 'connects', 'last error'],
    info.connections.map(c => [c.address, c.state, c.peer ?? '-', String(c.attempts), String(c.connects), c.lastError ?? ''])))
  lines.push('', table(['member', 'state', 'incarnation', 'version', 'addresses', 'learned from', 'last heard', 'direct'],
    info.membership.map(m => [m.name, m.state, String(m.incarnation), String(m.version), m.addresses.map(a => `${a[0]} ${a[1].join(' ')}`).join('; '),
      m.learnedFrom, `${m.lastHeardMsAgo} ms ago`, yes(m.directLink)])))
  if (info.nameTakenBy != null) lines.push(`NAME TAKEN: '${info.name}' is held by ${info.nameTakenBy.peerId}`)
  lines.push('', table(['function', 'kind', 'running', 'queued', 'batch', 'gathering'],
    info.endpoints.map(e => [e.name, e.kind, String(e.running), e.queued == null ? '' : String(e.queued), e.batch ?? '', e.gathering == null ? '' : String(e.gathering)])))
  lines.push('', 'counters: ' + JSON.stringify(info.counters))
  return lines.join('\n')
}

function yes (value: boolean): string {
  return value ? 'yes' : 'no'
}

function table (head: string[], rows: string[][]): string {
  if (rows.length === 0) rows = [head.map(() => '-')]
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
  return [line(head), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}
