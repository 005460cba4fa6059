import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** The figures cover the latest second: two halves of this length, updated at the end of each. */
export const LOAD_HALF_MS = 500;

/** The finest and the coarsest resolution of the event-loop delay monitor, ms (Node's default is the finest). */
const MIN_RESOLUTION_MS = 10;
const MAX_RESOLUTION_MS = 50;

/**
 * How often the event-loop delay monitor samples, in ms, for an overload `threshold`: a quarter
 * of it, from 10 to 50 ms (25 ms for the default 100). Each sample is a timer wakeup, and at 10 ms
 * the two monitors cost an otherwise idle process 5–6 ms of CPU a second. A stall reads at most
 * one resolution shorter than it was: one of 125 ms still counts as an overload at 100.
 */
export function monitorResolution(threshold: number): number {
  return Math.min(MAX_RESOLUTION_MS, Math.max(MIN_RESOLUTION_MS, Math.round(threshold / 4)));
}

/** The event-loop delay over the latest second, in ms: how much later than due the loop ran a timer. */
export interface EventLoopDelay {
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** The part of Node's `IntervalHistogram` the monitor reads (nanoseconds). */
export type DelayHistogram = Pick<IntervalHistogram, 'count' | 'mean' | 'max' | 'percentile' | 'reset' | 'enable' | 'disable'>;

export interface LoadMonitorOptions {
  /** Longest event-loop delay or tick lateness (ms) of the latest second that is not an overload. */
  threshold: number;
  /** The clock reading at which the monitor starts. */
  now: number;
  /** How often the delay histograms sample, ms. @default {@link monitorResolution}(threshold) */
  resolution?: number;
  /** Makes the two delay histograms. @default `perf_hooks.monitorEventLoopDelay` at `resolution` */
  createHistogram?: (resolution: number) => DelayHistogram;
}

const NO_DELAY: EventLoopDelay = { meanMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };

function createDelayHistogram(resolution: number): DelayHistogram {
  return monitorEventLoopDelay({ resolution });
}

/**
 * Watches how busy the process is over the latest second: the event-loop delay (Node's monitor,
 * whose own timers are `unref()`ed) and the lateness of the engine's ticks. The process counts as
 * overloaded while the longest delay of either kind in the latest second exceeds the threshold.
 * The caller drives it with `sample(now)` (due every {@link LOAD_HALF_MS}); nothing here sets a
 * timer of its own.
 *
 * Two delay histograms take turns, each reset every second, half a second apart. Node's
 * `reset()` also forgets when the monitor last ran, so the first delay after a reset is never
 * recorded: a stall that starts right then is missed by that histogram, and caught by the other.
 */
export class LoadMonitor {
  readonly threshold: number;
  /** How often the delay histograms sample, ms. */
  readonly resolution: number;
  /** The event-loop delay of the latest second, as of the latest half's end. */
  recent: EventLoopDelay = NO_DELAY;
  /** The longest tick lateness of the latest second, as of the latest half's end, ms. */
  recentLateMs = 0;
  overloaded = false;
  private readonly histograms: [DelayHistogram, DelayHistogram];
  /** When each histogram was last reset (or started). */
  private readonly since: [number, number];
  /** The histogram to read and reset at the end of the current half. */
  private turn: 0 | 1 = 0;
  private halfStart: number;
  private previousHalfLateMs = 0;
  private halfLateMs = 0;

  constructor(options: LoadMonitorOptions) {
    const create = options.createHistogram ?? createDelayHistogram;
    this.threshold = options.threshold;
    this.resolution = options.resolution ?? monitorResolution(options.threshold);
    this.halfStart = options.now;
    this.histograms = [create(this.resolution), create(this.resolution)];
    this.since = [options.now, options.now];
    for (const histogram of this.histograms) histogram.enable();
  }

  /** When the current half ends. */
  get halfEnd(): number {
    return this.halfStart + LOAD_HALF_MS;
  }

  /** A tick of the engine fired `lateMs` after it was due. */
  noteLateness(lateMs: number): void {
    if (lateMs > this.halfLateMs) this.halfLateMs = lateMs;
  }

  /**
   * Ends the current half when it is due: the figures then cover the latest second. Returns true
   * when `overloaded` changed with it.
   */
  sample(now: number): boolean {
    if (now < this.halfEnd) return false;
    const h = this.histograms[this.turn];
    // The monitor's samples include its own resolution: an idle loop reads the resolution.
    const delay = (ns: number): number => Math.max(0, ns / 1e6 - this.resolution);
    if (h.count > 0) {
      this.recent = { meanMs: delay(h.mean), p50Ms: delay(h.percentile(50)), p99Ms: delay(h.percentile(99)), maxMs: delay(h.max) };
    } else {
      // Not one sample since its reset: the loop was blocked all along (the monitor's timer has
      // not run yet to record it).
      const blocked = Math.max(0, now - this.since[this.turn] - this.resolution);
      this.recent = { meanMs: blocked, p50Ms: blocked, p99Ms: blocked, maxMs: blocked };
    }
    h.reset();
    this.since[this.turn] = now;
    this.turn = this.turn === 0 ? 1 : 0;
    this.recentLateMs = Math.max(this.previousHalfLateMs, this.halfLateMs);
    this.previousHalfLateMs = this.halfLateMs;
    this.halfLateMs = 0;
    this.halfStart = now;
    const overloaded = Math.max(this.recent.maxMs, this.recentLateMs) > this.threshold;
    if (overloaded === this.overloaded) return false;
    this.overloaded = overloaded;
    return true;
  }

  stop(): void {
    for (const histogram of this.histograms) histogram.disable();
  }
}
