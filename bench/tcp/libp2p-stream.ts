/**
 * The stack cohort's TCP transport is built on, without cohort: a libp2p 3 node with
 * @libp2p/tcp, Noise and yamux, one long-lived stream, 4-byte length-prefixed raw
 * bytes. The server echoes each message with its own `stream.send()` (no coalescing),
 * and both ends honour backpressure (`send()` false → wait for `onDrain()`).
 */
import '../../src/transports/tcp/polyfill.js' // before any libp2p module: Node 20 lacks Promise.withResolvers
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import type { EchoClient, EchoServer, Stack } from '../harness.js'
import { FrameSplitter, OrderedCalls } from './framing.js'

const PROTOCOL = '/cohort-bench/echo/1.0.0'

/** Room for a whole 16 MiB message in the read buffer, as cohort allows for its frames. */
const MAX_READ_BUFFER = 64 * 1024 * 1024

function nodeOptions (listen: string[]): Libp2pOptions {
  return {
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // The same settings as src/transports/tcp/tcp-transport.ts.
    connectionManager: {
      inboundConnectionThreshold: 10_000,
      maxIncomingPendingConnections: 1_000,
      maxConnections: 10_000
    }
  }
}

/** One `send()` per message; while the stream needs a drain, messages wait here in order. */
class MessageWriter {
  private readonly backlog: Uint8Array[] = []
  private draining = false

  constructor (private readonly stream: Stream) {}

  write (message: Uint8Array): void {
    if (this.draining) {
      this.backlog.push(message)
      return
    }
    if (!this.stream.send(message)) this.waitForDrain()
  }

  private waitForDrain (): void {
    this.draining = true
    this.stream.onDrain().then(() => {
      this.draining = false
      while (this.backlog.length > 0 && !this.draining) {
        if (!this.stream.send(this.backlog.shift() as Uint8Array)) this.waitForDrain()
      }
    }, () => { this.backlog.length = 0 })
  }
}

async function serve (): Promise<EchoServer> {
  const node: Libp2p = await createLibp2p(nodeOptions(['/ip4/127.0.0.1/tcp/0']))
  await node.handle(PROTOCOL, stream => {
    stream.maxReadBufferLength = MAX_READ_BUFFER
    const writer = new MessageWriter(stream)
    const splitter = new FrameSplitter(frame => { writer.write(frame) })
    stream.addEventListener('message', evt => { splitter.push(evt.data) })
  })
  return {
    address: node.getMultiaddrs()[0].toString(),
    close: async () => { await node.stop() }
  }
}

async function connectTo (address: string): Promise<EchoClient> {
  const node: Libp2p = await createLibp2p(nodeOptions([]))
  try {
    const connection = await node.dial(multiaddr(address), { signal: AbortSignal.timeout(10_000) })
    const stream = await connection.newStream(PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    stream.maxReadBufferLength = MAX_READ_BUFFER
    const writer = new MessageWriter(stream)
    const calls = new OrderedCalls(frame => { writer.write(frame) })
    stream.addEventListener('message', evt => { calls.splitter.push(evt.data) })
    stream.addEventListener('close', evt => { calls.fail(evt.error ?? new Error('libp2p stream closed')) })
    return {
      call: async payload => await calls.call(payload),
      close: async () => {
        await stream.close().catch(() => {})
        await node.stop()
      }
    }
  } catch (err) {
    await node.stop()
    throw err
  }
}

export const libp2pStream: Stack = {
  id: 'libp2p-stream',
  label: 'bare libp2p stream (noise+yamux)',
  serve,
  connect: connectTo
}
