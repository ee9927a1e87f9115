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
  b.sample('p', 'shm', 0, 5000, 2) // clearly worse: tcp
  t.is(b.best('p', arms, 0, 2), 0)
  b.fail('p', 'tcp', 3) // the arm in use fails: masked, back to shm
  t.is(b.best('p', arms, 0, 3), 1)
  // Large messages: the band is 1 / 0.7^4, about 4x; three samples each make the class's own estimates count.
  for (let i = 0; i < 3; i++) {
    b.sample('p', 'tcp', 2, 10_000, 4000)
    b.sample('p', 'shm', 2, 30_000, 4000)
  }
  t.is(b.best('p', arms, 2, 4000), 1)
  b.sample('p', 'shm', 2, 50_000, 4001)
  t.is(b.best('p', arms, 2, 4001), 0)
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
