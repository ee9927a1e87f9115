/**
 * The receiving end every link shares. The remote side may speak before the link's
 * owner has set `onFrame` (it sends its HELLO as soon as its dial resolves), so frames
 * wait here until then; after that a handler that throws is logged, never taken out on
 * the link: the bytes were fine.
 *
 * ```ts
 * private readonly inbox = new FrameInbox(log, peerId)
 * get onFrame () { return this.inbox.onFrame }
 * set onFrame (handler) { this.inbox.onFrame = handler }
 * // for each decoded frame:
 * this.inbox.deliver(frame)
 * ```
 */
import type { Logger } from '@libp2p/interface'

type FrameHandler = (frame: unknown[]) => void

const ignore: FrameHandler = () => {}

export class FrameInbox {
  private early?: unknown[][] = []
  private handler?: FrameHandler

  constructor (private readonly log: Logger, private readonly remotePeerId: string) {}

  get onFrame (): FrameHandler {
    return this.handler ?? ignore
  }

  set onFrame (handler: FrameHandler) {
    this.handler = handler
    const early = this.early
    this.early = undefined
    // Read the handler per frame: a HELLO among them may hand the link to a new owner.
    if (early != null) for (const frame of early) this.handler?.(frame)
  }

  deliver (frame: unknown[]): void {
    if (this.early != null) {
      this.early.push(frame)
      return
    }
    try {
      this.handler?.(frame)
    } catch (err) {
      this.log.error('frame handler failed on a frame from %s: %e', this.remotePeerId, err)
    }
  }
}
