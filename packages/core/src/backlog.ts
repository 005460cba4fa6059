import type { Duplex } from 'node:stream';

/**
 * The fields of a raw socket this module reads. `_handle.writeQueueSize` is libuv's count of the
 * bytes it holds for the socket; Node's own `net.Socket` reads it for the same purpose (its
 * timeout does not fire while a write is in progress). `_bytesDispatched` counts every byte handed
 * to libuv, so the two together tell how many the kernel took. A TLS socket's bytes leave through
 * the TCP socket it wraps (`_parent`).
 */
interface RawSocket {
  _handle?: { writeQueueSize?: unknown } | null;
  _parent?: RawSocket | null;
  _bytesDispatched?: unknown;
  writableLength?: number;
}

/**
 * How much the kernels may still hold for a peer when our own queue to it empties, at most: our
 * send buffer, the bytes in flight and the peer's receive buffer (on Linux's defaults the two
 * buffers grow to 4 MiB and 6 MiB).
 */
export const KERNEL_TAIL_BYTES = 16 * 1024 * 1024;

/** A backlog being watched: since when, what the peer took, and, once it emptied, until when it counts. */
interface Episode {
  since: number;
  taken: number;
  /** Bytes the kernel had taken from us at the latest look (-1 where that is not known). */
  accepted: number;
  /** NaN while bytes are still queued; then the end of the kernels' tail. */
  until: number;
  /** What the latest look read as queued (0: nothing, once the backlog emptied). */
  mark: number;
}

/**
 * Our send queue to each peer, by connection slot, and whether it moved between two looks: the
 * peer's kernel taking our bytes is a sign of life as good as a byte read from the peer.
 *
 * The queue is libuv's write queue of the TCP socket. libuv holds only what the kernel refused, so
 * a non-empty queue means the kernel's send buffer was full; from then on the kernel takes more
 * only when the peer acknowledges what it received. The queue shrinks as that happens, even in the
 * middle of one large write (a single 100 MiB message), and it is replaced only when a write
 * completes, since Node runs one write at a time. So while the queue was not empty at the previous
 * look, any change of it means the peer took bytes; the application writing more never looks like
 * progress, and a queue that was empty proves nothing.
 *
 * When the queue empties, the kernels still hold the tail of what we sent (our send buffer, the
 * peer's receive buffer: megabytes), and a ping written now reaches the peer only after it read
 * all of that. The peer was reading at the rate the queue drained, so the tail takes it about
 * {@link KERNEL_TAIL_BYTES} ÷ that rate; the moment the queue emptied counts as a sign of life
 * lasting that long (but no longer than the queue took to empty, or `minTail` if that is longer,
 * so that a rate measured over a few bytes cannot postpone a verdict without end).
 *
 * Where a socket has no such queue (a runtime without it, or a stream that is not a TCP socket),
 * the stream's own `writableLength` stands in, and only its shrinking counts: a whole write must
 * complete for it to move, so progress inside one large write is not seen there. Where that is
 * empty too while the WebSocket still holds bytes for the peer (Bun's `ws` sends by a native path
 * that leaves the socket's stream empty), its `bufferedAmount` stands in, the same way.
 *
 * It keeps nothing for a connection with nothing queued and allocates nothing to look at one:
 * only a connection with a backlog has an entry, for as long as the backlog and its tail last.
 */
export class SendBacklog {
  /**
   * The slots whose queue was not empty at the latest look (their `mark`), or whose tail has not
   * ended yet. A slot without one read nothing queued at its latest look (or was never looked at).
   */
  private readonly episodes = new Map<number, Episode>();

  /** Starts a slot afresh (a new connection in it), or forgets the connection that left it. */
  reset(id: number): void {
    if (this.episodes.size !== 0) this.episodes.delete(id);
  }

  /** True when something was queued to the peer at the latest look. */
  queued(id: number): boolean {
    return this.episodes.size !== 0 && (this.episodes.get(id)?.mark ?? 0) > 0;
  }

  /**
   * Looks at the queue of `socket` (slot `id`, under `ws`) and returns until when it shows the peer alive:
   * `now` when the peer took bytes since the previous look, later when the queue has just emptied
   * (the kernels' tail, see the class), -Infinity when it shows nothing, and NaN when a queue has
   * formed since the previous look (whether the peer takes from it, the next look will tell).
   */
  look(id: number, socket: Duplex, now: number, minTail: number, ws?: { readonly bufferedAmount: number }): number {
    const raw = socket as RawSocket;
    let episode = this.episodes.size === 0 ? undefined : this.episodes.get(id);
    const mark = episode === undefined ? 0 : episode.mark;
    // The common case, read from JavaScript alone: nothing was queued at the previous look and the
    // stream holds nothing now. libuv holds bytes only for a write still in progress, which the
    // stream counts until it completes, so its queue is empty too (no native call needed).
    if (mark === 0 && raw._parent == null && raw.writableLength === 0 && (ws === undefined || ws.bufferedAmount === 0)) {
      return episode === undefined ? -Infinity : this.#tail(id, episode, now);
    }
    const owner = raw._parent ?? raw;
    const inLibuv = owner._handle?.writeQueueSize;
    const libuv = typeof inLibuv === 'number';
    const queued = libuv ? inLibuv : raw.writableLength || (ws?.bufferedAmount ?? 0);
    const dispatched = libuv && owner === raw ? raw._bytesDispatched : undefined;
    const accepted = typeof dispatched === 'number' ? dispatched - queued : -1;
    if (mark === 0) {
      if (queued > 0) {
        this.episodes.set(id, { since: now, taken: 0, accepted, until: Number.NaN, mark: queued });
        return Number.NaN;
      }
      return episode === undefined ? -Infinity : this.#tail(id, episode, now);
    }
    // A mark is kept only in an episode still watching its backlog (its tail not started).
    episode = episode!;
    episode.mark = queued;
    let taken: number;
    if (accepted >= 0 && episode.accepted >= 0) taken = accepted - episode.accepted;
    else if (libuv) taken = queued < mark ? mark - queued : queued > mark ? mark : 0; // a write completed: at least its rest
    else taken = queued < mark ? mark - queued : 0; // the stream's length also grows with the application's writes
    episode.accepted = accepted;
    if (taken <= 0) return -Infinity;
    episode.taken += taken;
    if (queued > 0) return now;
    const elapsed = now - episode.since;
    const tail = elapsed > 0 ? Math.min((KERNEL_TAIL_BYTES * elapsed) / episode.taken, Math.max(elapsed, minTail)) : minTail;
    episode.until = now + tail;
    return episode.until;
  }

  /** With nothing queued: the end of the kernels' tail while it lasts, then -Infinity (the episode is over). */
  #tail(id: number, episode: Episode, now: number): number {
    if (now < episode.until) return episode.until;
    this.episodes.delete(id);
    return -Infinity;
  }
}
