/**
 * Baseline: Node's `net` on loopback, no encryption, no muxer. The server echoes each
 * length-prefixed message with one write; Nagle is off on both ends.
 */
import { createServer, connect, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import type { EchoClient, EchoServer, Stack } from '../harness.js'
import { FrameSplitter, OrderedCalls } from './framing.js'

async function serve (): Promise<EchoServer> {
  const sockets = new Set<Socket>()
  const server = createServer(socket => {
    sockets.add(socket)
    socket.setNoDelay(true)
    const splitter = new FrameSplitter(frame => { socket.write(frame) })
    socket.on('data', chunk => { splitter.push(chunk) })
    socket.on('error', () => {})
    socket.on('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { resolve() })
  })
  const { port } = server.address() as AddressInfo
  return {
    address: `127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}

async function connectTo (address: string): Promise<EchoClient> {
  const colon = address.lastIndexOf(':')
  const socket = connect({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)), noDelay: true })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.setNoDelay(true)
  const calls = new OrderedCalls(frame => { socket.write(frame) })
  socket.on('data', chunk => { calls.splitter.push(chunk) })
  socket.on('error', err => { calls.fail(err) })
  socket.on('close', () => { calls.fail(new Error('raw-net socket closed')) })
  return {
    call: async payload => await calls.call(payload),
    close: async () => {
      await new Promise<void>(resolve => { socket.end(resolve) })
      socket.destroy()
    }
  }
}

export const rawNet: Stack = {
  id: 'raw-net',
  label: 'raw net (TCP, no crypto)',
  serve,
  connect: connectTo
}
