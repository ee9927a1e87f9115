import test from 'ava'
import { CallTable } from '../src/calls/call-table.js'
import { DedupTable } from '../src/calls/dedup-table.js'
import { Deadlines } from '../src/calls/deadlines.js'
import { IdTable } from '../src/calls/id-table.js'
import { decodeValue, encodeFrame, FrameType, HEADER_BYTES } from '../src/codec/frame.js'
import { Dispatcher } from '../src/endpoints/dispatcher.js'
import { EndpointRegistry } from '../src/endpoints/registry.js'

function decode (frame: Uint8Array): unknown[] {
  return decodeValue(frame.subarray(HEADER_BYTES)) as unknown[]
}

test('at-most-once - a resent CALL runs once; the duplicate gets the stored reply', async t => {
  const registry = new EndpointRegistry()
  let runs = 0
  registry.define('inc', (x: number) => { runs++; return x + 1 })
  const sent: unknown[][] = []
  const dispatcher = new Dispatcher(registry, { selfName: () => 'callee', maxRunning: 100, maxDedupEntries: 100, maxFrameBytes: 1 << 20, send: (_peer, frame) => { sent.push(decode(frame)) } })
  const caller = { name: 'caller', calleeState: undefined }
  const call = [FrameType.CALL, 7, 'inc', [41], 10_000, 1]
  dispatcher.onCall(caller, call)
  dispatcher.onCall(caller, call)
  t.is(runs, 1)
  t.deepEqual(sent, [[FrameType.REPLY, 7, 42], [FrameType.REPLY, 7, 42]])
})

test('at-most-once - a resend of a call still running gets an ACK, not a second run', async t => {
  const registry = new EndpointRegistry()
  let runs = 0
  let finish: (v: number) => void = () => {}
  registry.define('slow', async () => { runs++; return await new Promise<number>(resolve => { finish = resolve }) })
  const sent: unknown[][] = []
  const dispatcher = new Dispatcher(registry, { selfName: () => 'callee', maxRunning: 100, maxDedupEntries: 100, maxFrameBytes: 1 << 20, send: (_peer, frame) => { sent.push(decode(frame)) } })
  const caller = { name: 'caller', calleeState: undefined }
  const call = [FrameType.CALL, 3, 'slow', [], 10_000, 1]
  dispatcher.onCall(caller, call)
  dispatcher.onCall(caller, call)
  t.is(runs, 1)
  t.deepEqual(sent, [[FrameType.ACK, 3]])
  finish(5)
  await new Promise(resolve => setImmediate(resolve))
  t.deepEqual(sent.at(-1), [FrameType.REPLY, 3, 5])
  t.is(runs, 1)
})

test('at-most-once - ids below the caller\'s low water mark are forgotten and never run again', t => {
  const table = new DedupTable(1000)
  t.deepEqual(table.admit(1, 1000, 1), { kind: 'new' })
  table.end(1, encodeFrame([FrameType.REPLY, 1, null]))
  t.deepEqual(table.admit(2, 1000, 1), { kind: 'new' })
  table.end(2, encodeFrame([FrameType.REPLY, 2, null]))
  t.is(table.size, 2)
  // The caller says every id below 3 has ended for it.
  t.deepEqual(table.admit(3, 1000, 3), { kind: 'new' })
  t.is(table.size, 1)
  t.deepEqual(table.admit(1, 1000, 3), { kind: 'stale' })
})

test('at-most-once - an ended call is remembered past its deadline: the first sweep after it ends dates it, a later sweep past that date lets it go', t => {
  const table = new DedupTable(1000)
  const arrived = Date.now()
  t.deepEqual(table.admit(1, 1000, 1), { kind: 'new' })
  table.end(1, encodeFrame([FrameType.REPLY, 1, 'done']))
  const resend = (): unknown => table.admit(1, 1000, 1)
  // Long past the deadline, but this sweep is the first to see it ended: it stays, and a resend still gets the reply.
  table.sweep(arrived + 5000)
  t.is(table.size, 1)
  t.is((resend() as { kind: string }).kind, 'ended')
  // Up to that sweep's time plus the timeout it stays too.
  table.sweep(arrived + 6000)
  t.is(table.size, 1)
  table.sweep(arrived + 6001)
  t.is(table.size, 0)
  // A call still running is never dated or dropped by a sweep.
  t.deepEqual(table.admit(2, 1000, 1), { kind: 'new' })
  table.sweep(arrived + 60_000)
  table.sweep(arrived + 120_000)
  t.deepEqual(table.admit(2, 1000, 1), { kind: 'running' })
})

