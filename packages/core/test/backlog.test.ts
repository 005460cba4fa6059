/**
 * The send-queue watcher, from stand-ins for a raw socket (libuv's queue and Node's dispatched
 * count, or only a stream's length) and a clock the test passes in.
 */
import type { Duplex } from 'node:stream';
import { KERNEL_TAIL_BYTES, SendBacklog } from '../src/backlog';

const MiB = 1024 * 1024;
const MIN_TAIL = 700; // interval + timeout

/** A TCP socket as libuv shows it: `queued` bytes refused by the kernel, `dispatched` handed over. */
function tcp(queued: number, dispatched: number): Duplex & { _handle: { writeQueueSize: number }; _bytesDispatched: number } {
  return { _handle: { writeQueueSize: queued }, _bytesDispatched: dispatched } as never;
}

function backlog(): SendBacklog {
  return new SendBacklog();
}

describe('SendBacklog (fake clock)', () => {
  test('an empty queue shows nothing, and the first look at a full one tells only that it formed (NaN)', () => {
    const b = backlog();
    expect(b.look(0, tcp(0, 10 * MiB), 0, MIN_TAIL)).toBe(-Infinity);
    expect(b.queued(0)).toBe(false);
    expect(b.look(0, tcp(8 * MiB, 20 * MiB), 100, MIN_TAIL)).toBeNaN();
    expect(b.queued(0)).toBe(true);
  });

  test('the application writing more is not progress; the kernel taking bytes is, as of the look', () => {
    const b = backlog();
    b.look(0, tcp(4 * MiB, 8 * MiB), 0, MIN_TAIL);
    // One more MiB queued behind, nothing taken: the kernel's count is unchanged.
    expect(b.look(0, tcp(5 * MiB, 9 * MiB), 100, MIN_TAIL)).toBe(-Infinity);
    expect(b.look(0, tcp(4.5 * MiB, 9 * MiB), 200, MIN_TAIL)).toBe(200);
    // A write completed and the next one started: the kernel's count tells what it took.
    expect(b.look(0, tcp(6 * MiB, 11 * MiB), 300, MIN_TAIL)).toBe(300);
  });

  test('when the queue empties, the peer counts as alive while it reads the kernels\' tail at the rate it took our bytes', () => {
    const b = backlog();
    b.look(0, tcp(32 * MiB, 40 * MiB), 0, MIN_TAIL);
    b.look(0, tcp(16 * MiB, 40 * MiB), 4000, MIN_TAIL); // 4 MiB a second
    const until = b.look(0, tcp(0, 40 * MiB), 8000, MIN_TAIL);
    expect(until).toBe(8000 + (KERNEL_TAIL_BYTES / (4 * MiB)) * 1000); // 16 MiB at 4 MiB/s: 4 s
    expect(b.queued(0)).toBe(false);
    // Until the tail ends, every look says so; then the connection is forgotten.
    expect(b.look(0, tcp(0, 40 * MiB), 11_000, MIN_TAIL)).toBe(until);
    expect(b.look(0, tcp(0, 40 * MiB), until, MIN_TAIL)).toBe(-Infinity);
    expect(b.look(0, tcp(0, 40 * MiB), until + 1, MIN_TAIL)).toBe(-Infinity);
  });

  test('the tail lasts no longer than the queue took to empty, or minTail when that is longer', () => {
    const slow = backlog();
    slow.look(0, tcp(2 * MiB, 10 * MiB), 0, MIN_TAIL);
    // 2 MiB in 4 s: the rate says 32 s for 16 MiB, the queue took 4 s.
    expect(slow.look(0, tcp(0, 10 * MiB), 4000, MIN_TAIL)).toBe(8000);
    const tiny = backlog();
    tiny.look(1, tcp(10, 10 * MiB), 0, MIN_TAIL);
    // Ten bytes in 75 ms say nothing of the rate: minTail.
    expect(tiny.look(1, tcp(0, 10 * MiB), 75, MIN_TAIL)).toBe(75 + MIN_TAIL);
  });

  test('a new backlog replaces the tail of the previous one, and reset forgets both', () => {
    const b = backlog();
    b.look(2, tcp(MiB, 4 * MiB), 0, MIN_TAIL);
    const until = b.look(2, tcp(0, 4 * MiB), 100, MIN_TAIL);
    expect(until).toBeGreaterThan(100);
    expect(b.look(2, tcp(3 * MiB, 8 * MiB), 200, MIN_TAIL)).toBeNaN();
    expect(b.look(2, tcp(2 * MiB, 8 * MiB), 300, MIN_TAIL)).toBe(300);
    b.reset(2);
    expect(b.queued(2)).toBe(false);
    expect(b.look(2, tcp(0, 8 * MiB), 400, MIN_TAIL)).toBe(-Infinity);
  });

  test("with neither libuv's queue nor the stream's length (Bun's ws), only the WebSocket's bufferedAmount shrinking counts", () => {
    const b = backlog();
    const socket = { _handle: null, writableLength: 0 } as never as Duplex;
    const ws = (bufferedAmount: number) => ({ bufferedAmount });
    expect(b.look(2, socket, 0, MIN_TAIL, ws(0))).toBe(-Infinity);
    expect(b.look(2, socket, 100, MIN_TAIL, ws(12 * MiB))).toBeNaN(); // a queue formed
    expect(b.look(2, socket, 200, MIN_TAIL, ws(13 * MiB))).toBe(-Infinity); // the application wrote more
    expect(b.look(2, socket, 300, MIN_TAIL, ws(11 * MiB))).toBe(300);
    expect(b.look(2, socket, 400, MIN_TAIL, ws(0))).toBeGreaterThan(400);
  });

  test('without libuv\'s queue, only the stream\'s length shrinking counts', () => {
    const b = backlog();
    const stream = (length: number): Duplex => ({ writableLength: length }) as never;
    b.look(3, stream(3 * MiB), 0, MIN_TAIL);
    expect(b.look(3, stream(4 * MiB), 100, MIN_TAIL)).toBe(-Infinity); // the application wrote more
    expect(b.look(3, stream(2 * MiB), 200, MIN_TAIL)).toBe(200);
    expect(b.look(3, stream(0), 300, MIN_TAIL)).toBeGreaterThan(300);
  });
});
