/**
 * Baseline: Node's `net` over a unix domain socket (what a careful hand-written
 * same-host link costs without shared memory). The socket file lives in the OS temp
 * directory and is removed when the server closes.
 */
import { createServer, connect, type Socket } from 'node:net'
import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { EchoClient, EchoServer, Stack } from '../harness.js'
import { FrameSplitter, OrderedCalls } from '../tcp/framing.js'

async function serve (): Promise<EchoServer> {
  const path = join(tmpdir(), `cohort-bench-${randomBytes(6).toString('hex')}.sock`)
  const sockets = new Set<Socket>()
  const server = createServer(socket => {
    sockets.add(socket)
    const splitter = new FrameSplitter(frame => { socket.write(frame) })
    socket.on('data', chunk => { splitter.push(chunk) })
    socket.on('error', () => {})
    socket.on('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => { resolve() })
  })
  return {
    address: path,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
      rmSync(path, { force: true })
    }
  }
}

async function connectTo (path: string): Promise<EchoClient> {
  const socket = connect({ path })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const calls = new OrderedCalls(frame => { socket.write(frame) })
  socket.on('data', chunk => { calls.splitter.push(chunk) })
  socket.on('error', err => { calls.fail(err) })
  socket.on('close', () => { calls.fail(new Error('raw-unix socket closed')) })
  return {
    call: async payload => await calls.call(payload),
    close: async () => {
      await new Promise<void>(resolve => { socket.end(resolve) })
      socket.destroy()
    }
  }
}

export const rawUnix: Stack = {
  id: 'raw-unix',
  label: 'raw net (unix socket)',
  serve,
  connect: connectTo
}
