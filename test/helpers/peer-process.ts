/**
 * Starts a fixture peer (test/fixtures/peer.ts) in a child process and talks to it over
 * IPC with structured-clone serialization, so Maps, bigints and typed arrays survive.
 *
 * ```ts
 * const host = await PeerProcess.start({ rpc: { name: 'host' }, listen: '127.0.0.1:0' })
 * t.teardown(() => host.kill())
 * await host.request('call', { peer: 'other', fn: 'echo', args: [1] })
 * ```
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Rpc, type RpcOptions } from '../../src/index.js'

const PEER_SCRIPT = fileURLToPath(new URL('../fixtures/peer.js', import.meta.url))

export interface PeerConfig {
  rpc?: Record<string, unknown>
  listen?: string
  /** More addresses to listen on (a peer with a leg in two networks). */
  listenAlso?: string[]
  connect?: string[]
  /** Extra environment variables of the child (COHORT_SHM_DISABLE=1, ...). */
  env?: Record<string, string>
  /** What the fixture's `value` function returns. */
  value?: number
  /** Functions defined only on this peer; each returns the peer's name. */
  extraFns?: string[]
}

export interface StartOptions {
  /** Run the child inside this network namespace (`ip netns exec`; needs root). */
  netns?: string
  /** Pin the child to this CPU (`taskset -c`). */
  cpu?: number
  /** Run the child as this user and group id (needs root). */
  uid?: number
}

export class RemoteError extends Error {
  constructor (readonly code: string | undefined, message: string, readonly remoteName?: string, readonly remoteStack?: string) {
    super(message)
  }
}

export class PeerProcess {
  readonly name: string
  readonly addresses: string[]
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>()

  private constructor (readonly child: ChildProcess, hello: { name: string, addresses: string[] }) {
    this.name = hello.name
    this.addresses = hello.addresses
    this.exited = new Promise(resolve => {
      child.once('exit', (code, signal) => {
        for (const { reject } of this.pending.values()) reject(new Error(`peer ${this.name} exited (${code ?? signal})`))
        this.pending.clear()
        resolve({ code, signal })
      })
    })
    child.on('message', (msg: any) => {
      const waiter = this.pending.get(msg.id)
      if (waiter == null) return
      this.pending.delete(msg.id)
      if (msg.ok === true) waiter.resolve(msg.value)
      else waiter.reject(new RemoteError(msg.code, msg.message, msg.remoteName, msg.remoteStack))
    })
  }

  static async start (config: PeerConfig, script = PEER_SCRIPT, options: StartOptions = {}): Promise<PeerProcess> {
    // `ip netns exec` and `taskset` exec node in turn; the IPC channel's fd and env go through.
    const wrappers = [
      ...(options.netns == null ? [] : ['ip', 'netns', 'exec', options.netns]),
      ...(options.cpu == null ? [] : ['taskset', '-c', String(options.cpu)])
    ]
    const wrapped = wrappers.length === 0 ? {} : { execPath: wrappers[0], execArgv: [...wrappers.slice(1), process.execPath] }
    const child = fork(script, [JSON.stringify(config)], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...config.env }, ...wrapped, ...(options.uid == null ? {} : { uid: options.uid, gid: options.uid }) })
    const hello = await new Promise<any>((resolve, reject) => {
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('peer did not start within 30 s')) }, 30_000)
      child.once('message', (msg: any) => {
        clearTimeout(timer)
        if (msg.ok === true) resolve(msg.value)
        else reject(new Error(`peer failed to start: ${String(msg.message)}`))
      })
      child.once('exit', code => { clearTimeout(timer); reject(new Error(`peer exited with ${String(code)} before it was ready`)) })
    })
    return new PeerProcess(child, hello)
  }

  async request<T = any> (op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++
    return await new Promise<T>((resolve, reject) => {
      if (!this.child.connected) {
        reject(new Error(`peer ${this.name} is gone; '${op}' was not sent`))
        return
      }
      this.pending.set(id, { resolve, reject })
      // A child that dies between the check and the write fails the request, not the test process.
      this.child.send({ id, op, ...args }, err => {
        if (err == null || !this.pending.delete(id)) return
        reject(new Error(`peer ${this.name}: '${op}' could not be sent: ${err.message}`))
      })
    })
  }

  /** Calls a function of another peer from this one. */
  async call<T = any> (peer: string, fn: string, ...args: unknown[]): Promise<T> {
    return await this.request<T>('call', { peer, fn, args })
  }

  kill (signal: NodeJS.Signals = 'SIGKILL'): Promise<unknown> {
    if (this.child.exitCode == null && this.child.signalCode == null) this.child.kill(signal)
    return this.exited
  }
}

/** Polls `fn` until it resolves, at most `tries` times with `intervalMs` between. */
export async function eventually<T> (fn: () => Promise<T>, tries = 60, intervalMs = 250): Promise<T> {
  let last: unknown
  for (let i = 0; i < tries; i++) {
    try {
      return await fn()
    } catch (err) {
      last = err
      await new Promise(resolve => setTimeout(resolve, intervalMs))
    }
  }
  throw last
}

/** A free TCP port on loopback (bound and released). */
export async function freePort (): Promise<number> {
  const { createServer } = await import('node:net')
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => { typeof address === 'object' && address != null ? resolve(address.port) : reject(new Error('no port')) })
    })
  })
}

/**
 * A fixture peer named `hostName` in a child process, and an Rpc in this process
 * connected to it; both are torn down with the test.
 */
export async function hostAndClient (t: { teardown: (fn: () => Promise<unknown>) => void }, hostName: string, clientOptions: RpcOptions = {}): Promise<{ host: PeerProcess, client: Rpc }> {
  const host = await PeerProcess.start({ rpc: { name: hostName }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const client = new Rpc(clientOptions)
  t.teardown(async () => { await client.close() })
  client.connect(host.addresses[0])
  return { host, client }
}
