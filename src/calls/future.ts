/**
 * The handle of one call. Awaitable like a promise, plus moolib's `result`/`wait`/`done`/
 * `exception`/`cancel`. A Future settles exactly once; the native promise behind `then`
 * is made only when someone asks for it, so a failed call nobody awaits raises no
 * unhandled rejection.
 *
 * ```ts
 * const fut = rpc.async_('host', 'bar', 'hi')
 * if (await fut.wait(1)) console.log(await fut)       // or: await fut.result(1)
 * fut.cancel()                                         // the caller stops waiting
 * ```
 */
import { RpcError } from '../errors/rpc-error.js'

type Settled<T> = { ok: true, value: T } | { ok: false, error: RpcError }

export class Future<T = unknown> implements PromiseLike<T> {
  private outcome?: Settled<T>
  private promise?: Promise<T>
  private resolvePromise?: (value: T) => void
  private rejectPromise?: (error: RpcError) => void
  private listeners?: Array<() => void>

  /** @param onCancel called once if `cancel()` ends the future; the owner drops the call. */
  constructor (private readonly onCancel?: (future: Future<T>) => void) {}

  then<R1 = T, R2 = never> (
    onFulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onRejected?: ((reason: any) => R2 | PromiseLike<R2>) | null
  ): Promise<R1 | R2> {
    return this.asPromise().then(onFulfilled, onRejected)
  }

  catch<R = never> (onRejected?: ((reason: any) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.asPromise().catch(onRejected)
  }

  finally (onFinally?: (() => void) | null): Promise<T> {
    return this.asPromise().finally(onFinally)
  }

  /** The value; rejects with the call's error, or with TIMEOUT if it is not done within `timeoutSeconds` (the call goes on). */
  async result (timeoutSeconds?: number): Promise<T> {
    if (timeoutSeconds != null && !(await this.wait(timeoutSeconds))) {
      throw new RpcError('TIMEOUT', `result() waited ${timeoutSeconds} s and the call is still pending`)
    }
    return await this.asPromise()
  }

  /** Alias of `result`. */
  async get (timeoutSeconds?: number): Promise<T> {
    return await this.result(timeoutSeconds)
  }

  /** True once done; false if `timeoutSeconds` passed first. Never rejects. */
  async wait (timeoutSeconds?: number): Promise<boolean> {
    if (this.outcome != null) return true
    return await new Promise<boolean>(resolve => {
      let timer: NodeJS.Timeout | undefined
      const listener = (): void => { clearTimeout(timer); resolve(true) }
      ;(this.listeners ??= []).push(listener)
      if (timeoutSeconds != null) {
        timer = setTimeout(() => {
          const index = this.listeners?.indexOf(listener) ?? -1
          if (index >= 0) this.listeners?.splice(index, 1)
          resolve(false)
        }, Math.max(0, timeoutSeconds * 1000))
      }
    })
  }

  done (): boolean {
    return this.outcome != null
  }

  exception (): RpcError | undefined {
    return this.outcome != null && !this.outcome.ok ? this.outcome.error : undefined
  }

  /** Stops waiting: the future fails with CANCELLED at once; a late reply is dropped. */
  cancel (): boolean {
    if (this.outcome != null) return false
    this.reject(new RpcError('CANCELLED', 'the call was cancelled by the caller'))
    this.onCancel?.(this)
    return true
  }

  /** @internal Runs `callback` once when settled (at once if already): (value, undefined) or (undefined, error). */
  whenSettled (callback: (value: T | undefined, error: RpcError | undefined) => void): void {
    const listener = (): void => {
      const outcome = this.outcome as Settled<T>
      if (outcome.ok) callback(outcome.value, undefined)
      else callback(undefined, outcome.error)
    }
    if (this.outcome != null) listener()
    else (this.listeners ??= []).push(listener)
  }

  /** @internal Settles with a value; false if already settled. */
  resolve (value: T): boolean {
    if (this.outcome != null) return false
    this.outcome = { ok: true, value }
    this.resolvePromise?.(value)
    this.notify()
    return true
  }

  /** @internal Settles with an error; false if already settled. */
  reject (error: RpcError): boolean {
    if (this.outcome != null) return false
    this.outcome = { ok: false, error }
    this.rejectPromise?.(error)
    this.notify()
    return true
  }

  private notify (): void {
    const listeners = this.listeners
    if (listeners == null) return
    this.listeners = undefined
    for (const listener of listeners) listener()
  }

  private asPromise (): Promise<T> {
    if (this.promise == null) {
      const outcome = this.outcome
      if (outcome != null) {
        this.promise = outcome.ok ? Promise.resolve(outcome.value) : Promise.reject(outcome.error)
      } else {
        this.promise = new Promise<T>((resolve, reject) => {
          this.resolvePromise = resolve
          this.rejectPromise = reject
        })
      }
    }
    return this.promise
  }
}
