/**
 * Visits an id that is due, in the tick that starts at `tickAt` (ms; `now` may be later, when the
 * tick came late). Returns the id's next due time (ms), or `Infinity` to drop it from the wheel.
 */
export type Visit = (id: number, now: number, tickAt: number) => number;

export interface WheelOptions {
  /** Width of one tick in ms. */
  tickMs: number;
  /** Number of slots; a power of two. One revolution is `tickMs × slots`. */
  slots: number;
  /** The clock reading at which the wheel starts: no tick before it is ever visited. */
  start: number;
}

const NONE = -1;

/**
 * A hashed timing wheel over small integer ids (connection slots of the engine).
 *
 * Each id sits in the slot of the tick in which it falls due; ids due more than one revolution
 * ahead share a slot with nearer ones and are skipped (left in place) until their turn. Every
 * structure is a typed array of linked-list pointers: scheduling, moving and cancelling an id
 * are O(1) and allocate nothing, and one tick visits only the ids of its own slot.
 *
 * The wheel knows nothing of clocks or timers: the caller passes the time to `advance()`, so
 * it can be driven by a fake clock in tests.
 */
export class Wheel {
  readonly tickMs: number;
  readonly slots: number;
  private readonly mask: number;
  private readonly heads: Int32Array;
  private readonly counts: Int32Array;
  private next = new Int32Array(0);
  private prev = new Int32Array(0);
  private slotOf = new Int32Array(0);
  private due = new Float64Array(0);
  /** The last tick that was visited (absolute tick number). */
  private cursor: number;
  #size = 0;

  constructor(options: WheelOptions) {
    const { tickMs, slots, start } = options;
    if (!(tickMs > 0)) throw new TypeError(`tickMs must be a positive number: got ${tickMs}`);
    if (!Number.isInteger(slots) || slots < 2 || (slots & (slots - 1)) !== 0) {
      throw new TypeError(`slots must be a power of two ≥ 2: got ${slots}`);
    }
    this.tickMs = tickMs;
    this.slots = slots;
    this.mask = slots - 1;
    this.heads = new Int32Array(slots).fill(NONE);
    this.counts = new Int32Array(slots);
    this.cursor = Math.floor(start / tickMs);
  }

  /** Number of ids currently scheduled. */
  get size(): number {
    return this.#size;
  }

  /** Makes room for ids `0 … capacity - 1`. */
  ensureCapacity(capacity: number): void {
    const old = this.next.length;
    if (capacity <= old) return;
    const grow = <T extends Int32Array | Float64Array>(from: T, make: (n: number) => T, fill: number): T => {
      const to = make(capacity);
      to.set(from);
      to.fill(fill, old);
      return to;
    };
    this.next = grow(this.next, (n) => new Int32Array(n), NONE);
    this.prev = grow(this.prev, (n) => new Int32Array(n), NONE);
    this.slotOf = grow(this.slotOf, (n) => new Int32Array(n), NONE);
    this.due = grow(this.due, (n) => new Float64Array(n), 0);
  }

  /**
   * Schedules `id` (moving it if it was scheduled) to be visited at the first tick that starts
   * at or after `at`, or at the next tick if that one has passed.
   */
  schedule(id: number, at: number): void {
    if (this.slotOf[id] !== NONE) this.unlink(id);
    const tick = Math.max(Math.ceil(at / this.tickMs), this.cursor + 1);
    this.due[id] = at;
    this.link(id, tick & this.mask);
  }

  /** Removes `id` from the wheel; a no-op when it is not scheduled. */
  cancel(id: number): void {
    if (id < this.slotOf.length && this.slotOf[id] !== NONE) this.unlink(id);
  }

  /** Number of ids in the slot that tick `tick` visits. */
  load(tick: number): number {
    return this.counts[tick & this.mask]!;
  }

