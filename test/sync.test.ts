import test from 'ava'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Rpc, RpcError, Tensor, tensor } from '../src/index.js'
import { PeerProcess } from './helpers/peer-process.js'

const run = promisify(execFile)
const SCRIPT = fileURLToPath(new URL('./fixtures/sync-script.js', import.meta.url))

test('sync - blocks and returns in a plain script with no await', async t => {
  const host = await PeerProcess.start({ rpc: { name: 'synchost' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const { stdout } = await run(process.execPath, [SCRIPT, host.addresses[0], 'synchost'], { timeout: 60_000 })
  t.deepEqual(JSON.parse(stdout.trim()), { sum: 42, echoedMapSize: 1, remote: 'REMOTE_ERROR:RangeError', self: 'BAD_ARGUMENT' })
})

test('sync - really blocks the calling thread while the call runs', async t => {
  const host = await PeerProcess.start({ rpc: { name: 'blocker' }, listen: '127.0.0.1:0' })
  t.teardown(async () => await host.kill())
  const rpc = new Rpc()
  t.teardown(async () => { await rpc.close() })
  rpc.connect(host.addresses[0])
  t.is(await rpc.async_('blocker', 'add', 1, 1), 2)
  let ticked = false
  setImmediate(() => { ticked = true })
  t.is(rpc.sync('blocker', 'sleep', 300), 300)
  // No turn of this thread's loop ran during sync().
  t.false(ticked)
  const err = t.throws(() => rpc.sync('blocker', 'nothing'))
  t.is((err as RpcError).code, 'FUNCTION_NOT_FOUND')
  t.throws(() => rpc.sync(rpc.getName(), 'x'), { code: 'BAD_ARGUMENT', message: /deadlock/ })
  // Tensors cross the worker thread and come back as Tensors.
  const back = rpc.sync<Tensor>('blocker', 'echo', tensor([[1, 2], [3, 4]], undefined, 'int16'))
  t.true(back instanceof Tensor)
  t.deepEqual([back.dtype, back.shape, back.toArray()], ['int16', [2, 2], [1, 2, 3, 4]])
})
