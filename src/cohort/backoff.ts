/**
 * The one retry/backoff helper: exponential, capped, with jitter so that many peers
 * that lost one server do not redial it in step.
 *
 * ```ts
 * const backoff = new Backoff({ initialMs: 50, maxMs: 1000 })
 * setTimeout(redial, backoff.next())   // 50ish, 100ish, 200ish, ... 1000ish
 * backoff.reset()                      // after a success
 * ```
 */
export interface BackoffInit {
  /** First delay. */
  initialMs: number
  /** Largest delay. */
  maxMs: number
  /** Fraction of each delay drawn at random (0..1). */
  jitter?: number
}

export class Backoff {
  private attempt = 0

  constructor (private readonly init: BackoffInit) {}

  next (): number {
    const base = Math.min(this.init.maxMs, this.init.initialMs * 2 ** this.attempt)
    if (base < this.init.maxMs) this.attempt++
    const jitter = this.init.jitter ?? 0.2
    return Math.round(base * (1 - jitter + Math.random() * jitter))
  }

  reset (): void {
    this.attempt = 0
  }
}
