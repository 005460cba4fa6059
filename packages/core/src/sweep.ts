/**
 * When each part of the table is due for a pass that reads every connection once a period (the
 * `maxBufferedAmount` queues: Liveness.sweepBuffers): in slices of {@link SLICE_IDS} ids, each at
 * its own moment of the period. One pass over 19,000 connections held the event loop for about
 * 2 ms; a slice takes about 0.4 ms. A slice is read when it falls due, by a tick that runs anyway
 * or by the engine's timer, so each id is read once a period, late only by as much as the timer
 * is. A slice that falls between ticks costs a wakeup: 5 a second at 19,000 connections, 1 with
 * up to 4,096.
 *
 * Slice `k`'s moment does not depend on how many slices there are: it is `k`'s bits reversed, in
 * {@link SLOTS} slots of the period (slice 0 at its start, 1 at the middle, 2 and 3 at the
 * quarters, …). Any number of slices is then spread evenly, and a table that grows moves no
 * slice, so no id waits longer than a period between two reads.
 */
export const SLICE_IDS = 4_096;
/** The moments of a period that slices can fall on. */
const SLOTS = 1_024;
const SLOT_BITS = 10;

/** The slot of slice `slice`: its number's lowest {@link SLOT_BITS} bits, reversed. */
function slotOf(slice: number): number {
  let slot = 0;
  for (let bit = 0, k = slice; bit < SLOT_BITS; bit++, k >>= 1) slot = (slot << 1) | (k & 1);
  return slot;
}

export class SweepRounds {
  /** When the current round began. */
  #start: number;
  /** The last slot of the current round whose slices were read (-1: none yet). */
  #done = -1;
  /** The next slot that holds a slice (as the table was at the latest `take`); SLOTS: none, the round's end. */
  #next = 0;
  #dueAt: number;

  constructor(
    private readonly periodMs: number,
    now: number,
    private readonly sliceIds = SLICE_IDS,
  ) {
    // The first round begins a period from now: nothing was tracked before.
    this.#start = now + periodMs;
    this.#dueAt = this.#start;
  }

  /** When the next slice is due (as the table was at the latest `take`). */
  get dueAt(): number {
    return this.#dueAt;
  }

  /**
   * Calls `read(from, to)` for each slice of a table of `length` ids that is due by `now`. A round
   * that has passed is over; the next begins a period after it began, or now, after a stall that
   * ran past that one too.
   */
  take(now: number, length: number, read: (from: number, to: number) => void): void {
    if (now < this.#dueAt) return;
    const slices = Math.ceil(length / this.sliceIds);
    while (now >= this.#dueAt) {
      // At least the slot that fell due (the division may round below it).
      const reached = Math.min(SLOTS - 1, Math.max(this.#next, Math.floor(((now - this.#start) * SLOTS) / this.periodMs)));
      // The slices due now are read; the earliest of those still to come is the next.
      let next = SLOTS;
      for (let slice = 0; slice < slices; slice++) {
        const slot = slotOf(slice);
        if (slot <= this.#done) continue;
        if (slot <= reached) read(slice * this.sliceIds, Math.min(length, (slice + 1) * this.sliceIds));
        else if (slot < next) next = slot;
      }
      this.#done = reached;
      if (reached === SLOTS - 1) {
        // The next round, from its first slice (slice 0, at slot 0); the slots of it that have
        // passed are read in the next turn of the loop, unless it has passed whole: then it
        // begins now.
        this.#start += this.periodMs;
        if (now >= this.#start + this.periodMs) this.#start = now;
        this.#done = -1;
        next = slices > 0 ? 0 : SLOTS;
      }
      this.#next = next;
      this.#dueAt = this.#start + (next * this.periodMs) / SLOTS;
    }
  }
}
