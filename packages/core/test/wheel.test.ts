import { pingGrids } from '../src/liveness';
import { resolveOptions } from '../src/options';
import { Wheel } from '../src/wheel';

const TICK = 5;
const SLOTS = 1024;

function makeWheel(capacity: number, start = 0): Wheel {
  const wheel = new Wheel({ tickMs: TICK, slots: SLOTS, start });
  wheel.ensureCapacity(capacity);
  return wheel;
}

describe('Wheel (fake clock)', () => {
  test('visits an id in the first tick at or after its due time, never before', () => {
    const wheel = makeWheel(500);
    const due = new Map<number, number>();
    for (let id = 0; id < 500; id++) {
      const at = 1 + ((id * 7919) % 20_000) + (id % 3) * 0.37; // spread over 4 revolutions, fractional times
      due.set(id, at);
      wheel.schedule(id, at);
    }
    const visitedAt = new Map<number, number>();
    for (let now = 0; now <= 21_000; now += 1) {
      wheel.advance(now, (id, t) => {
        visitedAt.set(id, t);
        return Infinity;
      });
    }
    expect(visitedAt.size).toBe(500);
    for (const [id, at] of due) {
      const t = visitedAt.get(id)!;
      expect(t).toBeGreaterThanOrEqual(at);
      expect(t).toBeLessThanOrEqual(Math.ceil(at / TICK) * TICK);
    }
    expect(wheel.size).toBe(0);
  });

  test('spreads ids due at even times evenly over the slots, and one tick visits only its own slot', () => {
    const n = 19_000;
    const interval = 30_000; // longer than a revolution (5,120 ms): slots are shared by several rounds
    const wheel = makeWheel(n);
    for (let id = 0; id < n; id++) wheel.schedule(id, 1 + (id * interval) / n);
    // A slot holds the ids of every revolution that passes over it: 5 or 6 rounds of ~3.2 ids here.
    const perTick = Math.ceil(n / (interval / TICK));
    const loads = Array.from({ length: SLOTS }, (_, tick) => wheel.load(tick));
    expect(Math.max(...loads)).toBeLessThanOrEqual(Math.ceil(n / SLOTS) + perTick);
    expect(Math.min(...loads)).toBeGreaterThanOrEqual(Math.floor(n / SLOTS) - perTick);

    let most = 0;
    let total = 0;
    for (let now = TICK; now <= interval + TICK; now += TICK) {
      const visited = wheel.advance(now, () => Infinity);
      most = Math.max(most, visited);
      total += visited;
    }
    expect(total).toBe(n);
    expect(most).toBeLessThanOrEqual(perTick + 1);
  });

  test('does not drift: a periodic id stays within one tick of start + k × period under late timers', () => {
    const wheel = makeWheel(1);
    const period = 1_003;
    let expected = period;
    wheel.schedule(0, expected);
    let visits = 0;
    let worst = 0;
    let jitter = 12345;
    for (let tick = 1; visits < 1_000; tick++) {
      jitter = (jitter * 1103515245 + 12345) % 2 ** 31;
      const now = tick * TICK + (jitter % 300) / 100; // each tick's timer fires 0–3 ms late
      wheel.advance(now, (_id, t) => {
        worst = Math.max(worst, t - expected);
        expect(t).toBeGreaterThanOrEqual(expected);
        visits += 1;
        expected += period;
        return expected;
      });
    }
    expect(expected).toBe(1_001 * period);
    expect(worst).toBeLessThanOrEqual(TICK + 3);
  });

  test('after a stall longer than a revolution, every overdue id is visited exactly once', () => {
    const wheel = makeWheel(3_000);
    for (let id = 0; id < 3_000; id++) wheel.schedule(id, 10 + id * 3);
    const seen = new Uint8Array(3_000);
    const visited = wheel.advance(60_000, (id) => {
      seen[id]! += 1;
      return Infinity;
    });
    expect(visited).toBe(3_000);
    expect(seen.every((count) => count === 1)).toBe(true);
    expect(wheel.nextTickTime()).toBe(Infinity);
  });

  test('an id scheduled in the past is visited at the next tick, not lost', () => {
    const wheel = makeWheel(1);
    wheel.advance(100, () => Infinity);
    wheel.schedule(0, 50);
    expect(wheel.nextTickTime()).toBe(105);
    expect(wheel.advance(105, () => Infinity)).toBe(1);
  });

  test('schedule moves an id and cancel removes it: no double visit, no stale visit', () => {
    const wheel = makeWheel(3);
    wheel.schedule(0, 10);
    wheel.schedule(0, 500); // moved
    wheel.schedule(1, 10);
    wheel.cancel(1);
    wheel.cancel(1); // twice is harmless
    wheel.schedule(2, 20);
    const visits: number[] = [];
    for (let now = 0; now <= 1_000; now += TICK) wheel.advance(now, (id) => (visits.push(id), Infinity));
    expect(visits).toEqual([2, 0]);
  });

  test('nextTickTime points at the next occupied tick; growing capacity keeps scheduled ids', () => {
    const wheel = makeWheel(2, 1_000);
    expect(wheel.nextTickTime()).toBe(Infinity);
    wheel.schedule(1, 1_212);
    expect(wheel.nextTickTime()).toBe(1_215);
    wheel.ensureCapacity(4_096);
    wheel.schedule(4_000, 1_100);
    expect(wheel.nextTickTime()).toBe(1_100);
    const visits: number[] = [];
    wheel.advance(1_300, (id) => (visits.push(id), Infinity));
    expect(visits).toEqual([4_000, 1]);
  });

  test('after an advance that took longer than a tick, nextTickTime(now) is the first tick it did not visit, though already past', () => {
    const wheel = makeWheel(3);
    wheel.schedule(0, 100);
    wheel.schedule(1, 110);
    wheel.schedule(2, 400);
    wheel.advance(100, () => Infinity); // visits id 0; its work lasts until 160
    expect(wheel.nextTickTime(160)).toBe(110);
    const visits: number[] = [];
    wheel.advance(160, (id) => (visits.push(id), Infinity));
    expect(visits).toEqual([1]);
    expect(wheel.nextTickTime(160)).toBe(400);
  });

  test('after an idle spell, nextTickTime(now) is the id\'s own tick, not its slot one revolution earlier', () => {
    const wheel = makeWheel(1);
    wheel.advance(10, () => Infinity); // then nothing for 20 s: the cursor stays at tick 2
    const now = 20_000;
    wheel.schedule(0, now + 1_000);
    expect(wheel.nextTickTime(now)).toBe(now + 1_000);
    // Without the clock, the first tick after the stale cursor with the same slot is years too early.
    expect(wheel.nextTickTime()).toBeLessThan(now);
  });

  test('leastLoaded on a grid: ids go to every step-th tick while one there holds fewer than full, then to every tick of the window', () => {
    const wheel = makeWheel(1_000);
    const due = 10_000; // tick 2,000
    const window = 500; // ticks 1,900 … 2,000: the grid of 20 holds 1,900, 1,920, … 2,000
    for (let id = 0; id < 60; id++) wheel.schedule(id, wheel.leastLoaded(due - window, due, [20], 10));
    const grid = [1_900, 1_920, 1_940, 1_960, 1_980, 2_000];
    expect(grid.map((tick) => wheel.load(tick))).toEqual([10, 10, 10, 10, 10, 10]);
    // Full: the rest spread over every tick of the window, as without a grid.
    for (let id = 60; id < 1_000; id++) wheel.schedule(id, wheel.leastLoaded(due - window, due, [20], 10));
    const loads: number[] = [];
    for (let tick = 1_900; tick <= 2_000; tick++) loads.push(wheel.load(tick));
    expect(loads.reduce((a, b) => a + b, 0)).toBe(1_000);
    expect(Math.max(...loads)).toBeLessThanOrEqual(Math.ceil(1_000 / loads.length) + 1);
  });

  test('leastLoaded with two grids: the coarse one fills first, then the fine one, then every tick', () => {
    const wheel = makeWheel(1_000);
    const due = 10_000; // tick 2,000
    const window = 500; // ticks 1,900 … 2,000: 6 on the grid of 20, 21 on the grid of 5
    const place = (ids: number): void => {
      for (let i = 0; i < ids; i++) wheel.schedule(wheel.size, wheel.leastLoaded(due - window, due, [20, 5], 10));
    };
    const loads = (step: number): number[] => {
      const out: number[] = [];
      for (let tick = 1_900; tick <= 2_000; tick += step) out.push(wheel.load(tick));
      return out;
    };
    place(60);
    expect(loads(20)).toEqual([10, 10, 10, 10, 10, 10]);
    place(150);
    expect(loads(5)).toEqual(new Array(21).fill(10));
    // Nothing off the fine grid until it is full.
    expect(loads(1).reduce((a, b) => a + b, 0)).toBe(210);
    place(101);
    expect(loads(1).reduce((a, b) => a + b, 0)).toBe(311);
    expect(Math.min(...loads(1))).toBeGreaterThanOrEqual(1);
  });

  test('pingGrids: about one tick per 128 connections in an interval, and as many in the spread window alone for connections that arrive together', () => {
    const grids = (interval: number, connections: number): number[] => pingGrids(resolveOptions({ interval, timeout: 500 }), connections);
    // 1 s: 200 ticks, a 250 ms window of 50. 1,000 connections need 8 ticks: every 25th (8 in
    // an interval, 2 in the window), then every 5th (10 in the window).
    expect(grids(1_000, 1_000)).toEqual([25, 5]);
    expect(grids(1_000, 10)).toEqual([50]);
    expect(grids(1_000, 19_000)).toEqual([1]);
    // 30 s: 6,000 ticks, a 2.5 s window of 500. 19,000 connections need 149 ticks.
    expect(grids(30_000, 19_000)).toEqual([40, 3]);
    expect(grids(30_000, 100_000)).toEqual([6]);
  });

  test('leastLoaded spreads a burst that falls due together evenly over its window, and leaves a lone id at its due time', () => {
    const wheel = makeWheel(1_001);
    const due = 10_000;
    const window = 500; // 100 ticks
    wheel.schedule(1_000, wheel.leastLoaded(due - window, due));
    expect(wheel.nextTickTime(due - window)).toBe(due); // nothing to spread: as late as allowed
    for (let id = 0; id < 1_000; id++) wheel.schedule(id, wheel.leastLoaded(due - window, due));
    const loads: number[] = [];
    for (let tick = (due - window) / TICK; tick <= due / TICK; tick++) loads.push(wheel.load(tick));
    expect(loads.reduce((a, b) => a + b, 0)).toBe(1_001);
    expect(Math.max(...loads)).toBeLessThanOrEqual(Math.ceil(1_001 / loads.length) + 1);
    // Every id is visited inside the window, none before it.
    let first = Infinity;
    let last = -Infinity;
    for (let now = 0; now <= due + TICK; now += TICK) {
      wheel.advance(now, (_id, t) => {
        first = Math.min(first, t);
        last = Math.max(last, t);
        return Infinity;
      });
    }
    expect(first).toBeGreaterThanOrEqual(due - window);
    expect(last).toBeLessThanOrEqual(due);
  });

  test('rejects a slot count that is not a power of two', () => {
    expect(() => new Wheel({ tickMs: 5, slots: 1000, start: 0 })).toThrow(TypeError);
  });
});
