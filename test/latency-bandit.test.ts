import test from 'ava'
import { LatencyBandit, sizeClassOf } from '../src/router/latency-bandit.js'

test('bandit - ranks by estimate, priors before the first sample', t => {
  const b = new LatencyBandit()
  t.deepEqual(b.rank('p', ['tcp', 'shm'], 0), ['shm', 'tcp'])
  b.sample('p', 'shm', 0, 900, 0)
  b.sample('p', 'tcp', 0, 300, 0)
  t.deepEqual(b.rank('p', ['shm', 'tcp'], 0, 0), ['tcp', 'shm'])
})

test('bandit - peak-EWMA: a spike counts at once, a good sample pulls the estimate down over time', t => {
  const b = new LatencyBandit({ tauMs: 100 })
  b.sample('p', 'shm', 0, 10, 0)
  b.sample('p', 'shm', 0, 5000, 10)
  t.is(b.info('p')[0].estimatesUs.small, 5000)
  b.sample('p', 'shm', 0, 10, 20) // 10 ms later: little weight yet
  const soon = b.info('p')[0].estimatesUs.small ?? 0
  t.true(soon > 4000)
  b.sample('p', 'shm', 0, 10, 1020) // a second later: almost all weight
  t.true((b.info('p')[0].estimatesUs.small ?? Infinity) < 20)
})

test('bandit - size classes are separate; an unknown class falls back to the smaller one', t => {
  const b = new LatencyBandit()
  t.is(sizeClassOf(64), 0)
  t.is(sizeClassOf(64 * 1024), 1)
  t.is(sizeClassOf(16 * 1024 * 1024), 2)
  b.sample('p', 'shm', 0, 10, 0)
  b.sample('p', 'tcp', 0, 500, 0)
  // A large class's first samples do not decide yet: the small class's estimates do.
  for (let i = 0; i < 2; i++) {
    b.sample('p', 'shm', 2, 90_000, 0)
    b.sample('p', 'tcp', 2, 40_000, 0)
  }
  t.deepEqual(b.rank('p', ['shm', 'tcp'], 2, 0), ['shm', 'tcp'])
  b.sample('p', 'shm', 2, 90_000, 0)
  b.sample('p', 'tcp', 2, 40_000, 0)
  t.deepEqual(b.rank('p', ['shm', 'tcp'], 0, 0), ['shm', 'tcp'])
  t.deepEqual(b.rank('p', ['shm', 'tcp'], 2, 0), ['tcp', 'shm'])
  t.deepEqual(b.rank('p', ['shm', 'tcp'], 1, 0), ['shm', 'tcp'])
  // A missing ack is believed at once, in any class.
  b.missingAck('p', 'shm', 1, 1000)
  t.deepEqual(b.rank('p', ['shm', 'tcp'], 1, 0), ['tcp', 'shm'])
})

test('bandit - a failed arm is masked for a while, a missing ack is a sample equal to its timeout', t => {
  const b = new LatencyBandit({ maskMs: 1000 })
  b.sample('p', 'shm', 0, 10, 0)
  b.sample('p', 'tcp', 0, 500, 0)
  b.fail('p', 'shm', 0)
  t.deepEqual(b.rank('p', ['shm', 'tcp'], 0, 500), ['tcp', 'shm'])
  t.deepEqual(b.rank('p', ['shm', 'tcp'], 0, 1500), ['shm', 'tcp'])
  b.missingAck('p', 'shm', 0, 1000)
  const shm = b.info('p').find(a => a.transport === 'shm')
  t.is(shm?.estimatesUs.small, 1_000_000)
  t.is(shm?.missingAcks, 1)
  t.is(shm?.failures, 1)
})

test('bandit - best() takes the cheaper-by-construction arm among those noise cannot tell apart', t => {
  const b = new LatencyBandit({ tieRatio: 0.7 })
  const arms = [{ transport: 'tcp' as const }, { transport: 'shm' as const }]
  b.sample('p', 'shm', 0, 100, 0)
  b.sample('p', 'tcp', 0, 500, 0)
  t.is(b.best('p', arms, 0, 0), 1)
  b.sample('p', 'shm', 0, 600, 1) // shm a little worse than tcp: a tie, shm's prior wins
  t.is(b.best('p', arms, 0, 1), 1)
  b.sample('p', 'shm', 0, 5000, 2) // clearly worse once: a lost time slice, shm stays
  t.is(b.best('p', arms, 0, 2), 1)
  b.sample('p', 'shm', 0, 4000, 3)
  b.sample('p', 'shm', 0, 4500, 4) // its last three samples all clearly worse: tcp
  t.is(b.best('p', arms, 0, 4), 0)
  b.fail('p', 'tcp', 5) // the arm in use fails: masked, back to shm
  t.is(b.best('p', arms, 0, 5), 1)
  // Large messages: the band is 1 / 0.7^4, about 4x; three samples each make the class's own estimates count.
  for (let i = 0; i < 3; i++) {
    b.sample('p', 'tcp', 2, 10_000, 4000)
    b.sample('p', 'shm', 2, 30_000, 4000)
  }
  t.is(b.best('p', arms, 2, 4000), 1)
  for (let i = 0; i < 3; i++) b.sample('p', 'shm', 2, 50_000, 4001)
  t.is(b.best('p', arms, 2, 4001), 0)
})

test('bandit - one slow round trip raises the estimate but moves nothing; a missing ack moves at once', t => {
  const b = new LatencyBandit({ tieRatio: 0.7 })
  const arms = [{ transport: 'tcp' as const }, { transport: 'shm' as const }]
  // Two processes on one CPU: both arms' probes take 1–2 ms, one or the other slower in a round.
  const rounds = [[1200, 1300], [1500, 1100], [1100, 2600], [1900, 1200], [1000, 1050], [1300, 2900], [2400, 1400]]
  const start = Date.now() - 1000 // missingAck() reads the clock
  rounds.forEach(([tcp, shm], i) => {
    b.sample('p', 'tcp', 0, tcp, start + i * 100)
    b.sample('p', 'shm', 0, shm, start + i * 100)
    t.is(b.best('p', arms, 0, start + i * 100), 1, `round ${i}: tcp ${tcp} µs, shm ${shm} µs`)
  })
  const shm = b.info('p').find(a => a.transport === 'shm')
  t.true((shm?.estimatesUs.small ?? 0) > 2000, 'the spike still shows in the estimate')
  b.missingAck('p', 'shm', 0, 1000)
  const now = Date.now()
  t.is(b.best('p', arms, 0, now), 0)
  // Three good samples in a row bring shm back at once, before its estimate has decayed.
  for (let i = 0; i < 3; i++) b.sample('p', 'shm', 0, 900, now + i)
  t.true((b.info('p').find(a => a.transport === 'shm')?.estimatesUs.small ?? 0) > 500_000)
  t.is(b.best('p', arms, 0, now + 3), 1)
})

test('bandit - a peer\'s estimate for asyncAny is its best measured unmasked arm, none before a sample', t => {
  const b = new LatencyBandit({ maskMs: 1000 })
  t.is(b.peerEstimateUs('p', 0), undefined)
  t.deepEqual(b.rank('p', ['shm', 'tcp'], 0, 0), ['shm', 'tcp']) // priors alone are no measurement
  t.is(b.peerEstimateUs('p', 0), undefined)
  b.sample('p', 'tcp', 0, 400, 0)
  b.sample('p', 'shm', 0, 30, 0)
  t.is(b.peerEstimateUs('p', 0), 30)
  b.fail('p', 'shm', 10)
  t.is(b.peerEstimateUs('p', 20), 400)
})
