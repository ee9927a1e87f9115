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
 * use only one CPU (singleCpu(), which follows the affinity mask), and stops for a
 * while when its spinning keeps waiting for a CPU (the machine is busier than it has
 * CPUs; see SpinGate). There spinning steals the time the peer needs to answer, and
 * makes the tail worse.
 *
 * The price on a 2-vCPU VM (TCP, 64 B echo, scratch runs of 5,000 calls, spin on vs off):
 * p50 150-210 µs vs 220-300, p90 290-480 vs 420-580, but p99 4-7 ms vs 1.2-2 ms. The
 * spinner holds its CPU; the peer it just woke, or the kernel's softirq work, is often
 * placed on that CPU (wake-affine) and waits for a time slice behind it. That is why the
 * TCP spinner is opt-in (`Rpc({ spin: true })`).
 *
 * ```ts
 * const spinner = new LoopSpinner()
 * spinner.traffic() // on every message sent or received
 * ```
 */
import { openSync, readSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { performance } from 'node:perf_hooks' // not the global, whose every read runs Node's lazy getter

const MIN_MS = 0.2
const MAX_MS = 4
const START_MS = 1
/** Spinning is judged over periods of at least this long (ms)... */
const PERIOD_MS = 1000
/** ...that spun at least this long (ns)... */
const MIN_SPUN_NS = 100e6
/** ...and is contended when it waited for a CPU for more than this share of that time... */
const CONTENDED_SHARE = 0.5
/** ...and then no spinning for this long (ms), doubling while the contention lasts. */
const MIN_PAUSE_MS = 2000
const MAX_PAUSE_MS = 16_000
/** A window looks at its CPU this often (ms), and gives it up when it waited this share of the time. */
const CHECK_MS = 0.5
const CROWDED_SHARE = 0.3

/** The adaptive window itself (the TCP loop spinner and each shm link keep one). */
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

/** How often (ms) singleCpu() asks the kernel for the affinity again. */
const AFFINITY_MS = 1000
let single = availableParallelism() < 2
let affinityAt = performance.now()

/**
 * Whether this process may run on one CPU only, where spinning cannot help. Its affinity
 * can change while it runs (`taskset -p`, a cpuset): a process pinned after it started
 * kept spinning as if it had two CPUs, at 20-29 µs a pinned shm round trip instead of 15.
 * With `now`, the affinity is asked for again (a sched_getaffinity call) when the last ask
 * is AFFINITY_MS old; without, the last answer.
 */
export function singleCpu (now?: number): boolean {
  if (now !== undefined && now - affinityAt >= AFFINITY_MS) {
    affinityAt = now
    single = availableParallelism() < 2
  }
  return single
}

/** A spin window in progress, for SpinGate.ended. */
export interface SpinToken {
  at: number
  /** Nanoseconds this thread had spent waiting for a CPU when the window began. */
  waitedNs: number
  /** The last look at the wait (SpinGate.crowded). */
  checkedAt: number
  checkedWaitNs: number
}

/**
 * Whether this process may spin now, for every spinner in it (the TCP loop spinner and the
 * shm links' ring pollers): never on one CPU, and not for a while once the windows of the
 * last second or so spent more than half their time runnable but waiting for a CPU (the
 * kernel's run-queue wait, /proc/thread-self/schedstat): other tasks want the CPUs, the
 * machine is busier than it has CPUs, and spinning would take their time. Single windows
 * do not count towards that: two spinners that meet on one CPU for a moment are parted
 * by the scheduler, and spinning still wins; but such a window ends at once (`crowded`),
 * so the task queued behind it, perhaps the peer it waits for, gets the CPU. The pause is
 * 2 s, doubling up to 16 s while the contention lasts. Neither the load average (it
 * counts the spinners themselves and lags by a minute) nor CPU time (a window also loses
 * it to blocking calls) tells this.
 */
export class SpinGate {
  readonly stats = {
    /** Windows not started because the gate was paused. */
    skippedBusy: 0,
    /** Periods in which the spinning waited too long for a CPU (each started a pause). */
    contended: 0,
    /** Windows ended early to give the CPU to a task queued behind the spinner. */
    yielded: 0
  }

  private busyUntil = 0
  private pauseMs = 0
  private periodStart = performance.now()
  private spunNs = 0
  private waitedNs = 0

  /** `waitNs`: the thread's run-queue wait so far (tests pass their own). */
  constructor (private readonly waitNs: () => number = runQueueWaitNs) {}

  allows (now: number): boolean {
    if (singleCpu(now)) return false
    if (now < this.busyUntil) {
      this.stats.skippedBusy++
      return false
    }
    return true
  }

  started (now: number): SpinToken {
    const waitedNs = this.waitNs()
    return { at: now, waitedNs, checkedAt: now, checkedWaitNs: waitedNs }
  }

  /**
   * Looked at every half millisecond of a window: true when the thread spent a good part of
   * that time waiting for its CPU, so another task (perhaps the very peer it waits for) is
   * queued behind the spinner on that CPU. The window should end now and give the CPU up.
   */
  crowded (token: SpinToken, now: number): boolean {
    if (now - token.checkedAt < CHECK_MS) return false
    const waitedNs = this.waitNs()
    const crowded = waitedNs - token.checkedWaitNs > CROWDED_SHARE * (now - token.checkedAt) * 1e6
    token.checkedAt = now
    token.checkedWaitNs = waitedNs
    if (crowded) this.stats.yielded++
    return crowded
  }

  /** A window that began with `token` ended at `now`. */
  ended (token: SpinToken, now: number): void {
    this.spunNs += (now - token.at) * 1e6
    this.waitedNs += this.waitNs() - token.waitedNs
    if (now - this.periodStart < PERIOD_MS) return
    const contended = this.spunNs >= MIN_SPUN_NS && this.waitedNs > CONTENDED_SHARE * this.spunNs
    this.periodStart = now
    this.spunNs = 0
    this.waitedNs = 0
    if (contended) {
      this.stats.contended++
      this.pauseMs = Math.min(MAX_PAUSE_MS, Math.max(MIN_PAUSE_MS, this.pauseMs * 2))
      this.busyUntil = now + this.pauseMs
    } else {
      this.pauseMs = 0
    }
  }
}

/**
 * This thread's run-queue wait so far (ns); 0 where the kernel does not say (then nothing
 * looks contended). The file stays open (one fd for the process, opened by the loop's
 * thread, which /proc/thread-self names at open time) and is read again from offset 0:
 * 2.4 µs a look, where readFileSync took 20 (open, a 64 KiB buffer, close).
 */
function runQueueWaitNs (): number {
  if (schedstat === undefined) return 0
  try {
    schedstat ??= { fd: openSync('/proc/thread-self/schedstat', 'r'), buffer: Buffer.alloc(128) }
    const length = readSync(schedstat.fd, schedstat.buffer, 0, schedstat.buffer.length, 0)
    return Number(schedstat.buffer.toString('latin1', 0, length).split(' ')[1])
  } catch {
    schedstat = undefined
    return 0
  }
}

/** null: not opened yet; undefined: not readable here. */
let schedstat: { fd: number, buffer: Buffer } | null | undefined = process.platform === 'linux' ? null : undefined

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
    if (now - this.lastTraffic < this.window.ms && (this.spinning == null || !this.gate.crowded(this.spinning, now))) {
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