test('at-most-once - calls on a lost link are resent to the same process and failed for a restarted one', async t => {
  const frames: Array<[string, unknown[]]> = []
  let linkUp = true
  const table = new CallTable({ maxInflight: 10, maxFrameBytes: 1 << 20, lookupTimeoutMs: 1000, reconnectGraceMs: 5000, resultDevice: 'cpu', send: (peer, frame) => { if (linkUp) frames.push([peer, decode(frame)]); return linkUp } })
  const a = table.start('p', 'f', [1], 10_000)
  const b = table.start('p', 'g', [2], 10_000)
  t.is(frames.length, 2)
  linkUp = false
  table.onPeerDown('p')
  linkUp = true
  table.onPeerUp('p', false)
  t.deepEqual(frames.slice(2).map(([, f]) => f[2]), ['f', 'g'])
  t.deepEqual(frames.slice(2).map(([, f]) => f[1]), frames.slice(0, 2).map(([, f]) => f[1]))
  table.onReply('p', frames[0][1][1], 'A')
  t.is(await a, 'A')
  // The same name comes back as a new process: the call it held cannot be answered.
  table.onPeerDown('p')
  table.onPeerUp('p', true)
  const err = await b.then(() => undefined, e => e)
  t.is(err.code, 'PEER_NOT_FOUND')
  t.regex(err.message, /restarted/)
  table.close(new (await import('../src/errors/rpc-error.js')).RpcError('CLOSED', 'done'))
})

test('calls - an ended call, and a forgotten dedup entry, keep nothing of their own alive', async t => {
  // Dead objects in the old generation keep what they point to through every scavenge:
  // an ended call must not point to its future, value, frame or timers (see PendingCall),
  // nor be held by the table's deadlines once no live call is ahead of it in its lane.
  const table = new CallTable({ maxInflight: 10, maxFrameBytes: 1 << 20, lookupTimeoutMs: 1000, reconnectGraceMs: 5000, resultDevice: 'cpu', send: () => true })
  const pending = (table as any).calls as Map<number, any>
  const replied = table.start('p', 'f', [new Uint8Array(64)], 10_000)
  const failed = table.start('p', 'g', [], 10_000)
  const expired = table.start('p', 'h', [], 20)
  const [a, b, c] = [...pending.values()]
  const lanes = (table as any).deadlines.lanes as Map<number, { queue: { items: unknown[] } }>
  const heldByDeadlines = (call: any): boolean => [...lanes.values()].some(lane => lane.queue.items.includes(call))
  t.truthy(a.future)
  t.true(heldByDeadlines(a) && heldByDeadlines(c))
  t.true(a.frame.byteLength > 64)
  table.onReply('p', a.id, 'A')
  table.onError('p', [FrameType.ERROR, b.id, 'REMOTE_ERROR', 'Error', 'no', ''])
  t.is(await replied, 'A')
  t.is((await failed.then(() => undefined, e => e)).code, 'REMOTE_ERROR')
  t.is((await expired.then(() => undefined, e => e)).code, 'TIMEOUT')
  for (const call of [a, b, c]) {
    t.is(call.future, undefined)
    t.false(heldByDeadlines(call))
    t.is(call.lookupTimer, undefined)
    t.is(call.frame.byteLength, 0)
  }
  const dedup = new DedupTable(100)
  dedup.admit(5, 10_000, 1)
  dedup.end(5, encodeFrame([FrameType.REPLY, 5, 'kept for a resend']))
  const entry = (dedup as any).entries.get(5)
  t.truthy(entry.reply)
  dedup.admit(6, 10_000, 6) // the caller is done with every id below 6
  t.is(entry.reply, undefined)
  t.is(dedup.size, 1)
})

