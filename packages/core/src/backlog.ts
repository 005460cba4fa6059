import type { Duplex } from 'node:stream';

/**
 * The fields of a raw socket this module reads. `_handle.writeQueueSize` is libuv's count of the
 * bytes it holds for the socket; Node's own `net.Socket` reads it for the same purpose (its
 * timeout does not fire while a write is in progress). A TLS socket's bytes leave through the TCP
 * socket it wraps (`_parent`).
 */
interface RawSocket {
  _handle?: { writeQueueSize?: unknown } | null;
  _parent?: RawSocket | null;
  writableLength?: number;
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
 * Where a socket has no such queue (a runtime without it, or a stream that is not a TCP socket),
 * the stream's own `writableLength` stands in, and only its shrinking counts: a whole write must
 * complete for it to move, so progress inside one large write is not seen there.
 *
 * Like the wheel, it keeps one number per slot in a typed array and allocates nothing per look.
 */
export class SendBacklog {
  /** What the previous look of each slot read (0: nothing queued, or never looked). */
  private marks = new Float64Array(0);

  /** Makes room for slots `0 … capacity - 1`. */
  ensureCapacity(capacity: number): void {
    if (capacity <= this.marks.length) return;
    const marks = new Float64Array(capacity);
    marks.set(this.marks);
    this.marks = marks;
  }

  /** Starts a slot afresh (a new connection in it). */
  reset(id: number): void {
    this.marks[id] = 0;
  }

  /** True when something was queued to the peer at the latest look. */
  queued(id: number): boolean {
    return this.marks[id]! > 0;
  }

  /** Looks at the queue of `socket` (slot `id`); true when it moved since the previous look. */
  moved(id: number, socket: Duplex): boolean {
    const raw = socket as RawSocket;
    const mark = this.marks[id]!;
    const inLibuv = (raw._parent ?? raw)._handle?.writeQueueSize;
    if (typeof inLibuv === 'number') {
      this.marks[id] = inLibuv;
      return mark > 0 && inLibuv !== mark;
    }
    const inStream = raw.writableLength ?? 0;
    this.marks[id] = inStream;
    return inStream < mark;
  }
}