  /**
   * The start time of the least loaded tick from the one `schedule(id, from)` would use to the one
   * `schedule(id, to)` would use; the latest on a tie, so an id goes exactly where `to` puts it
   * when nothing needs spreading. With `steps`, grids are tried in turn: on a grid of `step`, only
   * the ticks whose number is a multiple of it count, and the grid is passed over when the range
   * holds none of them with fewer than `full` ids. When every grid is passed over, every tick
   * counts. Scans at most one revolution of slots per grid.
   */
  leastLoaded(from: number, to: number, steps: readonly number[] = [], full = Infinity): number {
    const last = Math.max(Math.ceil(to / this.tickMs), this.cursor + 1);
    const first = Math.max(Math.ceil(from / this.tickMs), this.cursor + 1, last - this.slots + 1);
    for (const step of steps) {
      const top = last - (last % step);
      if (step <= 1 || top < first) continue;
      const best = this.#leastLoadedTick(top, first, step);
      if (this.counts[best & this.mask]! < full) return best * this.tickMs;
    }
    return this.#leastLoadedTick(last, first, 1) * this.tickMs;
  }

  /** The least loaded of ticks `last`, `last - step`, … down to `first`; the latest on a tie. */
  #leastLoadedTick(last: number, first: number, step: number): number {
    let best = last;
    for (let tick = last - step; tick >= first; tick -= step) {
      if (this.counts[tick & this.mask]! < this.counts[best & this.mask]!) best = tick;
    }
    return best;
  }

  /**
   * Visits, tick by tick, every id due at or before `now` in the ticks since the last call.
   * After a stall longer than a revolution, one revolution is visited: that covers every slot.
   * `visit` must not schedule or cancel ids other than the one it is given.
   * Returns the number of ids visited.
   */
  advance(now: number, visit: Visit): number {
    const last = Math.floor(now / this.tickMs);
    if (last <= this.cursor) return 0;
    let visited = 0;
    const first = Math.max(this.cursor + 1, last - this.slots + 1);
    for (let tick = first; tick <= last; tick++) {
      const slot = tick & this.mask;
      let id = this.heads[slot]!;
      // Detach the slot's list, then put back what is not due and place what is visited.
      this.heads[slot] = NONE;
      this.counts[slot] = 0;
      this.cursor = tick;
      while (id !== NONE) {
        const following = this.next[id]!;
        this.slotOf[id] = NONE;
        this.#size -= 1;
        if (this.due[id]! <= now) {
          visited += 1;
          const at = visit(id, now, tick * this.tickMs);
          if (at !== Infinity && this.slotOf[id] === NONE) this.schedule(id, at);
        } else {
          this.link(id, slot);
        }
        id = following;
      }
    }
    this.cursor = last;
    return visited;
  }

  /**
   * The start time of the next tick whose slot holds an id, or `Infinity` when the wheel is empty.
   * The scan starts right after the last tick visited: when an `advance()` took longer than a tick
   * (many pings, a slow listener), the ticks that passed meanwhile hold ids already due, and they
   * come first (a time in the past: the caller fires at once). Only after more than a revolution
   * without an advance does it start at the tick of `now`: a slot found earlier would then be the
   * same slot one revolution too early.
   */
  nextTickTime(now = -Infinity): number {
    if (this.#size === 0) return Infinity;
    const nowTick = Math.floor(now / this.tickMs);
    const from = nowTick - this.cursor > this.slots ? nowTick : this.cursor + 1;
    for (let tick = from; tick < from + this.slots; tick++) {
      if (this.heads[tick & this.mask] !== NONE) return tick * this.tickMs;
    }
    return Infinity;
  }

  private link(id: number, slot: number): void {
    const head = this.heads[slot]!;
    this.next[id] = head;
    this.prev[id] = NONE;
    if (head !== NONE) this.prev[head] = id;
    this.heads[slot] = id;
    this.slotOf[id] = slot;
    this.counts[slot]! += 1;
    this.#size += 1;
  }

  private unlink(id: number): void {
    const slot = this.slotOf[id]!;
    const before = this.prev[id]!;
    const after = this.next[id]!;
    if (before !== NONE) this.next[before] = after;
    else this.heads[slot] = after;
    if (after !== NONE) this.prev[after] = before;
    this.slotOf[id] = NONE;
    this.counts[slot]! -= 1;
    this.#size -= 1;
  }
}
