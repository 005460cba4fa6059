import type { WebSocket } from 'ws';
import type { Heartbeat } from './heartbeat';

/**
 * What the router and the adapters need of a cluster that shares presence between processes
 * (`@ws-heartbeat/cluster` is one). Core only calls it: it never imports Redis.
 */
export interface PresenceCluster {
  /** Joins the cluster; `heartbeat`'s figures go into this node's snapshots. Resolves even while the cluster's store is down. */
  start(heartbeat: Heartbeat): Promise<void>;
  /** Ties `ws` to `key` until it closes. Never rejects: a change the store cannot take now is sent later. */
  join(ws: WebSocket, key: string): Promise<void>;
  /** Leaves the cluster at once: this node's keys go offline now, without waiting for its lease. */
  close(): Promise<void>;
}

/** The keys a route's `presence` option gives for one connection: none, one, or several. */
export type PresenceKeys = string | readonly string[] | undefined;

/** Whether `value` looks like a {@link PresenceCluster}. */
export function isPresenceCluster(value: unknown): value is PresenceCluster {
  const cluster = value as Partial<PresenceCluster> | null;
  return typeof cluster === 'object' && cluster !== null && typeof cluster.start === 'function' && typeof cluster.join === 'function' && typeof cluster.close === 'function';
}

/** The keys as a list; throws a `TypeError` for anything but a string, a list of strings, or undefined. */
export function presenceKeys(keys: unknown): readonly string[] {
  if (keys === undefined) return [];
  if (typeof keys === 'string') return [keys];
  if (Array.isArray(keys) && keys.every((key) => typeof key === 'string')) return keys as string[];
  throw new TypeError(`presence must return a string, an array of strings or undefined: got ${typeof keys}`);
}

/**
 * Joins `ws` to the keys `keysOf()` gives (a route's `presence` option). A `presence` that throws
 * or gives anything but keys is `reported`, and joins nothing; the connection stays.
 */
export function joinPresence(cluster: PresenceCluster, ws: WebSocket, keysOf: () => unknown, reported: (error: unknown) => void): void {
  let keys: readonly string[];
  try {
    keys = presenceKeys(keysOf());
  } catch (error) {
    reported(error);
    return;
  }
  for (const key of keys) void cluster.join(ws, key);
}
