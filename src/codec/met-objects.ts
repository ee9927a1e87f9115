/**
 * The objects a walk over a body has met, for the identity check both small-tree walks
 * make (codec/frame.ts isTree, codec/small-tree.ts): an object met twice is shared or
 * cyclic, which msgpackr's structured clone keeps, so neither walk takes the body. At most
 * `max` objects, each looked for among the earlier ones (a linear scan, cheap at this size).
 *
 * ```ts
 * const met = new MetObjects(32)
 * if (!met.first(value)) return false   // shared, cyclic or too many
 * met.clear()                           // after each walk, so no body is kept alive
 * ```
 */
export class MetObjects {
  private readonly objects: unknown[] = []
  private count = 0

  constructor (private readonly max: number) {}

  /** Records `value`; false when it was met already in this walk or `max` are met. */
  first (value: object): boolean {
    for (let i = 0; i < this.count; i++) if (this.objects[i] === value) return false
    if (this.count === this.max) return false
    this.objects[this.count++] = value
    return true
  }

  clear (): void {
    for (let i = 0; i < this.count; i++) this.objects[i] = undefined
    this.count = 0
  }
}
