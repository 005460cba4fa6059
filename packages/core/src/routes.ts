import { DETECTION_BOUNDS_MS, LatencyHistogram, RTT_BOUNDS_MS } from './histogram';
import { resolveOptions, type HeartbeatOptions, type ResolvedOptions } from './options';
import { noTerminations, TERMINATE_REASONS, type HeartbeatStats, type RouteStats, type TerminateReason } from './types';

/** Counters of one route; shared by every definition of that route. */
export class RouteCounters {
  connections = 0;
  pingsSent = 0;
  pongsReceived = 0;
  readonly terminations: Record<TerminateReason, number> = noTerminations();
  readonly rtt = new LatencyHistogram(RTT_BOUNDS_MS);
  readonly detection = new LatencyHistogram(DETECTION_BOUNDS_MS);

  snapshot(): RouteStats {
    return {
      connections: this.connections,
      pingsSent: this.pingsSent,
      pongsReceived: this.pongsReceived,
      terminations: { ...this.terminations },
      rtt: this.rtt.summary(),
      detection: this.detection.summary(),
    };
  }
}

/** One definition of a route: what a connection tracked under it keeps for its whole life. */
export interface Profile {
  readonly name: string;
  readonly options: ResolvedOptions;
  /** The default-format application-level reply, encoded once. */
  readonly appReply: Buffer | undefined;
  readonly counters: RouteCounters;
}

/** The most definitions an engine holds: a connection keeps its definition's index in 16 bits. */
const MAX_PROFILES = 0xffff;

/**
 * The engine's routes. Redefining a route adds a definition: connections tracked before keep the
 * options they were tracked with, and every definition of a name shares one set of counters.
 */
export class RouteTable {
  readonly #profiles: Profile[] = [];
  readonly #latest = new Map<string, number>();

  constructor(private readonly base: HeartbeatOptions) {}

  /** Adds a definition of `name` (see `Heartbeat.route()`); returns its resolved options. */
  define(name: string, overrides: HeartbeatOptions, defaults: HeartbeatOptions): ResolvedOptions {
    if (typeof name !== 'string' || name === '') throw new TypeError(`A route name must be a non-empty string: got ${String(name)}`);
    const options = resolveOptions(overrides, this.base, defaults);
    if (this.#profiles.length >= MAX_PROFILES) throw new RangeError('Too many route definitions');
    const previous = this.#latest.get(name);
    const counters = previous === undefined ? new RouteCounters() : this.#profiles[previous]!.counters;
    const app = options.appHeartbeat;
    const appReply = app && typeof app.reply === 'string' ? Buffer.from(app.reply) : undefined;
    this.#latest.set(name, this.#profiles.length);
    this.#profiles.push({ name, options, appReply, counters });
    return options;
  }

  /** The index of the latest definition of `name`; throws a `TypeError` for an unknown name. */
  indexOf(name: string): number {
    const index = this.#latest.get(name);
    if (index === undefined) throw new TypeError(`Unknown heartbeat route "${name}": define it with heartbeat.route()`);
    return index;
  }

  at(index: number): Profile {
    return this.#profiles[index]!;
  }

  /** The counters of every route, and their sums. */
  snapshot(): Pick<HeartbeatStats, 'pingsSent' | 'pongsReceived' | 'terminations' | 'routes'> {
    const routes: Record<string, RouteStats> = {};
    const total = { pingsSent: 0, pongsReceived: 0, terminations: noTerminations() };
    for (const [name, index] of this.#latest) {
      const route = this.#profiles[index]!.counters.snapshot();
      routes[name] = route;
      total.pingsSent += route.pingsSent;
      total.pongsReceived += route.pongsReceived;
      for (const reason of TERMINATE_REASONS) total.terminations[reason] += route.terminations[reason];
    }
    return { ...total, routes };
  }
}