test('calls - the id table keeps long calls past the ring, finds every id, and gives the lowest one present', t => {
  const table = new IdTable<{ id: number }>()
  const live = new Map<number, { id: number }>()
  const check = (): void => {
    const ids = [...live.keys()].sort((a, b) => a - b)
    t.is(table.size, ids.length)
    t.deepEqual(table.values().map(item => item.id), ids)
    t.is(table.lowest(), ids[0])
  }
  // A long call, then 5,000 short ones with gaps (ids a failed start used and never added)
  // and 64 in flight, as a pipelined caller's: the long one must stay the low water mark.
  let id = 1_000
  const long = { id: id++ }
  table.add(long)
  live.set(long.id, long)
  const inFlight: Array<{ id: number }> = []
  for (let i = 0; i < 5_000; i++) {
    if (i % 97 === 0) id++
    const item = { id: id++ }
    table.add(item)
    live.set(item.id, item)
    inFlight.push(item)
    if (inFlight.length > 64) {
      const done = inFlight.shift() as { id: number }
      t.true(table.delete(done))
      live.delete(done.id)
    }
    if (i % 500 === 0) check()
  }
  t.is(table.get(long.id), long)
  t.is(table.lowest(), long.id)
  // A burst of 2,000 in flight grows the ring; every one is still found.
  for (let i = 0; i < 2_000; i++) {
    const item = { id: id++ }
    table.add(item)
    live.set(item.id, item)
  }
  check()
  for (const item of [...live.values()]) t.is(table.get(item.id), item)
  t.false(table.delete({ id: long.id }))
  t.true(table.delete(long))
  live.delete(long.id)
  check()
  t.is(table.find(item => item.id === id - 1)?.id, id - 1)
  t.is(table.get(long.id), undefined)
  t.is(table.get(1.5), undefined)
  t.throws(() => { table.add({ id: 1.5 }) })
  // Ids out of order (a caller's calls over two transports) and far apart (a hostile one).
  for (const item of [{ id: 5 }, { id: 2 ** 40 + 5 }, { id: 4 }, { id: 5 + 256 }]) {
    table.add(item)
    live.set(item.id, item)
  }
  check()
  for (const item of live.values()) t.is(table.get(item.id), item)
  for (const item of [...live.values()]) table.delete(item)
  live.clear()
  check()
  t.is(table.lowest(), undefined)
})

test('at-most-once - the dedup table stays bounded behind a long call and takes ids out of order', t => {
  const dedup = new DedupTable(100)
  t.is(dedup.admit(1, 60_000, 1).kind, 'new')
  // 10,000 calls run and end while call 1 still runs (the caller's low water mark stays 1).
  for (let id = 2; id < 10_002; id++) {
    t.is(dedup.admit(id, 60_000, 1).kind, 'new')
    dedup.end(id, encodeFrame([FrameType.REPLY, id, 'ok']))
  }
  const arrivals = (dedup as any).arrivals as { items: unknown[], head: number }
  t.true(dedup.size <= 101)
  t.true(arrivals.items.length - arrivals.head <= 2 * dedup.size + 64 + 1, `${arrivals.items.length - arrivals.head} arrivals for ${dedup.size} entries`)
  t.is(dedup.admit(1, 60_000, 1).kind, 'running')
  // What stays are the newest ended calls: the oldest went first.
  for (const id of [9_905, 9_950, 10_001]) t.is(dedup.admit(id, 60_000, 1).kind, 'ended')
  // Over two transports a later call may come first; each is still run once.
  t.is(dedup.admit(10_003, 60_000, 1).kind, 'new')
  t.is(dedup.admit(10_002, 60_000, 1).kind, 'new')
  t.is(dedup.admit(10_002, 60_000, 1).kind, 'running')
  // The caller is done with everything below 10,002: only the two newest stay.
  dedup.end(1, encodeFrame([FrameType.REPLY, 1, 'late']))
  t.is(dedup.admit(10_004, 60_000, 10_002).kind, 'new')
  t.is(dedup.admit(5_000, 60_000, 10_002).kind, 'stale')
  t.is(dedup.size, 3)
})

