/**
 * `MemberTable`: every peer this one knows of, by name, with the state SWIM gives it.
 * Random picks and digest pages need names by index, so names are kept in an array as
 * well as in the map.
 *
 * A table may sit on a shared, read-only `baseline` table (copy on write): the simulation
 * of 10,000 peers starts every peer from one snapshot of a settled cohort instead of
 * 10,000 copies of it. Real peers never use a baseline. Names of the baseline are never
 * deleted from a table on top of it (their tombstones stay until the simulation ends).
 *
 * ```ts
 * const table = new MemberTable()
 * table.set(new MemberEntry(record, 'alive', 'seed', Date.now()))
 * table.randomName(Math.random)
 * ```
 */
import type { PeerRecord } from './peer-record.js'

export type MemberState = 'alive' | 'suspect' | 'dead'

/** alive < suspect < dead: at one record version, the worse news wins. */
export const STATE_RANK: Record<MemberState, number> = { alive: 0, suspect: 1, dead: 2 }
export const RANK_STATE: MemberState[] = ['alive', 'suspect', 'dead']

export class MemberEntry {
  /** When it became suspect or dead (local clock), for the suspicion and tombstone timers. */
  since: number
  /** A key that held this name before and is known dead: its records never come back. */
  buried?: { peerId: string, incarnation: number }

  constructor (
    public record: PeerRecord,
    public state: MemberState,
    /** 'self', or the neighbour whose message brought the newest record (the next hop towards it). */
    public learnedFrom: string,
    /** Last time a message from it, or fresh news of it, arrived (local clock). */
    public lastHeard: number
  ) {
    this.since = lastHeard
  }

  clone (): MemberEntry {
    const copy = new MemberEntry(this.record, this.state, this.learnedFrom, this.lastHeard)
    copy.since = this.since
    copy.buried = this.buried
    return copy
  }
}

export class MemberTable {
  private readonly entries = new Map<string, MemberEntry>()
  /** Names held here and not in the baseline, with their index for O(1) removal. */
  private readonly names: string[] = []
  private readonly index = new Map<string, number>()

  constructor (private readonly baseline?: MemberTable) {}

  get size (): number {
    return (this.baseline?.size ?? 0) + this.names.length
  }

  get (name: string): MemberEntry | undefined {
    return this.entries.get(name) ?? this.baseline?.get(name)
  }

  /** The entry to change in place: a baseline entry is copied into this table first. */
  mutable (name: string): MemberEntry | undefined {
    const own = this.entries.get(name)
    if (own != null) return own
    const shared = this.baseline?.get(name)
    if (shared == null) return undefined
    const copy = shared.clone()
    this.entries.set(name, copy)
    return copy
  }

  set (entry: MemberEntry): void {
    const name = entry.record.name
    if (!this.entries.has(name) && this.baseline?.get(name) == null) {
      this.index.set(name, this.names.length)
      this.names.push(name)
    }
    this.entries.set(name, entry)
  }

  /** Forgets a name; false for baseline names, which stay (see the module comment). */
  delete (name: string): boolean {
    if (this.baseline?.get(name) != null) return false
    const i = this.index.get(name)
    if (i == null) return false
    const last = this.names.pop() as string
    if (last !== name) {
      this.names[i] = last
      this.index.set(last, i)
    }
    this.index.delete(name)
    this.entries.delete(name)
    return true
  }

  nameAt (i: number): string {
    const base = this.baseline?.size ?? 0
    return i < base ? (this.baseline as MemberTable).nameAt(i) : this.names[i - base]
  }

  randomName (random: () => number): string | undefined {
    const size = this.size
    return size === 0 ? undefined : this.nameAt(Math.floor(random() * size))
  }

  * [Symbol.iterator] (): Generator<MemberEntry> {
    for (let i = 0; i < this.size; i++) {
      const entry = this.get(this.nameAt(i))
      if (entry != null) yield entry
    }
  }
}
