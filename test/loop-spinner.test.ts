import test from 'ava'
import { LoopSpinner, singleCpu, SpinGate, SpinWindow } from '../src/transports/loop-spinner.js'

test('spin window - widens when traffic comes just after sleeping, narrows on long sleeps, within bounds', t => {
  const w = new SpinWindow()
  t.is(w.ms, 1)
  w.slept(0)
  w.woke(1.5) // 1.5 ms after sleeping with a 1 ms window: a 2 ms window would have caught it
  t.is(w.ms, 2)
  for (let i = 0; i < 10; i++) { w.slept(0); w.woke(0.1) }
  t.is(w.ms, 4)
  for (let i = 0; i < 10; i++) { w.slept(0); w.woke(10_000) }
  t.is(w.ms, 0.2)
  w.slept(0)
  w.woke(5) // between 2x and 50x the window: unchanged
  t.is(w.ms, 0.2)
})

test('loop spinner - polls for a window after traffic, then stops by itself', async t => {
  const gate = new SpinGate()
  const spinner = new LoopSpinner(gate)
  spinner.traffic()
  await new Promise(resolve => setTimeout(resolve, 50))
  const { windows, turns } = spinner.stats
  const { skippedBusy } = gate.stats
  if (singleCpu()) {
    t.is(windows + skippedBusy + turns, 0)
    return
  }
  t.is(windows + skippedBusy, 1)
  t.is(skippedBusy, 0) // a fresh gate has seen no contended window
  t.true(turns > 0)
  // Idle now: no more turns.
  await new Promise(resolve => setTimeout(resolve, 20))
  const after = spinner.stats.turns
  await new Promise(resolve => setTimeout(resolve, 50))
  t.is(spinner.stats.turns, after)
})

test('spin gate - a second of spinning that mostly waited for a CPU pauses spinning; a contended moment does not', t => {
  let waited = 0
  const gate = new SpinGate(() => waited)
  if (singleCpu()) {
    t.false(gate.allows(0))
    return
  }
  const t0 = performance.now()
  const window = (from: number, to: number, waitMs: number): void => {
    const token = gate.started(t0 + from)
    waited += waitMs * 1e6
    gate.ended(token, t0 + to)
  }
  // A moment of contention (two spinners met on one CPU) inside a clean second.
  window(0, 150, 120)
  t.true(gate.allows(t0 + 151))
  window(200, 1100, 10)
  t.is(gate.stats.contended, 0)
  t.true(gate.allows(t0 + 1101))
  // A second in which the spinning mostly waited for a CPU: paused for 2 s.
  window(1200, 2200, 900)
  t.is(gate.stats.contended, 1)
  t.false(gate.allows(t0 + 2201))
  t.true(gate.allows(t0 + 4201))
  // Still contended: the pause doubles.
  window(4300, 5300, 800)
  t.is(gate.stats.contended, 2)
  t.false(gate.allows(t0 + 9200))
  t.true(gate.allows(t0 + 9301))
})

test('spin gate - a window that waits behind another task on its CPU gives the CPU up', t => {
  let waited = 0
  const gate = new SpinGate(() => waited)
  const token = gate.started(0)
  t.false(gate.crowded(token, 0.2)) // not looked at yet
  waited += 0.05e6
  t.false(gate.crowded(token, 0.6)) // 0.05 of 0.6 ms waiting
  waited += 0.4e6
  t.true(gate.crowded(token, 1.2)) // 0.4 of 0.6 ms waiting
  t.is(gate.stats.yielded, 1)
})

const cpuCount = (await import('node:os')).availableParallelism()
const twoCpus = cpuCount >= 2 ? test : test.skip

twoCpus('spin gate - a process pinned to one CPU while it runs stops spinning within a second; unpinned again, it may spin', async t => {
  // A child, so that pinning it changes nothing for the other tests of this worker.
  const { execFileSync } = await import('node:child_process')
  const { fileURLToPath } = await import('node:url')
  const spinner = new URL('../src/transports/loop-spinner.js', import.meta.url).href
  const script = `
    import { execFileSync } from 'node:child_process'
    import { performance } from 'node:perf_hooks'
    import { singleCpu, spinGate } from ${JSON.stringify(spinner)}
    const wait = ms => new Promise(resolve => setTimeout(resolve, ms))
    const seen = []
    const look = () => { const now = performance.now(); seen.push([singleCpu(now), spinGate.allows(now)]) }
    const pin = cpus => execFileSync('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' })
    look()
    pin('0')
    look() // within the second: the last answer stands
    await wait(1100)
    look()
    pin('0-${cpuCount - 1}')
    await wait(1100)
    look()
    console.log(JSON.stringify(seen))
  `
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: fileURLToPath(new URL('.', import.meta.url)) })
  t.deepEqual(JSON.parse(out), [[false, true], [false, true], [true, false], [false, true]])
})
