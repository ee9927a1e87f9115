/**
 * The shm transport without the Rpc above it: one ShmLink, frames encoded with the frame
 * codec, the server echoing each frame back. It shows what the ring and its wake-ups
 * cost apart from the Rpc layers (call table, futures, dispatch, the bandit).
 *
 * The offer that would travel over an authenticated TCP link travels here as the
 * "address" the parent hands from the server child to the client (over fork's IPC).
 */
import { decodeValue, encodeFrame } from '../../src/codec/frame.js'
import { ShmTransport } from '../../src/transports/shm/shm-transport.js'
import type { Link } from '../../src/transports/transport.js'
import type { EchoClient, EchoServer, Stack } from '../harness.js'

const MAX_FRAME = 64 * 1024 * 1024

async function serve (): Promise<EchoServer> {
  const shm = new ShmTransport({ maxFrameBytes: MAX_FRAME, localPeerId: () => 'server' })
  if (!shm.availability().available) throw new Error(`shm unavailable: ${shm.availability().reason ?? ''}`)
  shm.onInbound(link => {
    link.onFrame = frame => { link.send(encodeFrame(frame)) }
  })
  const offer = await new Promise<Uint8Array>(resolve => {
    const via = { transport: 'tcp', send: (bytes: Uint8Array) => { resolve(bytes) } } as unknown as Link
    shm.offer({ name: 'client', peerId: 'client' }, via)
  })
  return { address: Buffer.from(offer).toString('base64'), close: async () => { await shm.stop() } }
}

async function connectTo (address: string): Promise<EchoClient> {
  const shm = new ShmTransport({ maxFrameBytes: MAX_FRAME, localPeerId: () => 'client' })
  const link = await new Promise<Link>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no shm link in 5 s: ${shm.lastError ?? ''}`)) }, 5_000)
    shm.onInbound(l => { clearTimeout(timer); resolve(l) })
    const offer = Buffer.from(address, 'base64')
    shm.onOffer({ name: 'server', peerId: 'server' }, decodeValue(offer.subarray(4)) as unknown[], { transport: 'tcp' } as unknown as Link)
  })
  // Replies come back in order: a FIFO of waiting calls is the whole call table.
  const waiting: Array<(payload: Uint8Array) => void> = []
  let head = 0
  link.onFrame = frame => {
    const resolve = waiting[head++]
    if (head > 1024 && head * 2 > waiting.length) { waiting.splice(0, head); head = 0 }
    resolve?.(frame[1] as Uint8Array)
  }
  return {
    call: async payload => await new Promise<Uint8Array>(resolve => {
      waiting.push(resolve)
      link.send(encodeFrame([100, payload]))
    }),
    close: async () => { await shm.stop() }
  }
}

export const shmLink: Stack = {
  id: 'shm-link',
  label: 'shm link alone (no Rpc)',
  serve,
  connect: connectTo
}
