/**
 * Summary of a latency histogram, in milliseconds. Percentiles and `max` are `null` before the
 * first sample.
 */
export interface LatencySummary {
  count: number;
  /** Sum of every sample (the `_sum` of a Prometheus histogram). */
  sum: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
  /**
   * Cumulative counts, as a Prometheus histogram has them: `{ le: 2.5, count }` counts the
   * samples ≤ 2.5 ms; the last bucket, `le: '+Inf'`, counts every sample.
   */
  buckets: HistogramBucket[];
}

/** One cumulative bucket of a {@link LatencySummary}: upper bound in ms, samples at or below it. */
export interface HistogramBucket {
  le: number | '+Inf';
  count: number;
}

/** Round-trip times: sub-millisecond on loopback, seconds on a congested mobile link. */
export const RTT_BOUNDS_MS: readonly number[] = [0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/** Detection latencies (last sign of life → termination): `interval + timeout`, from a second to minutes. */
export const DETECTION_BOUNDS_MS: readonly number[] = [100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000];

/** Upper bound of the first fine bucket, in ms: anything faster lands in bucket 0. */
const FIRST_BOUND_MS = 0.01;
/** Quarter-octave buckets: a percentile is off by at most ~19% (one bucket) of its value. */
const GROWTH = 2 ** 0.25;
const LOG_GROWTH = Math.log(GROWTH);
/** 0.01 ms × 2^(112/4) ≈ 2.7 × 10^6 ms: longer than any timeout the engine accepts. */
const FINE_BUCKETS = 112;

/**
 * A fixed-size histogram of latencies. It keeps two sets of counts: fine log buckets for the
 * percentiles, and coarse buckets with round bounds that Prometheus and the dashboard show
 * exactly. Recording allocates nothing and costs one logarithm and a short scan, so it can run
 * on every pong.
 */
export class LatencyHistogram {
  private readonly fine = new Uint32Array(FINE_BUCKETS);
  /** `coarse[i]`: samples in (bounds[i-1], bounds[i]]; the last one counts those above every bound. */
  private readonly coarse: Uint32Array;
  private total = 0;
  private sum = 0;
  private largest = 0;
  private smallest = Infinity;

  constructor(private readonly bounds: readonly number[] = RTT_BOUNDS_MS) {
    this.coarse = new Uint32Array(bounds.length + 1);
  }

  record(ms: number): void {
    if (!(ms >= 0)) return;
    const index = ms <= FIRST_BOUND_MS ? 0 : Math.min(FINE_BUCKETS - 1, Math.ceil(Math.log(ms / FIRST_BOUND_MS) / LOG_GROWTH));
    this.fine[index]! += 1;
    let bucket = 0;
    while (bucket < this.bounds.length && ms > this.bounds[bucket]!) bucket++;
    this.coarse[bucket]! += 1;
    this.total += 1;
    this.sum += ms;
    if (ms > this.largest) this.largest = ms;
    if (ms < this.smallest) this.smallest = ms;
  }

  get count(): number {
    return this.total;
  }

  /**
   * The value below which a fraction `q` (0 < q ≤ 1) of the samples fall: the upper bound of the
   * fine bucket holding that rank, clamped to the observed minimum and maximum. `null` when empty.
   */
  percentile(q: number): number | null {
    if (this.total === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < FINE_BUCKETS; i++) {
      seen += this.fine[i]!;
      if (seen >= rank) {
        const bound = FIRST_BOUND_MS * GROWTH ** i;
        return Math.min(this.largest, Math.max(this.smallest, bound));
      }
    }
    return this.largest;
  }

  summary(): LatencySummary {
    const buckets: HistogramBucket[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.coarse[i]!;
      buckets.push({ le: this.bounds[i]!, count: cumulative });
    }
    buckets.push({ le: '+Inf', count: this.total });
    return {
      count: this.total,
      sum: this.sum,
      p50: this.percentile(0.5),
      p90: this.percentile(0.9),
      p99: this.percentile(0.99),
      max: this.total === 0 ? null : this.largest,
      buckets,
    };
  }
}
