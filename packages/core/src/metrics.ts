import { describe } from './errors';
import type { Heartbeat } from './heartbeat';
import type { HeartbeatStats } from './types';
import type { LatencySummary } from './histogram';

/**
 * The part of a prom-client `Registry` that {@link collectMetrics} uses: `new Registry()` or the
 * default `register` of `prom-client` (version 15) fits. Nothing of prom-client is imported here,
 * so it stays the application's own (optional) dependency.
 */
export interface MetricsRegistry {
  registerMetric(metric: never): void;
  removeSingleMetric(name: string): void;
  getSingleMetric(name: string): unknown;
  /** The exposition text of every metric of the registry. */
  metrics(): Promise<string>;
  /** The `Content-Type` of that text. */
  readonly contentType: string;
}

const REGISTRY_METHODS = ['registerMetric', 'removeSingleMetric', 'getSingleMetric', 'metrics'] as const;

/** Whether `value` has what {@link collectMetrics} needs of a registry. */
export function isMetricsRegistry(value: unknown): value is MetricsRegistry {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return REGISTRY_METHODS.every((method) => typeof candidate[method] === 'function');
}

export interface CollectMetricsOptions {
  /**
   * Prepended to every metric name.
   * @default 'ws_heartbeat_'
   */
  prefix?: string;
}

type MetricType = 'counter' | 'gauge' | 'histogram';
type Labels = Record<string, string | number>;
interface Sample {
  metricName?: string;
  labels: Labels;
  value: number;
}

/** A metric as prom-client's registry reads it: `get()` answers from a fresh `stats()`. */
interface CollectedMetric {
  name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly aggregator: 'sum' | 'max';
  get(): Promise<{ name: string; help: string; type: MetricType; aggregator: 'sum' | 'max'; values: Sample[] }>;
  reset(): void;
}

const SECONDS_PER_MS = 1 / 1000;

/** The samples of a Prometheus histogram (`_bucket` per bound, `_sum`, `_count`) from a summary in ms. */
function histogramSamples(name: string, labels: Labels, summary: LatencySummary): Sample[] {
  const samples: Sample[] = [];
  for (const { le, count } of summary.buckets) {
    samples.push({ metricName: `${name}_bucket`, labels: { ...labels, le: le === '+Inf' ? le : le * SECONDS_PER_MS }, value: count });
  }
  samples.push({ metricName: `${name}_sum`, labels, value: summary.sum * SECONDS_PER_MS });
  samples.push({ metricName: `${name}_count`, labels, value: summary.count });
  return samples;
}

/** Every metric: its name (after the prefix), type, help, and samples from one stats snapshot. */
const DEFINITIONS: readonly { name: string; type: MetricType; help: string; samples: (stats: HeartbeatStats, name: string) => Sample[] }[] = [
  {
    name: 'connections',
    type: 'gauge',
    help: 'WebSocket connections open now, per route.',
    samples: (stats) => Object.entries(stats.routes).map(([route, r]) => ({ labels: { route }, value: r.connections })),
  },
  {
    name: 'pings_total',
    type: 'counter',
    help: 'Pings sent to idle connections, per route.',
    samples: (stats) => Object.entries(stats.routes).map(([route, r]) => ({ labels: { route }, value: r.pingsSent })),
  },
  {
    name: 'pongs_total',
    type: 'counter',
    help: 'Pongs received in answer to a ping, per route.',
    samples: (stats) => Object.entries(stats.routes).map(([route, r]) => ({ labels: { route }, value: r.pongsReceived })),
  },
  {
    name: 'terminations_total',
    type: 'counter',
    help: 'Connections ended by the engine, per route and reason.',
    samples: (stats) =>
      Object.entries(stats.routes).flatMap(([route, r]) =>
        Object.entries(r.terminations).map(([reason, value]) => ({ labels: { route, reason }, value })),
      ),
  },
  {
    name: 'rtt_seconds',
    type: 'histogram',
    help: 'Ping to pong round-trip time, per route.',
    samples: (stats, name) => Object.entries(stats.routes).flatMap(([route, r]) => histogramSamples(name, { route }, r.rtt)),
  },
  {
    name: 'detection_seconds',
    type: 'histogram',
    help: "Time from a dead peer's last sign of life to its termination (reason timeout), per route.",
    samples: (stats, name) => Object.entries(stats.routes).flatMap(([route, r]) => histogramSamples(name, { route }, r.detection)),
  },
  {
    name: 'event_loop_delay_seconds',
    type: 'gauge',
    help: 'Longest event-loop delay in the latest one-second window.',
    samples: (stats) => [{ labels: {}, value: stats.eventLoop.maxMs * SECONDS_PER_MS }],
  },
  {
    name: 'tick_lateness_seconds',
    type: 'gauge',
    help: "Longest lateness of the heartbeat engine's timer in the latest one-second window.",
    samples: (stats) => [{ labels: {}, value: stats.tick.recentLateMs * SECONDS_PER_MS }],
  },
  {
    name: 'overloaded',
    type: 'gauge',
    help: 'Whether the event loop is overloaded (1) or not (0), by the engine\'s overloadThreshold.',
    samples: (stats) => [{ labels: {}, value: stats.overloaded ? 1 : 0 }],
  },
];

