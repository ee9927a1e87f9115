/**
 * Loads the shared-memory addon (native/cohort_shm.cc) once, lazily, and never throws:
 * when it is missing (the build failed, another platform, COHORT_SHM_DISABLE=1) the
 * reason is kept for debugInfo and the shm transport stays off; everything else works
 * over TCP.
 *
 * ```ts
 * const native = loadShmNative()
 * if (native.addon == null) console.log('no shm:', native.reason)
 * ```
 */
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

/** Offsets of native/ring_layout.h, as the addon reports them. */
export interface RingLayout {
  magic: number
  version: number
  offMagic: number
  offVersion: number
  offRingBytes: number
  offClosedBy: number
  offRing0: number
  ringStride: number
  ringHead: number
  ringTail: number
  ringSleeping: number
  ringWaiting: number
  ringConsumerCpu: number
  headerBytes: number
  recordMore: number
}

export interface Watcher {
  start: () => void
  stop: () => void
  close: () => void
}

/** An arena mapped by the addon (opaque). */
export interface ArenaHandle { readonly __arena: unique symbol }

/** The addon's exports; every system call error is thrown with `code` set to the errno name. */
export interface ShmAddon {
  layout: () => RingLayout
  createSegment: (ringBytes: number) => number
  mapSegment: (fd: number) => ArrayBuffer
  unmapSegment: (buffer: ArrayBuffer) => void
  /** A sealed memfd of `bytes` (a power of two, 2^16..2^30) for out-of-band blocks (see arena.ts). */
  createArena: (bytes: number) => number
  /** Maps an arena fd (checks its seals and size); the fd stays the caller's. `bell`: an eventfd written when a notifying view's block is freed. */
  mapArena: (fd: number, bell?: number) => ArenaHandle
  arenaBytes: (arena: ArenaHandle) => number
  /** One block as its own ArrayBuffer; with `notify`, its offset is queued for arenaTakeFreed once no one can reach its memory. */
  arenaView: (arena: ArenaHandle, offset: number, length: number, notify: boolean) => ArrayBuffer
  arenaTakeFreed: (arena: ArenaHandle) => number[]
  /** Bytes of notifying views whose ArrayBuffer objects were not collected yet. */
  arenaHeld: (arena: ArenaHandle) => number
  /** NODE_MODULE_VERSION the addon was built for. */
  nodeAbi: number
  /** Done with the arena; views keep the mapping until their memory is gone. */
  arenaClose: (arena: ArenaHandle) => void
  eventfd: () => number
  ring: (fd: number) => void
  closeFd: (fd: number) => void
  currentCpu: () => number
  unixListen: () => { fd: number, name: string }
  unixAccept: (fd: number) => number
  unixConnect: (name: string) => number
  peerCredentials: (fd: number) => { pid: number, uid: number }
  sendMessage: (fd: number, data: Uint8Array, fds: number[]) => boolean
  receiveMessage: (fd: number) => { data: Uint8Array, fds: number[], truncated: boolean } | undefined
  Watcher: new (fd: number, drainEventfd: boolean, callback: (readable: boolean, hangup: boolean, error: string | undefined) => void) => Watcher
}

export interface ShmNative {
  addon?: ShmAddon
  /** Why shm is unavailable, when it is. */
  reason?: string
}

let loaded: ShmNative | undefined

// From src/transports/shm (tsx) or dist/src/transports/shm (compiled) up to the package root.
const CANDIDATES = ['../../../build/Release/cohort_shm.node', '../../../../build/Release/cohort_shm.node']

export function loadShmNative (): ShmNative {
  loaded ??= load()
  return loaded
}

function load (): ShmNative {
  if (process.env.COHORT_SHM_DISABLE === '1') return { reason: 'disabled by COHORT_SHM_DISABLE=1' }
  if (process.platform !== 'linux') return { reason: `shared memory needs Linux (memfd, eventfd), this is ${process.platform}` }
  const require = createRequire(import.meta.url)
  for (const candidate of CANDIDATES) {
    const path = fileURLToPath(new URL(candidate, import.meta.url))
    if (!existsSync(path)) continue
    let addon: ShmAddon
    try {
      addon = require(path) as ShmAddon
    } catch (err) {
      return { reason: `the shm addon at ${path} failed to load: ${(err as Error).message}` }
    }
    // A build for another Node loads (Node-API does not check) and would die at its first V8 call.
    if (addon.nodeAbi !== Number(process.versions.modules)) {
      return { reason: `the shm addon at ${path} was built for Node ABI ${String(addon.nodeAbi)}, this is ${process.version} (ABI ${process.versions.modules}); run \`npm run build:native\`` }
    }
    return { addon }
  }
  const status = buildStatus()
  const why = typeof status?.reason === 'string' ? ` (${status.reason})` : ''
  return { reason: `the shm addon was not built${why}; run \`npm run build:native\` (needs g++, make, python3 and Node's headers)` }
}

interface BuildStatus { reason?: string }

function buildStatus (): BuildStatus | undefined {
  for (const candidate of ['../../../build/cohort-shm-status.json', '../../../../build/cohort-shm-status.json']) {
    try {
      return JSON.parse(readFileSync(fileURLToPath(new URL(candidate, import.meta.url)), 'utf8')) as BuildStatus
    } catch {}
  }
  return undefined
}
