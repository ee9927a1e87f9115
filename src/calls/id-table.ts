/**
 * Items keyed by an integer id, where ids mostly increase and most items leave soon after
 * they came: a CallTable's outstanding calls, a DedupTable's memory of one caller's calls.
 * A ring of slots indexed by the low bits of the id holds them; of two items that meet on
 * a slot, the older (lower id) moves to a Map beside the ring, unless the ring is more than
 * half full: then it doubles first. A ring under an eighth full halves (not below 256
 * slots), so a burst does not leave every walk of it long.
 *
 * ```
 *  ring (8 slots), slot = id & 7:   [1024] [1025] [ -- ] [1019] [1020] [ -- ] [1022] [1023]
 *  spill: { 1011 → a long call, pushed out when 1019 came }
 * ```
 *
 * Why not a Map: V8 rehashes a Map's table every few dozen additions when entries come and
 * go, and the table it leaves keeps its entries and a link to the new one (for iterators).
 * Once one such table lands in the old generation, each scavenge keeps the next table,
 * the items it holds, and the table after it alive, and promotes them: a pipelined caller
 * over shm promoted 0.9 MB per scavenge (95% of what survived), scavenges took 3–4 ms
 * against 0.5–0.7 for its peer, and the old generation grew until a full collection
 * (`--trace-gc-nvp`). Arrays leave no such chain.
 *
 * ```ts
 * const calls = new IdTable<PendingCall>()
 * calls.add(call)              // an id not in the table
 * calls.get(id)                // the call, or undefined
 * calls.delete(call)
 * calls.lowest()               // at most the lowest id present (undefined when empty)
 * for (const call of calls.values()) { ... }   // a copy, in id order
 * calls.find(call => call.future === future)
 * ```
 */

const FIRST_SLOTS = 256

export class IdTable<T extends { readonly id: number }> {
  private slots: Array<T | undefined> = new Array(FIRST_SLOTS).fill(undefined)
  private mask = FIRST_SLOTS - 1
  private inRing = 0
  /** Items pushed out of the ring by a newer id on their slot. */
  private readonly spill = new Map<number, T>()
  /**
   * At most the lowest id in `spill` (Infinity when it is empty). When the lowest leaves, it
   * stays as it was (low water marks may be low, never high) until lowest() finds about half
   * the spill gone since it last looked: one pass over the spill per that many deletions,
   * not one per deletion, whatever order a peer's ids come in.
   */
  private spillLow = Infinity
  private spillLowStale = false
  private spillDeletes = 0
  /** No item in the ring has an id below this (lowest() moves it on). */
  private ringLow = Infinity

  get size (): number {
    return this.inRing + this.spill.size
  }

  /** Adds `item`, whose id (a safe integer) must not be in the table. */
  add (item: T): void {
    const id = item.id
    if (!Number.isSafeInteger(id)) throw new Error(`IdTable: id ${id} is not a safe integer`)
    let at = id & this.mask
    if (this.slots[at] !== undefined && this.inRing * 2 > this.slots.length) {
      this.grow()
      at = id & this.mask
    }
    let keep = item
    const there = this.slots[at]
    if (there !== undefined) {
      // The older of the two leaves the ring: it is the one likely to stay long.
      const older = there.id < id ? there : item
      keep = older === item ? there : item
      this.toSpill(older)
      if (older === item) return
      this.inRing--
    }
    this.slots[at] = keep
    this.inRing++
    if (id < this.ringLow) this.ringLow = id
  }

  get (id: number): T | undefined {
    const item = this.slots[id & this.mask]
    if (item !== undefined && item.id === id) return item
    return this.spill.size > 0 ? this.spill.get(id) : undefined
  }

  /** Removes `item`; false when it was not here. */
  delete (item: T): boolean {
    const at = item.id & this.mask
    if (this.slots[at] === item) {
      this.slots[at] = undefined
      this.inRing--
      if (this.slots.length > FIRST_SLOTS && this.inRing * 8 < this.slots.length) this.shrink()
      return true
    }
    if (this.spill.get(item.id) !== item) return false
    this.spill.delete(item.id)
    if (this.spill.size === 0) {
      this.spillLow = Infinity
      this.spillLowStale = false
      this.spillDeletes = 0
    } else {
      if (item.id === this.spillLow) this.spillLowStale = true
      this.spillDeletes++
    }
    return true
  }

  /**
   * At most the lowest id present, and undefined when empty: exact but for a spill that has
   * lost its lowest and less than half of itself since (see spillLow). The call table sends
   * it as its low water mark, which may be low, never high.
   */
  lowest (): number | undefined {
    if (this.inRing === 0) {
      this.ringLow = Infinity
    } else {
      // Past the ids no longer in the ring: for ids that mostly increase by one, each is
      // looked at about once over the table's life. Ids far apart: one look at every slot.
      let id = this.ringLow
      const until = id + this.slots.length
      while (id < until && this.slots[id & this.mask]?.id !== id) id++
      if (id === until) {
        id = Infinity
        for (const item of this.slots) if (item !== undefined && item.id < id) id = item.id
      }
      this.ringLow = id
    }
    if (this.spillLowStale && this.spillDeletes * 2 >= this.spill.size) {
      this.spillLow = Infinity
      for (const id of this.spill.keys()) if (id < this.spillLow) this.spillLow = id
      this.spillLowStale = false
      this.spillDeletes = 0
    }
    const low = Math.min(this.ringLow, this.spillLow)
    return low === Infinity ? undefined : low
  }

  /** The items, in id order (a copy: the table may change while the caller goes through it). */
  values (): T[] {
    const items: T[] = [...this.spill.values()]
    if (this.inRing > 0) for (const item of this.slots) if (item !== undefined) items.push(item)
    return items.sort((a, b) => a.id - b.id)
  }

  /** The first item `test` accepts, in no particular order. */
  find (test: (item: T) => boolean): T | undefined {
    for (const item of this.spill.values()) if (test(item)) return item
    if (this.inRing > 0) for (const item of this.slots) if (item !== undefined && test(item)) return item
    return undefined
  }

  /** Twice the slots. Ids apart in the low bits of the old mask are apart in the new one: no two items meet. */
  private grow (): void {
    const old = this.slots
    this.slots = new Array(old.length * 2).fill(undefined)
    this.mask = this.slots.length - 1
    for (const item of old) if (item !== undefined) this.slots[item.id & this.mask] = item
  }

  /** Half the slots; of two items that meet, the older goes to the spill. */
  private shrink (): void {
    const old = this.slots
    this.slots = new Array(old.length / 2).fill(undefined)
    this.mask = this.slots.length - 1
    this.inRing = 0
    for (const item of old) {
      if (item === undefined) continue
      const at = item.id & this.mask
      const there = this.slots[at]
      if (there === undefined) {
        this.slots[at] = item
        this.inRing++
        continue
      }
      const older = there.id < item.id ? there : item
      this.toSpill(older)
      if (older === there) this.slots[at] = item
    }
  }

  private toSpill (item: T): void {
    this.spill.set(item.id, item)
    if (item.id < this.spillLow) this.spillLow = item.id
  }
}
