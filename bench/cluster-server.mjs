// One node of the cluster benchmark (started by cluster.mjs): Fastify with @ws-heartbeat/fastify
// on one route, in one of three configurations:
//   floor  the plugin, but its heartbeat never falls due (interval 2^31 − 1 ms): what the server
//          costs without any heartbeat, the floor that heartbeat CPU is measured above;
//   off    the heartbeat at the benchmark's interval and timeout, no cluster;
//   on     the same heartbeat, plus a Cluster on the benchmark's Redis: the plugin's `cluster`
//          option and the route's `presence` (each connection joins the key in its `k` query).
//
// Peers say who they are in the query: k=<presence key> (a load connection), kind=p (the probe,
// whose messages are echoed). Every load connection gets one message when it opens and answers
// one, as in server.mjs.
//
// With the cluster on, the node counts and times every command its Redis client sends (by
// wrapping @redis/client's sendCommand, the one path of the cluster's commands), so that the
// results can say which commands timed out or failed; and it times each `cluster.join()` the
// plugin makes, from the call to its resolution.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks';
import Fastify from 'fastify';
import wsHeartbeat from '@ws-heartbeat/fastify';
import { Cluster } from '@ws-heartbeat/cluster';
import { nowMs, quantile, serve, sleep } from './lib.mjs';

const { mode, node, interval, timeout, clusterInterval, clusterTimeout, redisUrl } = JSON.parse(process.argv[2]);
const clusterOn = mode === 'on';

/** count, p50, p99, max of samples (ms, rounded to µs). */
function latency(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const r = (v) => (v === null ? null : Math.round(v * 1000) / 1000);
  return { count: sorted.length, p50: r(quantile(sorted, 0.5)), p99: r(quantile(sorted, 0.99)), max: r(sorted.at(-1) ?? null) };
}

// The cluster's commands, by what they are: its scripts are named by their SHA1 (EVALSHA) or
// their source (EVAL), read from the package's own build (dist/scripts.js), so that a change of a
// script's keys or arguments cannot misname it.
const commands = {};
const TIMEOUT_ERRORS = new Set(['TimeoutError', 'TimeoutReadError']);
const requireFromCluster = createRequire(createRequire(import.meta.url).resolve('@ws-heartbeat/cluster'));
const scriptNames = new Map();
for (const [name, source] of Object.entries(requireFromCluster('./scripts.js'))) {
  if (typeof source !== 'string') continue;
  scriptNames.set(createHash('sha1').update(source).digest('hex'), `script ${name.toLowerCase()}`);
  scriptNames.set(source, `script ${name.toLowerCase()}`);
}
function kindOf(args) {
  const name = String(args[0]).toUpperCase();
  if (name === 'EVALSHA' || name === 'EVAL') return scriptNames.get(String(args[1])) ?? `script ${String(args[1]).slice(0, 8)}…`;
  if (name === 'SCRIPT') return `SCRIPT ${String(args[1]).toUpperCase()}`;
  return name;
}
function instrumentRedisClient() {
  const { createClient } = requireFromCluster('@redis/client');
  let proto = Object.getPrototypeOf(createClient());
  while (proto && !Object.prototype.hasOwnProperty.call(proto, 'sendCommand')) proto = Object.getPrototypeOf(proto);
  if (!proto) throw new Error('@redis/client: no sendCommand to instrument');
  const sendCommand = proto.sendCommand;
  proto.sendCommand = function instrumentedSendCommand(args, options) {
    const kind = kindOf(args);
    const entry = (commands[kind] ??= { sent: 0, ok: 0, noscript: 0, timedOut: 0, failed: 0, errors: {} });
    entry.sent += 1;
    const reply = sendCommand.call(this, args, options);
    reply.then(
      () => {
        entry.ok += 1;
      },
      (error) => {
        // NOSCRIPT is the first EVALSHA of a script that Redis has not cached yet: the cluster
        // sends it again as EVAL (counted as one more of its kind). Not a failure.
        if (String(error?.message).startsWith('NOSCRIPT')) {
          entry.noscript += 1;
          return;
        }
        if (TIMEOUT_ERRORS.has(error?.name) || TIMEOUT_ERRORS.has(error?.cause?.name)) entry.timedOut += 1;
        else entry.failed += 1;
        const what = String(error?.message ?? error).slice(0, 80);
        entry.errors[what] = (entry.errors[what] ?? 0) + 1;
      },
    );
    return reply;
  };
}

let cluster;
/** The cluster's own join, for the harness's batch (the plugin's joins go through the timed one). */
let untimedJoin;
const unavailable = { count: 0 };
const joins = { pending: 0, resolved: 0, ms: [] };
if (clusterOn) {
  instrumentRedisClient();
  cluster = new Cluster({ url: redisUrl, interval: clusterInterval, timeout: clusterTimeout });
  cluster.on('available', (available) => {
    if (!available) unavailable.count += 1;
  });
  // Every join the plugin makes, timed from the call to its resolution (the plugin does not wait
  // for it: the connection's handler runs at once).
  untimedJoin = cluster.join.bind(cluster);
  cluster.join = async function timedJoin(ws, key) {
    const start = nowMs();
    joins.pending += 1;
    try {
      await untimedJoin(ws, key);
    } finally {
      joins.pending -= 1;
      joins.resolved += 1;
      joins.ms.push(nowMs() - start);
    }
  };
}

