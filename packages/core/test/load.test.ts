/**
 * The load monitor's windows, from a stand-in for Node's event-loop delay histogram (values in
 * nanoseconds, each including the monitor's 10 ms resolution) and a clock the test passes in.
 */
import { LOAD_HALF_MS, LoadMonitor, monitorResolution, type DelayHistogram } from '../src/load';

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

/**
 * A monitor on two stand-in histograms. `add()` puts delays into both (what Node's two monitors
 * would both see), except into one just reset: Node's drops the first delay after a reset.
 */
function monitor(threshold = 100): { load: LoadMonitor; histograms: FakeHistogram[]; add: (...delaysMs: number[]) => void } {
  const histograms: FakeHistogram[] = [];
  const load = new LoadMonitor({
    threshold,
    now: 0,
    resolution: RESOLUTION_MS,
    createHistogram: () => {
      const histogram = new FakeHistogram();
      histograms.push(histogram);
      return histogram;
    },
  });
  return { load, histograms, add: (...delaysMs) => histograms.forEach((h) => h.add(...delaysMs)) };
}

describe('LoadMonitor', () => {
  test('enables both histograms at once and disables them on stop()', () => {
    const { load, histograms } = monitor();
    expect(histograms.map((h) => h.enabled)).toEqual([true, true]);
    load.stop();
    expect(histograms.map((h) => h.enabled)).toEqual([false, false]);
  });

  test('samples at a quarter of the threshold, from 10 to 50 ms, and takes that resolution off each delay', () => {
    expect([20, 40, 100, 150, 200, 1000].map(monitorResolution)).toEqual([10, 10, 25, 38, 50, 50]);
    const resolutions: number[] = [];
    const histogram = new FakeHistogram();
    const load = new LoadMonitor({
      threshold: 100,
      now: 0,
      createHistogram: (resolution) => {
        resolutions.push(resolution);
        return histogram;
      },
    });
    expect(resolutions).toEqual([25, 25]);
    expect(load.resolution).toBe(25);
    // The stand-in adds 10 ms to each delay; at 25 ms, an idle loop reads 25 ms.
    histogram.add(15, 55);
    load.sample(LOAD_HALF_MS);
    expect(load.recent.maxMs).toBe(40);
    expect(load.recent.p50Ms).toBe(0);
  });

  test('the figures are updated once a half has passed; they are the delays less the resolution', () => {
    const { load, add } = monitor();
    add(0, 0, 2, 40);
    expect(load.sample(LOAD_HALF_MS - 1)).toBe(false);
    expect(load.recent).toEqual({ meanMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 });
    expect(load.sample(LOAD_HALF_MS)).toBe(false); // updated, and still not overloaded
    expect(load.recent).toEqual({ meanMs: 10.5, p50Ms: 0, p99Ms: 40, maxMs: 40 });
    expect(load.halfEnd).toBe(2 * LOAD_HALF_MS);
  });

  test('each histogram covers the latest second: a delay counts for two halves, then no more', () => {
    const { load, add } = monitor();
    add(0);
    expect(load.sample(500)).toBe(false);
    add(60);
    load.sample(1000);
    expect(load.recent.maxMs).toBe(60);
    add(0);
    load.sample(1500);
    expect(load.recent.maxMs).toBe(60);
    add(0);
    load.sample(2000);
    expect(load.recent.maxMs).toBe(0);
  });

  test('a stall right after one histogram was reset (which Node drops) is still seen, in the other', () => {
    const { load, histograms, add } = monitor(100);
    add(0);
    load.sample(500); // histogram 0 reset here
    histograms[1]!.add(300); // the stall, lost by histogram 0 right after its reset
    histograms[0]!.add(0);
    expect(load.sample(1000)).toBe(true);
    expect(load.recent.maxMs).toBe(300);
    expect(load.overloaded).toBe(true);
  });

  test('overloaded from the half whose latest second holds a delay over the threshold, until one that does not', () => {
    const { load, add } = monitor(100);
    add(0, 100);
    expect(load.sample(500)).toBe(false); // exactly the threshold is not over it
    load.sample(1000);
    add(0, 101);
    expect(load.sample(1500)).toBe(true);
    expect(load.overloaded).toBe(true);
    add(250);
    expect(load.sample(2000)).toBe(false); // still overloaded: no change to report
    add(5, 5);
    expect(load.sample(2500)).toBe(false); // the other histogram still holds the 250
    expect(load.sample(3000)).toBe(true);
    expect(load.overloaded).toBe(false);
  });

  test('a late tick counts like a delay, for the latest second', () => {
    const { load, add } = monitor(100);
    add(1);
    load.noteLateness(30);
    load.noteLateness(150);
    load.noteLateness(20);
    expect(load.sample(500)).toBe(true);
    expect(load.recentLateMs).toBe(150);
    add(1);
    expect(load.sample(1000)).toBe(false);
    expect(load.recentLateMs).toBe(150);
    add(1);
    expect(load.sample(1500)).toBe(true);
    expect(load.recentLateMs).toBe(0);
    expect(load.overloaded).toBe(false);
  });

  test('a histogram without a single sample since its reset saw one long block: its length counts as the delay', () => {
    const { load } = monitor(100);
    expect(load.sample(1500)).toBe(true);
    expect(load.recent.maxMs).toBe(1500 - RESOLUTION_MS);
    expect(load.overloaded).toBe(true);
  });
});
