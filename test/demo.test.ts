/**
 * The demo `npm start` runs (demo/actor-learner.ts), run for a few seconds as a child
 * process with real actor processes, judged by the JSON line it ends with.
 */
import test from 'ava'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ActorReport } from '../demo/actor.js'

const DEMO = fileURLToPath(new URL('../demo/actor-learner.js', import.meta.url))

interface Run { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

async function runDemo (args: string[], limitMs: number): Promise<Run> {
  const child = spawn(process.execPath, [DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  // SIGTERM, not SIGKILL: the demo's handler then kills its actors too.
  const timer = setTimeout(() => { child.kill('SIGTERM') }, limitMs)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => { child.once('exit', (c, s) => { resolve([c, s]) }) })
  clearTimeout(timer)
  return { code, signal, stdout, stderr }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

test('demo - actors step through the batched learner, every trajectory is learned once, nothing is left running', async t => {
  t.timeout(115_000)
  const run = await runDemo(['--seconds', '3', '--actors', '3', '--json'], 100_000)
  t.is(run.code, 0, `exit ${String(run.code ?? run.signal)}; stderr:\n${run.stderr}\nstdout:\n${run.stdout}`)
  const lines = run.stdout.trim().split('\n')
  const result = JSON.parse(lines[lines.length - 1])
  const actors = result.actors as ActorReport[]
  const learner = result.learner

  t.true(result.ok)
  t.deepEqual(actors.map(a => a.name).sort(), ['actor-0', 'actor-1', 'actor-2'])
  for (const a of actors) {
    t.true(a.steps > 0, `${a.name} made no steps`)
    t.is(a.trajectoryErrors, 0, a.name)
    // Counted on both sides: what the actor sent and had acknowledged, what the learner learned.
    t.is(a.trajectoriesAcked, a.trajectoriesSent, a.name)
    t.is(learner.learnedByActor[a.name] ?? 0, a.trajectoriesSent, a.name)
    // Each actor dialled only the learner, yet found every peer by gossip and its neighbour by name.
    t.deepEqual(Object.entries(a.membership).filter(([, state]) => state === 'alive').map(([name]) => name).sort(), ['actor-0', 'actor-1', 'actor-2', 'learner'])
    t.is(a.neighbour.answer, `${a.neighbour.name} here`)
    t.true(a.learnerLink.links.length > 0, `${a.name} has no link to the learner`)
    t.is(Object.values(a.evaluatedBy).reduce((s, n) => s + n, 0) + a.evaluationErrors, a.evaluationsAsked, a.name)
    t.false(alive(a.pid), `${a.name} (pid ${a.pid}) is still running after the demo exited`)
  }
  const sent = actors.reduce((s, a) => s + a.trajectoriesSent, 0)
  t.true(sent > 0, 'no trajectory was sent')
  t.is(learner.trajectoriesLearned, sent)
  t.is(learner.duplicates, 0)
  // Every step is one act call, and the learner ran them in batches of more than one on average.
  t.is(learner.actCalls, actors.reduce((s, a) => s + a.steps, 0))
  t.true(learner.meanBatch > 1, `mean batch ${String(learner.meanBatch)}`)
  t.true(learner.maxBatch <= 16)
  // Evaluations counted by the askers equal those counted by the evaluators.
  const answered = actors.reduce((s, a) => s + Object.values(a.evaluatedBy).reduce((x, n) => x + n, 0), 0)
  const served = actors.reduce((s, a) => s + Object.values(a.evaluationsServed).reduce((x, n) => x + n, 0), 0)
  t.is(served, answered)
  t.true(actors.filter(a => Object.keys(a.evaluationsServed).length > 0).every(a => a.name === 'actor-0'), 'only actor-0 defines evaluate with 3 actors')
})

test('demo - bad flags exit 2 with a message, not a stack trace', async t => {
  for (const args of [['--actors', 'many'], ['--frobnicate'], ['--seconds'], ['--envs', '0']]) {
    const run = await runDemo(args, 30_000)
    t.is(run.code, 2, args.join(' '))
    t.regex(run.stderr, /^actor-learner: /, args.join(' '))
    t.regex(run.stderr, /usage: npm start/)
    t.notRegex(run.stderr, /\n\s+at /, 'no stack trace')
  }
})
