import { LatencyHistogram } from '../src/histogram';

/** One quarter-octave bucket: the most a percentile may differ from the exact value. */
const BUCKET_ERROR = 2 ** 0.25;

function exactPercentile(sorted: number[], q: number): number {
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
}

describe('LatencyHistogram', () => {
  test('is empty before the first sample', () => {
    const empty = new LatencyHistogram([1, 10]).summary();
    expect(empty).toEqual({
      count: 0,
      sum: 0,
      p50: null,
      p90: null,
      p99: null,
      max: null,
      buckets: [
        { le: 1, count: 0 },
        { le: 10, count: 0 },
        { le: '+Inf', count: 0 },
      ],
    });
  });

  test.each([
    ['uniform 1…1000 ms', Array.from({ length: 1000 }, (_, i) => i + 1)],
    ['loopback-like 0.05…3 ms', Array.from({ length: 5000 }, (_, i) => 0.05 + ((i * 7919) % 2950) / 1000)],
    ['bimodal with a slow tail', [...Array(900).fill(0.8), ...Array(90).fill(40), ...Array(10).fill(2500)]],
  ])('percentiles of %s are within one bucket of the exact values, max exact', (_name, samples) => {
    const histogram = new LatencyHistogram();
    for (const s of samples) histogram.record(s);
    const sorted = [...samples].sort((a, b) => a - b);
    const summary = histogram.summary();
    expect(summary.count).toBe(samples.length);
    expect(summary.max).toBe(sorted[sorted.length - 1]);
    for (const [key, q] of [['p50', 0.5], ['p90', 0.9], ['p99', 0.99]] as const) {
      const exact = exactPercentile(sorted, q);
      const estimate = summary[key]!;
      expect(estimate).toBeGreaterThanOrEqual(exact / BUCKET_ERROR);
      expect(estimate).toBeLessThanOrEqual(exact * BUCKET_ERROR);
    }
  });

  test('a single sample is reported exactly', () => {
    const histogram = new LatencyHistogram();
    histogram.record(12.5);
    expect(histogram.summary()).toMatchObject({ count: 1, sum: 12.5, p50: 12.5, p90: 12.5, p99: 12.5, max: 12.5 });
  });

  test('buckets count the samples at or below each bound, cumulatively, and sum them', () => {
    const histogram = new LatencyHistogram([1, 2.5, 10]);
    for (const ms of [0, 0.3, 1, 1.0001, 2.5, 9.99, 10, 10.01, 1e6]) histogram.record(ms);
    const summary = histogram.summary();
    expect(summary.buckets).toEqual([
      { le: 1, count: 3 },
      { le: 2.5, count: 5 },
      { le: 10, count: 7 },
      { le: '+Inf', count: 9 },
    ]);
    expect(summary.sum).toBeCloseTo(0.3 + 1 + 1.0001 + 2.5 + 9.99 + 10 + 10.01 + 1e6, 6);
  });

  test('ignores negative and non-numeric samples', () => {
    const histogram = new LatencyHistogram();
    histogram.record(-1);
    histogram.record(NaN);
    expect(histogram.count).toBe(0);
  });
});
