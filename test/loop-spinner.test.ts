import test from 'ava'
import { LoopSpinner, SINGLE_CPU, SpinGate, SpinWindow } from '../src/transports/loop-spinner.js'

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
  if (SINGLE_CPU) {
    t.is(windows + skippedBusy + turns, 0)
    return
  }
  // A machine busier than its CPUs (a loaded CI runner) skips the window; either way it was decided.
  t.is(windows + skippedBusy, 1)
  if (windows === 1) t.true(turns > 0)
  // Idle now: no more turns.
  await new Promise(resolve => setTimeout(resolve, 20))
  const after = spinner.stats.turns
  await new Promise(resolve => setTimeout(resolve, 50))
  t.is(spinner.stats.turns, after)
})

test('spin gate - a window that did not get the CPU it spun on pauses spinning', t => {
  const gate = new SpinGate()
  if (SINGLE_CPU) {
    t.false(gate.allows(0))
    return
  }
  // 50 ms of wall time with (almost) no CPU used: someone else had the CPU.
  const token = { at: performance.now() - 50, cpu: process.cpuUsage() }
  gate.ended(token, performance.now())
  t.is(gate.stats.contended, 1)
  t.false(gate.allows(performance.now()))
})
