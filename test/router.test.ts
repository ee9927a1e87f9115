import test from 'ava'
import { decodeValue, encodeFrame, FrameType, HEADER_BYTES } from '../src/codec/frame.js'
import { Router } from '../src/router/router.js'

/** A peer with a tcp and an shm link that count the calls sent on them and keep the probes' nonces. */
function twoArmedPeer (): { directory: any, sent: Record<string, number>, pings: number[] } {
  const sent: Record<string, number> = { tcp: 0, shm: 0 }
  const pings: number[] = []
  const send = (transport: string, bytes: Uint8Array): void => {
    const frame = decodeValue(bytes.subarray(HEADER_BYTES)) as unknown[]
    if (frame[0] === FrameType.PING) pings.push(frame[1] as number)
    else sent[transport]++
  }
  const link = (transport: string): unknown => ({ transport, open: true, send: (bytes: Uint8Array) => { send(transport, bytes) } })
  const session = { name: 'p', links: [link('tcp'), link('shm')] }
  return { directory: { get: (name: string) => name === 'p' ? session : undefined }, sent, pings }
}

function missingAcks (router: Router, arm?: string): number {
  return router.banditInfo('p').filter(a => arm == null || a.transport === arm).reduce((sum, a) => sum + a.missingAcks, 0)
}

test('router - one call per arm is watched for its ack; an unanswered one is a missing-ack sample', t => {
  const { directory, sent, pings } = twoArmedPeer()
  const router = new Router(directory, () => 'me', ['tcp', 'shm'], { ackTimeoutMs: 1000 })
  router.calls = { onReply: () => {}, onAck: () => {}, onError: () => {} } as any
  const peer = { name: 'p', calleeState: undefined }
  const call = (id: number): boolean => {
    const sentNow = router.send('p', encodeFrame([FrameType.CALL, id, 'f', [], 10_000, id]), 'call', id)
    // Probes are answered: only calls are left without an ack here.
    for (const nonce of pings.splice(0)) router.receive(peer, [FrameType.PONG, nonce])
    return sentNow
  }

  // Three calls on the preferred arm, none answered: only the first is watched, so one sample.
  t.true(call(1) && call(2) && call(3))
  t.deepEqual(sent, { tcp: 0, shm: 3 })
  router.sweep(performance.now() + 1500)
  t.is(missingAcks(router, 'shm'), 1)
  t.is(missingAcks(router, 'tcp'), 0)

  // From here on the bandit may prefer tcp (shm's estimate is now the timeout): count both arms.
  // A watched call that is answered is no sample, and frees the watch for the next call.
  t.true(call(4))
  router.receive(peer, [FrameType.REPLY, 4, 'ok'])
  router.sweep(performance.now() + 1500)
  t.is(missingAcks(router), 1)
  t.true(call(5))
  router.receive(peer, [FrameType.ACK, 5])
  t.true(call(6))
  router.sweep(performance.now() + 1500)
  t.is(missingAcks(router), 2, 'call 6 was watched once call 5 was acked')

  // An answer from another peer with the same id does not free the watch.
  t.true(call(7))
  router.receive({ name: 'q', calleeState: undefined }, [FrameType.REPLY, 7, 'ok'])
  router.sweep(performance.now() + 1500)
  t.is(missingAcks(router), 3)
})

test('router - the route kept between sends follows the links, the enabled arms and the bandit', t => {
  const { directory, sent } = twoArmedPeer()
  const session = directory.get('p')
  const router = new Router(directory, () => 'me', ['tcp', 'shm'])
  const send = (): boolean => router.send('p', encodeFrame([FrameType.ACK, 1]))
  t.true(send())
  t.deepEqual(sent, { tcp: 0, shm: 1 })
  // A sample that makes shm slow: the choice is made again at once.
  router.bandit.sample('p', 'shm', 0, 1e6)
  t.true(send())
  t.deepEqual(sent, { tcp: 1, shm: 1 })
  // Only shm enabled: the arms are made again.
  router.setTransports(['shm'])
  t.true(send())
  t.deepEqual(sent, { tcp: 1, shm: 2 })
  // The shm link closes before the directory drops it: tcp carries the next frame.
  router.setTransports(['tcp', 'shm'])
  session.links[1].open = false
  router.bandit.sample('p', 'shm', 0, 1)
  t.true(send())
  t.deepEqual(sent, { tcp: 2, shm: 2 })
  // A newer tcp link: once the directory counts the change, it carries the next frame.
  let fresh = 0
  session.links.push({ transport: 'tcp', open: true, send: () => { fresh++ } })
  t.true(send())
  t.is(fresh, 0, 'the kept route, while the directory has not counted a change')
  session.linksVersion = (session.linksVersion ?? 0) + 1
  t.true(send())
  t.is(fresh, 1)
})
