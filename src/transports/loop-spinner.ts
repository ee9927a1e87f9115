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

/** The adaptive window itself. */
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

/** A spin window in progress, for SpinGate.ended. */
export interface SpinToken {
  at: number
  cpu: NodeJS.CpuUsage
}

/**
 * Whether this process may spin now, for every spinner in it (the TCP loop spinner and the
 * shm links' ring pollers): never on one CPU; not while the machine is busier than it has
 * CPUs; not for a while after a window that got too little of the CPU it spun on.
 */
export class SpinGate {
  readonly stats = {
    /** Windows not started because the machine was busier than it has CPUs or a window was contended. */
    skippedBusy: 0,
    /** Windows in which the process got too little of the CPU it spun on. */
    contended: 0
  }

  private busyUntil = 0
  private loadCheckedAt = -Infinity

  allows (now: number): boolean {
    if (SINGLE_CPU) return false
    if (now - this.loadCheckedAt >= LOAD_CHECK_MS) {
      this.loadCheckedAt = now
      // The one-minute load counts runnable tasks, spinners included: above the CPU count
      // someone is waiting for a CPU, and a spinner would make it wait longer.
      if (loadavg()[0] > availableParallelism()) this.busyUntil = Math.max(this.busyUntil, now + LOAD_CHECK_MS)
    }
    if (now < this.busyUntil) {
      this.stats.skippedBusy++
      return false
    }
    return true
  }

  started (now: number): SpinToken {
    return { at: now, cpu: process.cpuUsage() }
  }

  /** A window that began with `token` ended at `now`: was the CPU ours while it lasted? */
  ended (token: SpinToken, now: number): void {
    const wallUs = (now - token.at) * 1000
    const cpu = process.cpuUsage(token.cpu)
    if (wallUs > 1000 && cpu.user + cpu.system < CONTENDED_SHARE * wallUs) {
      this.stats.contended++
      this.busyUntil = now + CONTENDED_PAUSE_MS
    }
  }
}

/** The process's gate. */
export const spinGate = new SpinGate()

/** Keeps the event loop turning for a window after traffic; one per process is enough. */
export class LoopSpinner {
  readonly window = new SpinWindow()
  readonly stats = {
    /** Windows started (the loop was asleep when traffic came). */
    windows: 0,
    /** Loop turns spent polling. */
    turns: 0
  }

  private lastTraffic = 0
  private spinning?: SpinToken
  private readonly turn = (): void => { this.onTurn() }

  constructor (private readonly gate = spinGate) {}

  /** A message went out or came in: keep the loop awake for the window from now. */
  traffic (): void {
    const now = performance.now()
    this.lastTraffic = now
    if (this.spinning != null || !this.gate.allows(now)) return
    this.window.woke(now)
    this.spinning = this.gate.started(now)
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
    this.window.slept(now)
    if (this.spinning != null) this.gate.ended(this.spinning, now)
    this.spinning = undefined
  }
}

/** The process's spinner, shared by every link that wants one. */
export const loopSpinner = new LoopSpinner()
