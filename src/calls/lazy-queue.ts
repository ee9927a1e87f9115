/**
 * Items in the order they came, whose ends are only marked: an ended item leaves when it
 * reaches the front, and the queue is compacted when too many ended ones wait behind a
 * live one. For what would otherwise be a Map entry made and dropped per call (see
 * id-table.ts for why not a Map): each timeout's lane of Deadlines; a DedupTable's
 * arrivals, endings and replies.
 *
 * ```ts
 * const queue = new LazyQueue<Call>(call => call.ended)
 * queue.push(call)
 * call.ended = true; queue.dropEnded()     // at once if it was at the front
 * for (let i = queue.head; i < queue.items.length; i++) visit(queue.items[i] as Call)
 * ```
 */

/** Ended items the queue may hold beyond twice its live ones before it is compacted. */
const SLACK = 64

export class LazyQueue<T> {
  /** The items from `head` on; those before it have left (undefined). */
  items: Array<T | undefined> = []
  head = 0

  constructor (private readonly ended: (item: T) => boolean) {}

  /** The item at the front, undefined when the queue is empty. */
  front (): T | undefined {
    return this.items[this.head]
  }

  /** Adds `item` at the back; `live` (items not ended) decides whether to compact first. */
  push (item: T, live: number): void {
    this.compactIfSparse(live)
    this.items.push(item)
  }

  /** Compacts when more than twice `live` (items not ended) plus SLACK are held. */
  compactIfSparse (live: number): void {
    if (this.items.length - this.head > 2 * live + SLACK) this.compact()
  }

  /** Takes the front item out (there must be one). */
  shift (): T {
    const item = this.items[this.head] as T
    this.items[this.head++] = undefined
    return item
  }

  /**
   * Lets the ended items at the front go. The array is cut back only once over 1024 slots
   * before `head` are free: cutting it to length 0 whenever it emptied (once per call for
   * a caller's deadlines and a callee's at-most-once memory, one call at a time) dropped
   * its store, and the next push made a new one. That was a fifth of a DedupTable's
   * admit-and-end (340 ns) in a CPU profile, `set length` and the collector.
   */
  dropEnded (): void {
    const items = this.items
    let head = this.head
    while (head < items.length && this.ended(items[head] as T)) items[head++] = undefined
    if (head > 1024 && head * 2 > items.length) {
      if (head === items.length) {
        items.length = 0
      } else {
        items.copyWithin(0, head)
        items.length -= head
      }
      head = 0
    }
    this.head = head
  }

  /** Keeps only the items not ended. */
  compact (): void {
    const kept: T[] = []
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i] as T
      if (!this.ended(item)) kept.push(item)
    }
    this.items = kept
    this.head = 0
  }
}