test('at-most-once - past the cap the entry that ended longest ago goes, also when calls that ran long end after newer ones', t => {
  // Each newest ended call stays for a resend; what ended long ago goes first.
  const reply = (id: number): Uint8Array => encodeFrame([FrameType.REPLY, id, 'ok'])
  const capped = new DedupTable(10)
  for (let id = 1; id <= 11; id++) capped.admit(id, 60_000, 1) // 1 runs on; 2..11 run a while
  capped.end(11, reply(11))
  capped.admit(12, 60_000, 1) // past the cap: 11, the only one ended, goes
  capped.end(12, reply(12))
  for (let id = 2; id <= 10; id++) capped.end(id, reply(id))
  for (let id = 13; id <= 16; id++) { // each lets the longest ended go: 12, 2, 3, 4
    capped.admit(id, 60_000, 1)
    capped.end(id, reply(id))
  }
  for (const id of [16, 15, 14, 13, 10, 5]) t.is(capped.admit(id, 60_000, 1).kind, 'ended', `call ${id}`)
  t.is(capped.admit(1, 60_000, 1).kind, 'running')
  t.is(capped.admit(4, 60_000, 1).kind, 'new')
})

test('deadlines - ended calls held behind a long one stay bounded, and each live call still expires in deadline order', async t => {
  const expired: number[] = []
  const deadlines = new Deadlines<{ id: number, timeoutMs: number, deadlineAt: number, awaitingDeadline: boolean }>(item => { expired.push(item.id) })
  const make = (id: number, timeoutMs: number) => ({ id, timeoutMs, deadlineAt: performance.now() + timeoutMs, awaitingDeadline: false })
  const long = make(1, 60)
  deadlines.add(long)
  // 10,000 calls start and end behind the long one, as a pipelined caller's would.
  for (let id = 2; id < 10_002; id++) {
    const call = make(id, 60)
    deadlines.add(call)
    deadlines.remove(call)
  }
  const lane = (deadlines as any).lanes.get(60) as { queue: { items: unknown[], head: number }, live: number }
  t.is(lane.live, 1)
  t.true(lane.queue.items.length - lane.queue.head <= 2 * 1 + 64 + 1, `${lane.queue.items.length - lane.queue.head} entries held for one live call`)
  // Another timeout's calls, started later and due sooner, expire first; ended ones never do.
  const short = make(20_000, 10)
  const ended = make(20_001, 10)
  deadlines.add(short)
  deadlines.add(ended)
  deadlines.remove(ended)
  await new Promise(resolve => setTimeout(resolve, 120))
  t.deepEqual(expired, [20_000, 1])
  t.false(long.awaitingDeadline)
  t.is((deadlines as any).lanes.size, 0)
  deadlines.clear()
})

test('deadlines and at-most-once - calls one at a time leave their queues empty after each call, in an array cut back past 1024 slots', t => {
  const deadlines = new Deadlines<{ id: number, timeoutMs: number, deadlineAt: number, awaitingDeadline: boolean }>(() => {})
  const dedup = new DedupTable(100)
  const reply = encodeFrame([FrameType.REPLY, 1, 'ok'])
  const lane = (): { items: unknown[], head: number } => (deadlines as any).lanes.get(60).queue
  const arrivals = (): { items: unknown[], head: number } => (dedup as any).arrivals
  let longest = 0
  for (let id = 1; id <= 10_000; id++) {
    const call = { id, timeoutMs: 60, deadlineAt: performance.now() + 60, awaitingDeadline: false }
    deadlines.add(call)
    deadlines.remove(call)
    t.is(dedup.admit(id, 60_000, id).kind, 'new')
    dedup.end(id, reply)
    if (lane().items.length !== lane().head || arrivals().items.length - arrivals().head > 1) t.fail(`call ${id} left items queued`)
    longest = Math.max(longest, lane().items.length, arrivals().items.length)
  }
  t.true(longest > 1 && longest <= 2 * 1024 + 2, `arrays grew to ${longest}`)
  t.is(dedup.admit(10_000, 60_000, 10_000).kind, 'ended') // the last id is still remembered
  t.is(dedup.admit(9_999, 60_000, 10_000).kind, 'stale')
  deadlines.clear()
})

