/**
 * The load monitor's windows, from a stand-in for Node's event-loop delay histogram (values in
 * nanoseconds, each including the monitor's 10 ms resolution) and a clock the test passes in.
 */
import { LOAD_WINDOW_MS, LoadMonitor, type DelayHistogram } from '../src/load';

const NS_PER_MS = 1e6;
const RESOLUTION_MS = 10;

/** Holds samples (ms of delay beyond the resolution) until reset. */
class FakeHistogram implements DelayHistogram {
  samples: number[] = [];
  enabled = false;

  add(...delaysMs: number[]): void {
    this.samples.push(...delaysMs.map((d) => (d + RESOLUTION_MS) * NS_PER_MS));
  }
  get count(): number {
    return this.samples.length;
  }
  get mean(): number {
    return this.samples.reduce((a, b) => a + b, 0) / this.samples.length;
  }
  get max(): number {
    return Math.max(...this.samples);
  }
  percentile(p: number): number {
    const sorted = [...this.samples].sort((a, b) => a - b);
    return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
  }
  reset(): void {
    this.samples = [];
  }
  enable(): boolean {
    this.enabled = true;
    return true;
  }
  disable(): boolean {
    this.enabled = false;
    return true;
  }
}

function monitor(threshold = 100): { load: LoadMonitor; histogram: FakeHistogram } {
  const histogram = new FakeHistogram();
  return { load: new LoadMonitor({ threshold, now: 0, histogram }), histogram };
}

describe('LoadMonitor', () => {
  test('enables the histogram at once and disables it on stop()', () => {
    const { load, histogram } = monitor();
    expect(histogram.enabled).toBe(true);
    load.stop();
    expect(histogram.enabled).toBe(false);
  });

  test('a window closes only once it has lasted LOAD_WINDOW_MS; its figures are the delays less the resolution', () => {
    const { load, histogram } = monitor();
    histogram.add(0, 0, 2, 40);
    expect(load.sample(LOAD_WINDOW_MS - 1)).toBe(false);
    expect(load.recent).toEqual({ meanMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 });
    expect(load.sample(LOAD_WINDOW_MS)).toBe(false); // closed, and still not overloaded
    expect(load.recent).toEqual({ meanMs: 10.5, p50Ms: 0, p99Ms: 40, maxMs: 40 });
    expect(histogram.count).toBe(0);
    expect(load.windowEnd).toBe(2 * LOAD_WINDOW_MS);
  });

  test('overloaded from the window whose longest delay exceeds the threshold, until a window that does not', () => {
    const { load, histogram } = monitor(100);
    histogram.add(0, 100);
    expect(load.sample(1000)).toBe(false); // exactly the threshold is not over it
    histogram.add(0, 101);
    expect(load.sample(2000)).toBe(true);
    expect(load.overloaded).toBe(true);
    histogram.add(250);
    expect(load.sample(3000)).toBe(false); // still overloaded: no change to report
    expect(load.overloaded).toBe(true);
    histogram.add(5, 5);
    expect(load.sample(4000)).toBe(true);
    expect(load.overloaded).toBe(false);
  });

  test('a late tick counts like a delay, for the window it was seen in only', () => {
    const { load, histogram } = monitor(100);
    histogram.add(1);
    load.noteLateness(30);
    load.noteLateness(150);
    load.noteLateness(20);
    expect(load.sample(1000)).toBe(true);
    expect(load.recentLateMs).toBe(150);
    histogram.add(1);
    expect(load.sample(2000)).toBe(true);
    expect(load.recentLateMs).toBe(0);
    expect(load.overloaded).toBe(false);
  });

  test('a window without a single sample was one long block: its length counts as the delay', () => {
    const { load } = monitor(100);
    expect(load.sample(1500)).toBe(true);
    expect(load.recent.maxMs).toBe(1500 - RESOLUTION_MS);
    expect(load.overloaded).toBe(true);
  });
});
