/**
 * Busy-polling after traffic. On these machines a process that sleeps in the kernel
 * between two messages pays for its wake-up twice: about 100 µs for the wake-up itself
 * (an inter-processor interrupt in the VM) and again in every cache the CPU lost while it
 * slept. So for a short, adaptive window after a message the process keeps its event loop
 * turning instead (`setImmediate`, so timers and all I/O still run; the poll phase asks the
 * kernel with a zero timeout), and the next message finds it awake.
 *
 * The window follows the traffic: it doubles when a message came soon after the loop
 * went to sleep (a longer window would have caught it) and halves when sleeps are long
 * (sparse traffic: the spinning was waste). The cost is CPU: up to one core for the
 * window after each message, none once traffic stops. Never spins when the process may
 * use only one CPU (`availableParallelism()` follows the affinity mask) or when the
 * machine is busier than it has CPUs, and stops for a while when a window shows that
 * the process did not get the CPU it spun on (CPU time well below wall time): there
 * spinning steals the time the peer needs to answer, and makes the tail worse.
 *
 * ```ts
 * const spinner = new LoopSpinner()
 * spinner.traffic() // on every message sent or received
 * ```
 */
import { availableParallelism, loadavg } from 'node:os'

const MIN_MS = 0.2
const MAX_MS = 4
const START_MS = 1
/** The machine's load is looked at no more often than this (ms). */
const LOAD_CHECK_MS = 1000
/** A window that got less of the CPU than this share was fighting for it. */
const CONTENDED_SHARE = 0.6
/** After a contended window, no spinning for this long (ms). */
const CONTENDED_PAUSE_MS = 2000

/** The adaptive window itself; the shm link's consumer uses one too. */
export class SpinWindow {
  /** Current window, ms. */
  ms = START_MS
  private sleptAt = -Infinity

  /** The poller stopped at `now` and went to sleep. */
  slept (now: number): void {
    this.sleptAt = now
  }

  /** Traffic woke the poller at `now`, after it slept: widen or narrow the window. */
  woke (now: number): void {
    const gap = now - this.sleptAt
    // Slept only a little past the window: a longer window would have caught it.
    if (gap < 2 * this.ms) this.ms = Math.min(MAX_MS, this.ms * 2)
    else if (gap > 50 * this.ms) this.ms = Math.max(MIN_MS, this.ms / 2)
  }
}

/** Spinning cannot help a process confined to one CPU. */
export const SINGLE_CPU = availableParallelism() < 2

export interface SpinStats {
  /** Windows started (the loop was asleep when traffic came). */
  windows: number
  /** Loop turns spent polling. */
  turns: number
  /** Windows not started because the machine was busier than it has CPUs. */
  skippedBusy: number
  /** Windows in which the process got too little of the CPU it spun on. */
  contended: number
}

/** Keeps the event loop turning for a window after traffic; one per process is enough. */
export class LoopSpinner {
  readonly window = new SpinWindow()
  readonly stats: SpinStats = { windows: 0, turns: 0, skippedBusy: 0, contended: 0 }
  private lastTraffic = 0
  private spinning = false
  private startedAt = 0
  private cpuAtStart = process.cpuUsage()
  private busyUntil = 0
  private loadCheckedAt = -Infinity
  private readonly turn = (): void => { this.onTurn() }

  /** A message went out or came in: keep the loop awake for the window from now. */
  traffic (): void {
    const now = performance.now()
    this.lastTraffic = now
    if (this.spinning || SINGLE_CPU || this.machineBusy(now)) return
    this.window.woke(now)
    this.spinning = true
    this.startedAt = now
    this.cpuAtStart = process.cpuUsage()
    this.stats.windows++
    setImmediate(this.turn)
  }

  private onTurn (): void {
    this.stats.turns++
    const now = performance.now()
    if (now - this.lastTraffic < this.window.ms) {
      setImmediate(this.turn)
      return
    }
    this.spinning = false
    this.window.slept(now)
    const wallUs = (now - this.startedAt) * 1000
    const cpu = process.cpuUsage(this.cpuAtStart)
    if (wallUs > 1000 && cpu.user + cpu.system < CONTENDED_SHARE * wallUs) {
      this.stats.contended++
      this.busyUntil = now + CONTENDED_PAUSE_MS
    }
  }

  private machineBusy (now: number): boolean {
    if (now - this.loadCheckedAt >= LOAD_CHECK_MS) {
      this.loadCheckedAt = now
      // The one-minute load counts runnable tasks, spinners included: above the CPU count
      // someone is waiting for a CPU, and a spinner would make it wait longer.
      if (loadavg()[0] > availableParallelism()) this.busyUntil = Math.max(this.busyUntil, now + LOAD_CHECK_MS)
    }
    if (now < this.busyUntil) {
      this.stats.skippedBusy++
      return true
    }
    return false
  }
}

/** The process's spinner, shared by every link that wants one. */
export const loopSpinner = new LoopSpinner()