test('at-most-once - reply memory is bounded; a resend past the bound gets an error, not a second run', t => {
  const registry = new EndpointRegistry()
  let runs = 0
  registry.define('big', () => { runs++; return new Uint8Array(1000) })
  const sent: unknown[][] = []
  const dispatcher = new Dispatcher(registry, { selfName: () => 'callee', maxRunning: 100, maxDedupEntries: 100, maxFrameBytes: 1 << 20, send: (_peer, frame) => { sent.push(decode(frame)) } })
  const caller = { name: 'caller', calleeState: new DedupTable(100, 2500) }
  for (let id = 1; id <= 5; id++) dispatcher.onCall(caller, [FrameType.CALL, id, 'big', [], 10_000, 1])
  t.is(runs, 5)
  // Replies 1..3 were dropped to stay under 2,500 bytes; 4 and 5 are kept.
  dispatcher.onCall(caller, [FrameType.CALL, 1, 'big', [], 10_000, 1])
  dispatcher.onCall(caller, [FrameType.CALL, 5, 'big', [], 10_000, 1])
  t.is(runs, 5)
  t.is(sent[5][0], FrameType.ERROR)
  t.is(sent[5][2], 'OVERLOADED')
  t.is(sent[6][0], FrameType.REPLY)
})

test('at-most-once - a reply for a caller that restarted meanwhile is not sent to the new process', async t => {
  const registry = new EndpointRegistry()
  let finish: (v: string) => void = () => {}
  registry.define('slow', async () => await new Promise<string>(resolve => { finish = resolve }))
  const sent: unknown[][] = []
  const dispatcher = new Dispatcher(registry, { selfName: () => 'callee', maxRunning: 100, maxDedupEntries: 100, maxFrameBytes: 1 << 20, send: (_peer, frame) => { sent.push(decode(frame)) } })
  const caller = { name: 'caller', calleeState: undefined as unknown }
  dispatcher.onCall(caller, [FrameType.CALL, 1, 'slow', [], 10_000, 1])
  // The directory resets the slot when a new process binds the name.
  caller.calleeState = undefined
  finish('for the old process')
  await new Promise(resolve => setImmediate(resolve))
  t.false(sent.some(f => f[0] === FrameType.REPLY))
  t.is(dispatcher.running, 0)
})

test('dispatch - a handler returning a promise-like whose then throws fails that call only', async t => {
  const registry = new EndpointRegistry()
  registry.define('evil', () => ({ get then () { throw new Error('then trap') } }))
  registry.define('ok', () => 'fine')
  const sent: unknown[][] = []
  const dispatcher = new Dispatcher(registry, { selfName: () => 'callee', maxRunning: 100, maxDedupEntries: 100, maxFrameBytes: 1 << 20, send: (_peer, frame) => { sent.push(decode(frame)) } })
  const caller = { name: 'caller', calleeState: undefined }
  t.notThrows(() => { dispatcher.onCall(caller, [FrameType.CALL, 1, 'evil', [], 10_000, 1]) })
  dispatcher.onCall(caller, [FrameType.CALL, 2, 'ok', [], 10_000, 1])
  t.is(sent[0][0], FrameType.ERROR)
  t.is(sent[0][2], 'REMOTE_ERROR')
  t.regex(String(sent[0][4]), /then trap/)
  t.deepEqual(sent[1], [FrameType.REPLY, 2, 'fine'])
  t.is(dispatcher.running, 0)
})

