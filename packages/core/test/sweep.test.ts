/**
 * The rounds of the `maxBufferedAmount` pass, on a clock the test passes in: which ids are read
 * when, in slices spread over the period.
 */
import { SweepRounds } from '../src/sweep';

const PERIOD = 1_000;
const SLICE = 1_024;

/** One `take`: the ranges it read. */
function take(rounds: SweepRounds, now: number, length: number): [number, number][] {
  const ranges: [number, number][] = [];
  rounds.take(now, length, (from, to) => ranges.push([from, to]));
  return ranges;
}

describe('SweepRounds (fake clock)', () => {
  test('a table of up to one slice is read in one pass a period, the first a period after the start', () => {
    const rounds = new SweepRounds(PERIOD, 0, SLICE);
    expect(rounds.dueAt).toBe(PERIOD);
    expect(take(rounds, PERIOD - 1, 500)).toEqual([]);
    expect(take(rounds, PERIOD, 500)).toEqual([[0, 500]]);
    expect(rounds.dueAt).toBe(2 * PERIOD);
    expect(take(rounds, 2 * PERIOD - 1, 500)).toEqual([]);
    expect(take(rounds, 2 * PERIOD + 3, 800)).toEqual([[0, 800]]);
    // Anchored to the period, not to the late call.
    expect(rounds.dueAt).toBe(3 * PERIOD);
    // Late by more than half a period: still the same round.
    expect(take(rounds, 3 * PERIOD + 900, 800)).toEqual([[0, 800]]);
    expect(rounds.dueAt).toBe(4 * PERIOD);
  });

  test('a large table is read in slices spread over the period: 0 at its start, 1 at its middle, 2 and 3 at its quarters', () => {
    const rounds = new SweepRounds(PERIOD, 0, SLICE);
    const reads: [number, [number, number][]][] = [];
    for (let k = 0; k < 6; k++) {
      const at = rounds.dueAt;
      reads.push([at, take(rounds, at, 3_500)]);
    }
    expect(reads).toEqual([
      [1_000, [[0, SLICE]]],
      [1_250, [[2 * SLICE, 3 * SLICE]]],
      [1_500, [[SLICE, 2 * SLICE]]],
      [1_750, [[3 * SLICE, 3_500]]],
      [2_000, [[0, SLICE]]],
      [2_250, [[2 * SLICE, 3 * SLICE]]],
    ]);
  });

  test('driven by 5 ms ticks, every id of a table that grows is read once a period, never more than a period and a tick apart, in slices', () => {
    const rounds = new SweepRounds(PERIOD, 0, SLICE);
    const reads = new Map<number, number[]>();
    let widest = 0;
    for (let t = 0; t <= 10_000; t += 5) {
      // 2,000 ids, then 19,000 from 4.5 s on (in the middle of a round).
      rounds.take(t, t < 4_500 ? 2_000 : 19_000, (from, to) => {
        widest = Math.max(widest, to - from);
        for (let id = from; id < to; id++) {
          const at = reads.get(id);
          if (at) at.push(t);
          else reads.set(id, [t]);
        }
      });
    }
    expect(widest).toBe(SLICE);
    // Slices 0 and 1 keep their moments as the table grows: a period apart, to the tick. A new
    // slice whose moment had passed when it appeared is read at once, then at its moment.
    const gaps = { old: [Infinity, 0], all: [Infinity, 0] };
    let lateFirst = 0;
    let earlyLast = 0;
    for (let id = 0; id < 19_000; id++) {
      const at = reads.get(id) ?? [];
      // The first read within the first round (which begins a period after the start), or for
      // ids from 2,000 on, within a period and a tick of joining at 4.5 s.
      if (!(at[0]! <= (id < 2_000 ? 2 * PERIOD : 4_500 + PERIOD + 5))) lateFirst += 1;
      if (!(at[at.length - 1]! > 10_000 - PERIOD - 5)) earlyLast += 1;
      for (let i = 1; i < at.length; i++) {
        const gap = at[i]! - at[i - 1]!;
        for (const range of id < 2 * SLICE ? [gaps.old, gaps.all] : [gaps.all]) {
          range[0] = Math.min(range[0]!, gap);
          range[1] = Math.max(range[1]!, gap);
        }
      }
    }
    expect([lateFirst, earlyLast]).toEqual([0, 0]);
    expect(gaps.old[0]).toBeGreaterThanOrEqual(PERIOD - 5);
    expect(gaps.old[1]).toBeLessThanOrEqual(PERIOD + 5);
    expect(gaps.all[0]).toBeGreaterThan(0);
    expect(gaps.all[1]).toBeLessThanOrEqual(PERIOD + 5);
  });

  test('after a stall past the round, what was due is read at once and the next round begins then', () => {
    const rounds = new SweepRounds(PERIOD, 0, SLICE);
    expect(take(rounds, 1_000, 3_000)).toEqual([[0, SLICE]]);
    // Stalled from 1 s to 3.6 s, past the next round too: the rest of the round at once, then a
    // round that begins now.
    expect(take(rounds, 3_600, 3_000)).toEqual([[SLICE, 2 * SLICE], [2 * SLICE, 3_000], [0, SLICE]]);
    expect(rounds.dueAt).toBe(3_600 + PERIOD / 4);
  });

  test('an empty table costs one due time a period', () => {
    const rounds = new SweepRounds(PERIOD, 0, SLICE);
    expect(take(rounds, 1_000, 0)).toEqual([]);
    expect(rounds.dueAt).toBe(2_000);
    expect(take(rounds, 5_000, 0)).toEqual([]);
    expect(rounds.dueAt).toBe(6_000);
  });
});