/**
 * Exports the engine's figures to a prom-client registry, read from `heartbeat.stats()` at each
 * scrape: `ws_heartbeat_connections`, `ws_heartbeat_pings_total`, `ws_heartbeat_pongs_total`,
 * `ws_heartbeat_terminations_total` (labels `route`, `reason`), the histograms
 * `ws_heartbeat_rtt_seconds` and `ws_heartbeat_detection_seconds` (label `route`), and the
 * gauges `ws_heartbeat_event_loop_delay_seconds`, `ws_heartbeat_tick_lateness_seconds` and
 * `ws_heartbeat_overloaded`. Throws a `TypeError` for something that is not a registry, and an
 * `Error` if the registry already holds a metric of one of these names.
 * Returns the function that removes exactly these metrics from the registry again.
 *
 * @example
 * import { Registry } from 'prom-client';
 * const registry = new Registry();
 * collectMetrics(heartbeat, registry);
 * // GET /metrics: res.setHeader('Content-Type', registry.contentType); res.end(await registry.metrics());
 */
export function collectMetrics(heartbeat: Heartbeat, registry: MetricsRegistry, options: CollectMetricsOptions = {}): () => void {
  if (!isMetricsRegistry(registry)) throw new TypeError(`A prom-client Registry is needed to collect metrics: got ${describe(registry)}`);
  const { prefix = 'ws_heartbeat_' } = options;
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(prefix)) {
    throw new TypeError(`The "prefix" option must be a valid start of a Prometheus metric name: got ${String(prefix)}`);
  }
  // A scrape reads every metric in one synchronous turn (prom-client calls each get() before it
  // awaits any): they share one snapshot, so the figures agree and stats() runs once per scrape.
  let snapshot: HeartbeatStats | undefined;
  const forgetSnapshot = (): void => {
    snapshot = undefined;
  };
  const currentStats = (): HeartbeatStats => {
    if (snapshot === undefined) {
      snapshot = heartbeat.stats();
      // A promise, not queueMicrotask: fake clocks replace that one and would freeze the figures.
      void Promise.resolve().then(forgetSnapshot);
    }
    return snapshot;
  };
  const metrics = DEFINITIONS.map((definition): CollectedMetric => {
    const fullName = prefix + definition.name;
    if (registry.getSingleMetric(fullName) !== undefined) throw new Error(`A metric named ${fullName} is already registered`);
    return {
      // prom-client renames counters for OpenMetrics (it drops `_total`, then adds it per sample).
      name: fullName,
      help: definition.help,
      type: definition.type,
      aggregator: definition.type === 'gauge' ? 'max' : 'sum',
      async get() {
        const { name, help, type, aggregator } = this;
        return { name, help, type, aggregator, values: definition.samples(currentStats(), fullName) };
      },
      reset() {
        // The figures are the engine's; a registry reset cannot change them.
      },
    };
  });
  const register = registry.registerMetric as (metric: CollectedMetric) => void;
  for (const metric of metrics) register.call(registry, metric);
  return () => {
    for (const metric of metrics) {
      if (registry.getSingleMetric(metric.name) === metric) registry.removeSingleMetric(metric.name);
    }
  };
}