test('router - a link that throws on send (closed, or over its queue bound) counts as no link', async t => {
  const { Router } = await import('../src/router/router.js')
  const { RpcError } = await import('../src/errors/rpc-error.js')
  const throwing = { transport: 'tcp', open: true, send: () => { throw new RpcError('OVERLOADED', 'queue bound') } }
  const directory = { get: () => ({ name: 'p', links: [throwing] }) } as any
  const router = new Router(directory, () => 'me', ['tcp'])
  const table = new CallTable({ maxInflight: 10, maxFrameBytes: 1 << 20, lookupTimeoutMs: 50, reconnectGraceMs: 50, resultDevice: 'cpu', send: (peer, frame) => router.send(peer, frame) })
  // The call does not throw out of start(); it waits for a link and then ends once.
  const fut = table.start('p', 'f', [], 10_000)
  const err = await fut.then(() => undefined, e => e)
  t.is(err.code, 'PEER_NOT_FOUND')
  t.is(router.counters.unroutable, 1)
})

test('calls - a send path that throws ends that call once with an error, first send or resend; the other calls go on', async t => {
  const { RpcError } = await import('../src/errors/rpc-error.js')
  let mode: 'throw' | 'throwRpc' | 'noLink' | 'ok' = 'throw'
  const sent: number[] = []
  const table = new CallTable({
    maxInflight: 10,
    maxFrameBytes: 1 << 20,
    lookupTimeoutMs: 10_000,
    reconnectGraceMs: 5000,
    resultDevice: 'cpu',
    send: (_peer, frame) => {
      if (mode === 'throw') throw new Error('signing failed')
      if (mode === 'throwRpc') throw new RpcError('OVERLOADED', 'queue bound')
      if (mode === 'noLink') return false
      sent.push(decode(frame)[1] as number)
      return true
    }
  })
  let ends = 0
  const outcome = async (fut: PromiseLike<unknown>): Promise<any> => await fut.then(value => { ends++; return value }, err => { ends++; return err })
  // The first send throws: the call ends with BAD_FRAME naming the call and the cause.
  const first = await outcome(table.start('p', 'f', [], 10_000))
  t.is(first.code, 'BAD_FRAME')
  t.is(first.message, "function 'f' on peer 'p': the call could not be sent: signing failed")
  // No link, so the call waits; the send when the peer comes throws an RpcError, which ends it as it is.
  mode = 'noLink'
  const waiting = table.start('p', 'g', [], 10_000)
  mode = 'throwRpc'
  table.flush('p')
  t.is((await outcome(waiting)).code, 'OVERLOADED')
  t.is(table.perPeer().size, 0)
  mode = 'ok'
  const third = table.start('p', 'h', [], 10_000)
  table.onReply('p', sent[0], 7)
  t.is(await outcome(third), 7)
  t.is(ends, 3)
  t.deepEqual(table.counters.failed, { BAD_FRAME: 1, OVERLOADED: 1 })
  t.is(table.counters.succeeded, 1)
})

test('calls - a peer\'s round-trip estimate starts at its first reply, takes every eighth one after, and goes with the peer', async t => {
  const ids: number[] = []
  const table = new CallTable({ maxInflight: 100, maxFrameBytes: 1 << 20, lookupTimeoutMs: 1000, reconnectGraceMs: 5000, resultDevice: 'cpu', send: (_peer, frame) => { ids.push(decode(frame)[1] as number); return true } })
  const wait = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
  t.is(table.rttMs('p'), undefined)
  const first = table.start('p', 'f', [], 10_000)
  table.onReply('p', ids[0], 1)
  t.is(await first, 1)
  const start = table.rttMs('p') as number
  t.true(start >= 0 && start < 1000)
  // Replies two to seven (each at least 30 ms) leave it as it is; the eighth moves it.
  for (let i = 1; i <= 8; i++) {
    const fut = table.start('p', 'f', [], 10_000)
    await wait(30)
    table.onReply('p', ids[i], i)
    t.is(await fut, i)
    if (i < 7) t.is(table.rttMs('p'), start)
  }
  t.true((table.rttMs('p') as number) >= start * 0.8 + 30 * 0.2)
  table.forgetPeer('p')
  t.is(table.rttMs('p'), undefined)
})
