/** Summary of round-trip times in milliseconds; percentiles are `null` before the first sample. */
export interface RttSummary {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

/** Upper bound of the first bucket, in ms: anything faster lands in bucket 0. */
const FIRST_BOUND_MS = 0.01;
/** Quarter-octave buckets: a percentile is off by at most ~19% (one bucket) of its value. */
const GROWTH = 2 ** 0.25;
const LOG_GROWTH = Math.log(GROWTH);
/** 0.01 ms × 2^(112/4) ≈ 2.7 × 10^6 ms: longer than any timeout the engine accepts. */
const BUCKETS = 112;

/**
 * A fixed-size log histogram of round-trip times. Recording allocates nothing and costs one
 * logarithm, so it can run on every pong.
 */
export class RttHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  private total = 0;
  private largest = 0;
  private smallest = Infinity;

  record(rttMs: number): void {
    if (!(rttMs >= 0)) return;
    const index = rttMs <= FIRST_BOUND_MS ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(rttMs / FIRST_BOUND_MS) / LOG_GROWTH));
    this.counts[index]! += 1;
    this.total += 1;
    if (rttMs > this.largest) this.largest = rttMs;
    if (rttMs < this.smallest) this.smallest = rttMs;
  }

  get count(): number {
    return this.total;
  }

  /**
   * The value below which a fraction `q` (0 < q ≤ 1) of the samples fall: the upper bound of the
   * bucket holding that rank, clamped to the observed minimum and maximum. `null` when empty.
   */
  percentile(q: number): number | null {
    if (this.total === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        const bound = FIRST_BOUND_MS * GROWTH ** i;
        return Math.min(this.largest, Math.max(this.smallest, bound));
      }
    }
    return this.largest;
  }

  summary(): RttSummary {
    return {
      count: this.total,
      p50: this.percentile(0.5),
      p90: this.percentile(0.9),
      p99: this.percentile(0.99),
      max: this.total === 0 ? null : this.largest,
    };
  }
}
