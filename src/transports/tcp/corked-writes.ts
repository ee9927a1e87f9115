/**
 * One socket write per small Noise message, not two.
 *
 * Noise hands the TCP connection each message as two buffers, its 2-byte length and the
 * ciphertext, and @libp2p/tcp writes each with its own `socket.write()`: two `write`
 * system calls per message, each a trip through the kernel's TCP stack (on loopback, to
 * the receiving socket too). The first of them alone can wake the peer, which reads the
 * two length bytes, goes back to its poll, and wakes again for the rest (seen with strace
 * on 64 B calls: a read of 2 bytes, then a read of 107). `oneWritePerMessage` corks the
 * socket around a send that fits under its high-water mark, so Node hands the buffers to
 * the kernel in one `writev`.
 *
 * Larger sends keep @libp2p/tcp's own path: while corked every write is queued, so one
 * past the high-water mark would report the socket full and wait for a drain it did not
 * need. Where the connection does not have the shape read here (another libp2p, Noise or
 * TCP transport), nothing changes.
 *
 * Two pairs in one client process, one corked and one not, sequential 64 B calls in
 * alternating blocks (five runs): the corked pair ahead at every percentile in every run,
 * p50 181–217 against 187–223 µs, the least round trip 74–76 against 90–106 µs.
 *
 * ```ts
 * oneWritePerMessage(connection) // once per connection; true when it applied
 * ```
 */
import type { Connection } from '@libp2p/interface'

/** The fields of @libp2p/tcp's connection this reads (private in its types). */
interface TcpMessageStream {
  socket: {
    cork: () => void
    uncork: () => void
    writableLength: number
    writableHighWaterMark: number
  }
  sendData: (data: { byteLength: number }) => { sentBytes: number, canSendMore: boolean }
}

/** Connections already changed (a connection may carry several streams). */
const corked = new WeakSet<object>()

/** True when the connection's small sends now leave in one write; false when it had been done or cannot be. */
export function oneWritePerMessage (connection: Connection): boolean {
  // Under Noise (connection.muxer.maConn, see noise-length.ts) is @libp2p/tcp's stream.
  const tcp = (connection as unknown as { muxer?: { maConn?: { stream?: Partial<TcpMessageStream> } } }).muxer?.maConn?.stream
  const socket = tcp?.socket
  if (tcp == null || socket == null || corked.has(tcp)) return false
  if (typeof tcp.sendData !== 'function' || typeof socket.cork !== 'function' || typeof socket.uncork !== 'function' ||
      typeof socket.writableLength !== 'number' || typeof socket.writableHighWaterMark !== 'number') return false
  const plain = tcp.sendData
  tcp.sendData = function (this: TcpMessageStream, data) {
    const socket = this.socket
    // Every write of a send this small leaves the socket under its mark, so none reports it
    // full and the loop writes them all before uncork() sends them together.
    if (data.byteLength >= socket.writableHighWaterMark - socket.writableLength) return plain.call(this, data)
    socket.cork()
    try {
      return plain.call(this, data)
    } finally {
      socket.uncork()
    }
  }
  corked.add(tcp)
  return true
}
