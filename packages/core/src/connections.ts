import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

/** `state`: the slot is unused. */
export const FREE = 0;
/** `state`: the connection is open; the liveness rule applies. */
export const OPEN = 1;
/** `state`: a close began (ours, the application's, or the peer's FIN); `closeTimeout` runs from `closingAt`. */
export const CLOSING = 2;
/** `state`: the engine ended the connection; `ws` has yet to emit `'close'`. */
export const TERMINATED = 3;

/** `traits` bit: any inbound frame proves life and postpones the ping (the route's `idleOnly`). */
export const IDLE_ONLY = 1;
/** `traits` bit: the route answers application-level heartbeats. */
export const APP_HEARTBEAT = 2;
/**
 * `traits` bit: a read of the raw socket has been seen, so every chunk is a sign of life and
 * frames need no store of their own. Set at the first read the engine sees, not at `track()`: on
 * a runtime whose WebSocket reads its socket out of sight (Bun's `ws`), it never is, and the
 * frames the engine can see prove life instead.
 */
export const READS_WATCHED = 4;

/** `flags` bit: a ping is out, and no sign of life has answered it yet. */
export const PING_OUT = 1;

const INITIAL_CAPACITY = 64;

/**
 * The engine's per-connection state: a few numbers per connection in typed arrays indexed by a
 * slot id (no object, timer or closure per connection). Freed ids are reused.
 */
export class ConnectionTable {
  ws: (WebSocket | undefined)[] = [];
  /** The raw socket under `ws`, where the engine watches reads and the peer's FIN. */
  socket: (Duplex | undefined)[] = [];
  /**
   * The peer's address, stored when a close begins (once the socket is destroyed it no longer
   * knows it): only closing connections have an entry.
   */
  readonly remoteAddress = new Map<number, string | undefined>();
  /** FREE, OPEN, CLOSING or TERMINATED. */
  state = new Uint8Array(0);
  /** IDLE_ONLY and APP_HEARTBEAT bits, fixed while the connection is tracked; READS_WATCHED, set at its first read. */
  traits = new Uint8Array(0);
  /** The PING_OUT bit. */
  flags = new Uint8Array(0);
  /** The index of the route definition the connection was tracked under. */
  profile = new Uint16Array(0);
  /** The peer's last sign of life: a chunk read from it, a frame, or our queue to it moving. */
  lastSeen = new Float64Array(0);
  trackedAt = new Float64Array(0);
  /** When the latest ping was written (0: never pinged). */
  pingAt = new Float64Array(0);
  /**
   * What the next ping is anchored to: the end of the tick in which the latest ping was due, not
   * the moment it was written (0: never pinged). A late tick writes its pings late, and anchoring
   * to that moment would move its connections into the following tick, where they would stay:
   * ticks would merge into ever larger bursts.
   */
  beatAt = new Float64Array(0);
  /**
   * When the connection entered CLOSING. The same array as `beatAt`: a connection is pinged only
   * while OPEN, and has a closing time only from CLOSING on, which it never leaves for OPEN.
   */
  closingAt = this.beatAt;
  /** The latest ping → pong round trip, ms (NaN: none yet). */
  latestRtt = new Float32Array(0);

  #count = 0;
  readonly #freeIds: number[] = [];

  /** `grown` is told every new capacity, for the structures kept beside this table. */
  constructor(private readonly grown: (capacity: number) => void) {
    this.#grow(INITIAL_CAPACITY);
  }

  /** Connections tracked now. */
  get count(): number {
    return this.#count;
  }

  /** A free slot for a new connection, in state FREE. */
  allocate(): number {
    this.#count += 1;
    const free = this.#freeIds.pop();
    if (free !== undefined) return free;
    const id = this.ws.length;
    // Grown by a quarter: at tens of thousands of connections, doubling would leave up to half of
    // the slots unused (about 80 bytes each); growing by a quarter, at most a fifth.
    if (id >= this.state.length) this.#grow(Math.ceil(this.state.length * 1.25));
    this.ws.push(undefined);
    this.socket.push(undefined);
    return id;
  }

  /** Frees a slot: its objects are dropped, its numbers are set again by the next `allocate()`. */
  release(id: number): void {
    this.ws[id] = undefined;
    this.socket[id] = undefined;
    this.remoteAddress.delete(id);
    this.state[id] = FREE;
    this.flags[id] = 0;
    this.#freeIds.push(id);
    this.#count -= 1;
  }

  #grow(capacity: number): void {
    const copy = <T extends Uint8Array | Uint16Array | Float32Array | Float64Array>(from: T, to: T): T => {
      to.set(from);
      return to;
    };
    this.state = copy(this.state, new Uint8Array(capacity));
    this.traits = copy(this.traits, new Uint8Array(capacity));
    this.flags = copy(this.flags, new Uint8Array(capacity));
    this.profile = copy(this.profile, new Uint16Array(capacity));
    this.lastSeen = copy(this.lastSeen, new Float64Array(capacity));
    this.trackedAt = copy(this.trackedAt, new Float64Array(capacity));
    this.pingAt = copy(this.pingAt, new Float64Array(capacity));
    this.beatAt = copy(this.beatAt, new Float64Array(capacity));
    this.closingAt = this.beatAt;
    this.latestRtt = copy(this.latestRtt, new Float32Array(capacity));
    this.grown(capacity);
  }
}
