/**
 * Baseline: Node's `net` on loopback, no encryption, no muxer. The server echoes each
 * length-prefixed message with one write; Nagle is off on both ends.
 */
import { connect, type AddressInfo } from 'node:net'
import type { EchoClient, EchoServer, Stack } from '../harness.js'
import { echoClient, listenEcho } from './framing.js'

async function serve (): Promise<EchoServer> {
  const { server, close } = await listenEcho((server, ready) => { server.listen(0, '127.0.0.1', ready) }, true)
  const { port } = server.address() as AddressInfo
  return { address: `127.0.0.1:${port}`, close }
}

async function connectTo (address: string): Promise<EchoClient> {
  const colon = address.lastIndexOf(':')
  const socket = connect({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)), noDelay: true })
  const client = await echoClient(socket, 'raw-net')
  socket.setNoDelay(true)
  return client
}

export const rawNet: Stack = {
  id: 'raw-net',
  label: 'raw net (TCP, no crypto)',
  serve,
  connect: connectTo
}
