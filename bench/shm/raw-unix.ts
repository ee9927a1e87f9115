/**
 * Baseline: Node's `net` over a unix domain socket (what a careful hand-written
 * same-host link costs without shared memory). The socket file lives in the OS temp
 * directory and is removed when the server closes.
 */
import { connect } from 'node:net'
import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { EchoClient, EchoServer, Stack } from '../harness.js'
import { echoClient, listenEcho } from '../tcp/framing.js'

async function serve (): Promise<EchoServer> {
  const path = join(tmpdir(), `cohort-bench-${randomBytes(6).toString('hex')}.sock`)
  const { close } = await listenEcho((server, ready) => { server.listen(path, ready) }, false)
  return {
    address: path,
    close: async () => {
      await close()
      rmSync(path, { force: true })
    }
  }
}

async function connectTo (path: string): Promise<EchoClient> {
  return await echoClient(connect({ path }), 'raw-unix')
}

export const rawUnix: Stack = {
  id: 'raw-unix',
  label: 'raw net (unix socket)',
  serve,
  connect: connectTo
}