// Garbage collection, counted for the CPU figures: time spent and pauses by kind (minor, major).
const gc = { ms: 0, minor: 0, major: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    gc.ms += entry.duration;
    if (entry.detail?.kind === 1) gc.minor += 1;
    else gc.major += 1;
  }
}).observe({ entryTypes: ['gc'] });

let healthyCloses = 0;
const healthyCloseReasons = {};

const app = Fastify({ logger: false });
await app.register(wsHeartbeat, {
  heartbeat: mode === 'floor' ? { interval: 2 ** 31 - 1, timeout, logger: false } : { interval, timeout, logger: false },
  ...(clusterOn ? { cluster } : {}),
});
app.heartbeat.on('terminate', (ws, reason) => {
  ws.endedBy = `ws-heartbeat ${reason}`;
});
app.get(
  '/',
  { websocket: true, ...(clusterOn ? { presence: (request) => request.query.k } : {}) },
  (socket, request) => {
    socket.on('error', () => {});
    if (request.query.kind === 'p') {
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
      return;
    }
    socket.on('close', (code) => {
      healthyCloses += 1;
      const reason = socket.endedBy ?? (code === 1006 ? '1006 (no close frame)' : String(code));
      healthyCloseReasons[reason] = (healthyCloseReasons[reason] ?? 0) + 1;
    });
    socket.send('welcome');
  },
);
await app.listen({ port: 0, host: '127.0.0.1' });

// The node counts as started once its lease is in Redis: joins made before that are kept locally
// and sent in one registration, which would time nothing.
if (clusterOn) {
  const deadline = nowMs() + 10_000;
  for (;;) {
    const stats = await cluster.stats().catch(() => undefined);
    if (stats?.nodes.some((n) => n.id === cluster.id)) break;
    if (nowMs() > deadline) throw new Error(`node ${node}: not registered in Redis within 10 s`);
    await sleep(50);
  }
}

/**
 * Calls `fn(i)` every `gapMs` for i < count (not waiting for the previous call). Resolves with each
 * call's duration, and this process's worst event-loop delay meanwhile: a slow call may be this
 * node's own stall rather than Redis's.
 */
async function paced(count, gapMs, fn) {
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const calls = [];
  const start = nowMs();
  for (let i = 0; i < count; i++) {
    const wait = start + i * gapMs - nowMs();
    if (wait > 0) await sleep(wait);
    const at = nowMs();
    calls.push(fn(i).then(() => nowMs() - at));
  }
  const ms = await Promise.all(calls);
  lag.disable();
  return { ms, lagMaxMs: Math.round(lag.max / 1e4) / 100 };
}

serve({
  cpu: () => {
    const { user, system } = process.cpuUsage();
    return { ms: (user + system) / 1000, userMs: user / 1000, at: nowMs(), gc: { ...gc } };
  },
  closes: () => ({ healthyCloses, healthyCloseReasons: { ...healthyCloseReasons } }),
  // The plugin's joins so far: how many are still waiting for Redis, and their latency.
  joins: ({ samples }) => ({ pending: joins.pending, resolved: joins.resolved, ...(samples ? { samples: joins.ms } : {}) }),
  redis: () => ({ id: cluster.id, commands, unavailable: unavailable.count }),
  // `count` joins of fresh keys (on stand-ins for connections), one every `gapMs`, then as many
  // leaves: each timed from the call to its resolution.
  joinBatch: async ({ count, gapMs }) => {
    const peers = Array.from({ length: count }, () => new EventEmitter());
    const joined = await paced(count, gapMs, (i) => untimedJoin(peers[i], `bench:join:${node}:${i}`));
    const left = await paced(count, gapMs, (i) => cluster.leave(peers[i], `bench:join:${node}:${i}`));
    return { join: { ...latency(joined.ms), lagMaxMs: joined.lagMaxMs }, leave: { ...latency(left.ms), lagMaxMs: left.lagMaxMs } };
  },
  // isOnline of each key, one every `gapMs`: its latency, its answers, and the calls that rejected.
  isOnlineBatch: async ({ keys, gapMs }) => {
    const answers = new Array(keys.length);
    let rejected = 0;
    const { ms, lagMaxMs } = await paced(keys.length, gapMs, (i) =>
      cluster.isOnline(keys[i]).then(
        (online) => {
          answers[i] = online;
        },
        () => {
          rejected += 1;
        },
      ),
    );
    return { latency: { ...latency(ms), lagMaxMs }, answers, rejected };
  },
  exit: () => {
    setImmediate(() => process.exit(0));
    return {};
  },
});

process.send({ ready: true, port: app.server.address().port, id: cluster?.id ?? null });
