// One view of the cluster: what each node publishes once per interval (its snapshot), and how
// `Cluster.stats()` reads every live node's snapshot back and adds them up.
import type { Heartbeat } from '@ws-heartbeat/core';

/** One route of a node: its open connections and the p99 of its ping → pong round trips. */
export interface NodeRouteStats {
  connections: number;
  /** ms; `null` before the first pong. */
  rttP99: number | null;
}

/** One live node of the cluster, as it published itself at its latest interval. */
export interface NodeStats {
  id: string;
  /** The node's `name` option (`<hostname>:<pid>` by default). */
  name: string;
  host: string;
  pid: number;
  /** When the node's process started the cluster (its own clock), ms since the epoch. */
  startedAt: number;
  /** How long the node has been up, ms: the reader's clock minus `startedAt`. */
  age: number;
  /** ms since the node last renewed its lease and published this snapshot (Redis's clock). Past `interval + timeout` the node is dead. */
  leaseAge: number;
  /** Connections open on the node's engine. */
  connections: number;
  /** Per route path. */
  routes: Record<string, NodeRouteStats>;
  /** Terminations by reason since the node started. */
  terminations: Record<string, number>;
  /** The worst route's round-trip p99, ms. */
  rttP99: number | null;
  /** The event-loop delay p99 of the node's latest second, ms. */
  eventLoopP99: number | null;
  /** Whether the node's engine is overloaded (its `stats().overloaded`). */
  overloaded: boolean;
}

/** What `Cluster.stats()` returns: every live node, and the cluster's totals. */
export interface ClusterStats {
  nodes: NodeStats[];
  totals: {
    nodes: number;
    connections: number;
    /** Unique keys online (the same as `count()`). */
    online: number;
    /** How many nodes are overloaded. */
    overloaded: number;
    terminations: Record<string, number>;
    /** The worst node's figures, ms. */
    rttP99: number | null;
    eventLoopP99: number | null;
  };
}

/** What a node publishes: `NodeStats` without what Redis or the reader adds. */
type Snapshot = Pick<NodeStats, 'connections' | 'routes' | 'terminations' | 'rttP99' | 'eventLoopP99' | 'overloaded'>;

const max = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.max(a, b));

/** The node's snapshot as JSON: a few hundred bytes, whatever its number of connections. */
export function snapshotOf(heartbeat: Heartbeat | undefined): string {
  const snapshot: Snapshot = { connections: 0, routes: {}, terminations: {}, rttP99: null, eventLoopP99: null, overloaded: false };
  const stats = heartbeat?.stats();
  if (stats !== undefined) {
    snapshot.connections = stats.connections;
    snapshot.terminations = stats.terminations;
    snapshot.eventLoopP99 = stats.eventLoop.p99Ms;
    snapshot.overloaded = stats.overloaded;
    for (const [path, route] of Object.entries(stats.routes)) {
      // The engine's own route for connections tracked without one: not a route of the application's.
      if (path === 'default' && route.connections === 0 && route.pingsSent === 0) continue;
      snapshot.routes[path] = { connections: route.connections, rttP99: route.rtt.p99 };
      snapshot.rttP99 = max(snapshot.rttP99, route.rtt.p99);
    }
  }
  return JSON.stringify(snapshot);
}

/** Reads the STATS script's reply: [now, online keys, then per live node: id, name, host, pid, startedAt, renewedAt, snapshot]. */
export function parseStats(reply: unknown[], readAt = Date.now()): ClusterStats {
  const now = Number(reply[0]);
  const totals: ClusterStats['totals'] = { nodes: 0, connections: 0, online: Number(reply[1]), overloaded: 0, terminations: {}, rttP99: null, eventLoopP99: null };
  const nodes: NodeStats[] = [];
  for (let i = 2; i + 7 <= reply.length; i += 7) {
    const [id, name, host, pid, startedAt, renewedAt, json] = reply.slice(i, i + 7) as Array<string | null>;
    let snapshot: Partial<Snapshot> = {};
    try {
      snapshot = JSON.parse(json ?? '{}') as Partial<Snapshot>;
    } catch {
      // a node of another version, or one that has not published yet: counted with empty figures
    }
    const node: NodeStats = {
      id: id ?? '',
      name: name ?? '',
      host: host ?? '',
      pid: Number(pid ?? 0),
      startedAt: Number(startedAt ?? 0),
      age: startedAt === null ? 0 : Math.max(0, readAt - Number(startedAt)),
      leaseAge: renewedAt === null ? 0 : Math.max(0, now - Number(renewedAt)),
      connections: snapshot.connections ?? 0,
      routes: snapshot.routes ?? {},
      terminations: snapshot.terminations ?? {},
      rttP99: snapshot.rttP99 ?? null,
      eventLoopP99: snapshot.eventLoopP99 ?? null,
      overloaded: snapshot.overloaded ?? false,
    };
    nodes.push(node);
    totals.nodes += 1;
    totals.connections += node.connections;
    if (node.overloaded) totals.overloaded += 1;
    for (const [reason, count] of Object.entries(node.terminations)) totals.terminations[reason] = (totals.terminations[reason] ?? 0) + count;
    totals.rttP99 = max(totals.rttP99, node.rttP99);
    totals.eventLoopP99 = max(totals.eventLoopP99, node.eventLoopP99);
  }
  return { nodes, totals };
}
