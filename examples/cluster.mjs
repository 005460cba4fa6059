// The demo as one node of a cluster (README.md, "Several processes"): loaded by server.mjs only when
// REDIS_URL is set. Each process holds a lease in Redis through @ws-heartbeat/cluster, its
// connections join presence keys from their request, and every process serves the same view of
// all nodes: on GET /cluster as JSON, and in the dashboard's feed (feed.mjs) as `cluster`.
import { Cluster, ClusterUnavailableError } from '@ws-heartbeat/cluster';

/**
 * Short, so that the view moves while you watch it: a node publishes its figures every 2 s, and a
 * node that stopped renewing its lease is dead 3 s later (the package's defaults are 10 s and 5 s).
 */
export const CLUSTER_INTERVAL_MS = 2000;
export const CLUSTER_TIMEOUT_MS = 1000;
/** How often the view is read from Redis, however many pages and requests want it. */
export const VIEW_PERIOD_MS = 1000;
/** How long the startup waits to see its own node in the view before it warns. */
const JOIN_WAIT_MS = 2000;
/** How many `user:` keys the view lists: the first page of `list('user:')`. */
const USERS_PAGE_SIZE = 20;
/** A `user` query parameter that becomes a presence key; anything else joins nothing. */
const USER_ID = /^[\w.@-]{1,64}$/;

export function createCluster(url) {
  // logger: false: the demo says itself, in one line, when Redis is away or back (ClusterView).
  return new Cluster({ url, interval: CLUSTER_INTERVAL_MS, timeout: CLUSTER_TIMEOUT_MS, logger: false });
}

/**
 * The WebSocket routes' `presence` option: `?user=42` on /ws/fast holds `user:42` and
 * `room:/ws/fast` until the connection closes. A connection without a (valid) user joins nothing:
 * presence counts people, and an anonymous socket is nobody in particular.
 */
export function presenceOf(request) {
  const { user } = request.query;
  if (typeof user !== 'string' || !USER_ID.test(user)) return undefined;
  return [`user:${user}`, `room:${request.routeOptions.url}`];
}

/** The URL without its credentials: what the demo may print and show. */
function publicUrl(url) {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.href.replace(/\/$/, '');
  } catch {
    return 'redis://?';
  }
}

/** What is wrong, in a few words: Redis does not answer, or a read failed otherwise. */
function problem(view) {
  if (view.state === 'error') return `reading the cluster from ${view.redis} failed (${view.error})`;
  if (view.state === 'available') return `this node is not in the view of ${view.redis} yet`;
  return `Redis at ${view.redis} does not answer`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * What this process knows of the cluster, read once a second by one timer and served to every
 * reader as `latest`. `state` is 'starting' before the first read, 'available' with the figures,
 * 'unavailable' while Redis cannot be reached (stats() rejected with ClusterUnavailableError), or
 * 'error' when a read failed otherwise. Reads never reject; the WebSocket routes never wait for them.
 */
class ClusterView {
  /** The latest view (see the class comment), as sent on /events and GET /cluster. */
  latest;
  #cluster;
  #routes;
  #base;
  #reading;
  #stopped = false;
  /** The state last printed, so that only changes are logged. */
  #printed;

  constructor(cluster, { url, routes }) {
    this.#cluster = cluster;
    this.#routes = routes;
    this.#base = { redis: publicUrl(url), self: cluster.id, interval: CLUSTER_INTERVAL_MS, timeout: CLUSTER_TIMEOUT_MS };
    this.latest = { state: 'starting', at: Date.now(), ...this.#base };
  }

  /** Reads the view now, unless a read is under way: then resolves with that one's. */
  refresh() {
    if (this.#stopped) return Promise.resolve(this.latest);
    this.#reading ??= this.#read().finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  /** No more reads, and no more log lines: the cluster is about to close with the app. */
  stop() {
    this.#stopped = true;
  }

  /**
   * Prints one line once the node is in the view ("joined the cluster …"), or one warning when
   * Redis did not answer within JOIN_WAIT_MS. Later changes of state are logged as they are seen.
   */
  async reportJoin() {
    // Until then it reads every 100 ms: the node registers within milliseconds of its start.
    const deadline = performance.now() + JOIN_WAIT_MS;
    let view = await this.refresh();
    while (!this.#joined(view) && !this.#stopped && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      view = await this.refresh();
    }
    if (this.#stopped) return;
    if (this.#joined(view)) {
      const self = view.nodes.find((node) => node.id === view.self);
      console.log(
        `joined the cluster at ${view.redis} as ${self.host}:${self.pid}, ${plural(view.totals.nodes, 'node')} live ` +
          `(lease renewed every ${CLUSTER_INTERVAL_MS} ms, dead ${CLUSTER_TIMEOUT_MS} ms after a missed renewal)`,
      );
      this.#printed = 'available';
    } else {
      console.warn(`warning: ${problem(view)}: serving WebSockets on this process alone; it joins the cluster once Redis answers`);
      this.#printed = view.state;
    }
  }

  #joined(view) {
    return view.state === 'available' && view.nodes.some((node) => node.id === view.self);
  }

  async #read() {
    const cluster = this.#cluster;
    const at = Date.now();
    let view;
    try {
      const [stats, users, ...rooms] = await Promise.all([
        cluster.stats(),
        cluster.list('user:', '0', USERS_PAGE_SIZE),
        ...this.#routes.map((route) => cluster.connections(`room:${route}`)),
      ]);
      const nodes = [...stats.nodes].sort((a, b) => a.startedAt - b.startedAt || a.pid - b.pid);
      view = {
        state: 'available',
        at,
        ...this.#base,
        nodes,
        totals: stats.totals,
        presence: {
          // stats() counts the online keys with the nodes (the same figure as count()).
          online: stats.totals.online,
          users: { keys: users.keys.sort(), more: users.cursor !== '0' },
          rooms: Object.fromEntries(this.#routes.map((route, i) => [route, rooms[i]])),
        },
      };
    } catch (error) {
      const state = error instanceof ClusterUnavailableError ? 'unavailable' : 'error';
      const since = this.latest.state === state ? this.latest.since : at;
      view = { state, at, ...this.#base, error: error instanceof Error ? error.message : String(error), since };
    }
    if (this.#stopped) return this.latest;
    this.latest = view;
    this.#log(view);
    return view;
  }

  /** One line per change of state after the startup line. */
  #log(view) {
    if (this.#printed === undefined || this.#printed === view.state) return;
    if (view.state === 'available') console.log(`cluster: Redis at ${view.redis} answers again; ${plural(view.totals.nodes, 'node')} live`);
    else console.warn(`warning: ${problem(view)}: still serving WebSockets on this process`);
    this.#printed = view.state;
  }
}

/**
 * Serves the cluster's view for `app`: GET /cluster answers its latest as JSON. It is read once a
 * second by an `unref()`ed timer cleared in `onClose`, however many pages and requests want it.
 * Returns the view, for the feed and the startup line.
 */
export function registerClusterView(app, cluster, { url, routes, path = '/cluster' }) {
  const view = new ClusterView(cluster, { url, routes });
  const viewTimer = setInterval(() => view.refresh(), VIEW_PERIOD_MS);
  viewTimer.unref();
  app.get(path, () => view.latest);
  app.addHook('onClose', async () => {
    view.stop();
    clearInterval(viewTimer);
  });
  return view;
}
