/**
 * One peer of the real-process discovery bench (bench/discovery/processes.ts), driven by
 * its parent over IPC.
 *
 *   node dist/bench/discovery/peer.js '{"name":"p1","connect":["127.0.0.1:4000"]}'
 */
import { Rpc } from '../../src/index.js'

interface Command { id: number, op: string, [key: string]: any }

const config = JSON.parse(process.argv[2] ?? '{}') as { name: string, connect?: string[] }
const rpc = new Rpc({ name: config.name, lookupTimeout: 60, timeout: 120 })
rpc.define('whoami', () => rpc.getName())

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** Polls this peer's membership until `name` is in `state`; returns the time (ms epoch) it was seen. */
async function waitKnows (name: string, state: string, limitMs: number): Promise<number | null> {
  const end = Date.now() + limitMs
  while (Date.now() < end) {
    const entry = rpc.debugInfo().membership.find(m => m.name === name)
    if (entry?.state === state) return Date.now()
    await sleep(20)
  }
  return null
}

async function run (cmd: Command): Promise<unknown> {
  switch (cmd.op) {
    case 'callAll': {
      // Calls every other peer by name (each call retried until it succeeds); returns when all have answered.
      await Promise.all((cmd.peers as string[]).filter(p => p !== rpc.getName()).map(async peer => {
        for (let attempt = 0; attempt < 20; attempt++) {
          try {
            if (await rpc.async_(peer, 'whoami') === peer) return
          } catch {
            await sleep(100)
          }
        }
        throw new Error(`${rpc.getName()} could not call ${peer}`)
      }))
      return Date.now()
    }
    case 'waitKnows':
      return await waitKnows(cmd.name, cmd.state, cmd.limitMs)
    case 'stats': {
      const gossip = rpc.debugInfo().counters.gossip as Record<string, number>
      const forwarding = rpc.debugInfo().counters.forwarding as Record<string, number>
      return { bytesOut: gossip.gossipBytesOut, messagesOut: gossip.gossipMessagesOut, dials: gossip.dials, dialFailures: gossip.dialFailures, forwarded: forwarding.originated, lastDialError: gossip.lastDialError, at: Date.now() }
    }
    default:
      throw new Error(`unknown op ${cmd.op}`)
  }
}

process.on('message', (cmd: Command) => {
  run(cmd).then(value => process.send?.({ id: cmd.id, ok: true, value }), (err: any) => process.send?.({ id: cmd.id, ok: false, message: err?.message }))
})
process.on('disconnect', () => { void rpc.close().finally(() => process.exit(0)) })

void (async () => {
  await rpc.listen('127.0.0.1:0')
  for (const address of config.connect ?? []) rpc.connect(address)
  process.send?.({ id: 0, ok: true, value: { name: rpc.getName(), addresses: rpc.addresses() } })
})()
