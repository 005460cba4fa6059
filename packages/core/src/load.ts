import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** How long one window of the load figures lasts, in ms: `stats()` reports the latest full one. */
export const LOAD_WINDOW_MS = 1_000;

/** Resolution of Node's event-loop delay monitor, in ms (its own default). */
const RESOLUTION_MS = 10;

/** The event-loop delay of one window, in ms: how much later than due the loop ran a timer. */
export interface EventLoopDelay {
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** The part of Node's `IntervalHistogram` the monitor reads (nanoseconds). */
export type DelayHistogram = Pick<IntervalHistogram, 'count' | 'mean' | 'max' | 'percentile' | 'reset' | 'enable' | 'disable'>;

export interface LoadMonitorOptions {
  /** Longest event-loop delay or tick lateness (ms) of a window that is not an overload. */
  threshold: number;
  /** The clock reading at which the first window starts. */
  now: number;
  /** Where the delays come from. @default `perf_hooks.monitorEventLoopDelay()`, enabled here */
  histogram?: DelayHistogram;
}

const NO_DELAY: EventLoopDelay = { meanMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };

/**
 * Watches how busy the process is, in windows of {@link LOAD_WINDOW_MS}: the event-loop delay
 * (Node's monitor, whose own timer is `unref()`ed) and the lateness of the engine's ticks. The
 * process counts as overloaded while the latest window's longest delay of either kind exceeds the
 * threshold. The caller drives the windows with `sample(now)`; nothing here sets a timer.
 */
export class LoadMonitor {
  readonly threshold: number;
  /** The latest full window's event-loop delay. */
  recent: EventLoopDelay = NO_DELAY;
  /** The latest full window's longest tick lateness, ms. */
  recentLateMs = 0;
  overloaded = false;
  private readonly histogram: DelayHistogram;
  private windowStart: number;
  private windowLateMs = 0;

  constructor(options: LoadMonitorOptions) {
    this.threshold = options.threshold;
    this.windowStart = options.now;
    this.histogram = options.histogram ?? monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    this.histogram.enable();
  }

  /** When the current window ends. */
  get windowEnd(): number {
    return this.windowStart + LOAD_WINDOW_MS;
  }

  /** A tick of the engine fired `lateMs` after it was due. */
  noteLateness(lateMs: number): void {
    if (lateMs > this.windowLateMs) this.windowLateMs = lateMs;
  }

  /**
   * Closes the current window when it has ended and starts the next one. Returns true when
   * `overloaded` changed with it.
   */
  sample(now: number): boolean {
    if (now < this.windowEnd) return false;
    const h = this.histogram;
    // The monitor's samples include its own resolution: an idle loop reads 10 ms.
    const delay = (ns: number): number => Math.max(0, ns / 1e6 - RESOLUTION_MS);
    if (h.count > 0) {
      this.recent = { meanMs: delay(h.mean), p50Ms: delay(h.percentile(50)), p99Ms: delay(h.percentile(99)), maxMs: delay(h.max) };
    } else {
      // Not one sample in a whole window: the loop was blocked all along (the monitor's timer
      // has not run yet to record it).
      const blocked = Math.max(0, now - this.windowStart - RESOLUTION_MS);
      this.recent = { meanMs: blocked, p50Ms: blocked, p99Ms: blocked, maxMs: blocked };
    }
    h.reset();
    this.recentLateMs = this.windowLateMs;
    this.windowLateMs = 0;
    this.windowStart = now;
    const overloaded = Math.max(this.recent.maxMs, this.recentLateMs) > this.threshold;
    if (overloaded === this.overloaded) return false;
    this.overloaded = overloaded;
    return true;
  }

  stop(): void {
    this.histogram.disable();
  }
}
