// The dashboard's live feed, as Server-Sent Events on one GET route (see README.md, "The feed").
// A sample of the engine's stats is kept every second for two minutes, so that a page opened
// now already has its time series; every open stream gets a full stats snapshot twice a second.

/** How often every open stream gets a `stats` event. */
export const SNAPSHOT_PERIOD_MS = 500;
/** How often a sample is added to the history (and sent as a `sample` event). */
export const SAMPLE_PERIOD_MS = 1000;
/** Two minutes of samples. */
export const HISTORY_LENGTH = 120;
/** How long a browser waits before it reconnects to a stream that ended. */
const RETRY_MS = 2000;
/** A stream whose reader has fallen this far behind is dropped rather than buffered forever. */
const MAX_QUEUED_BYTES = 1 << 20;

/** The connection-less route that the engine always has: never shown. */
const DEFAULT_ROUTE = 'default';

function message(event, data) {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The figures a time series needs from one stats snapshot. */
function sampleOf(stats, at) {
  const connections = {};
  for (const [name, route] of Object.entries(stats.routes)) {
    if (name !== DEFAULT_ROUTE) connections[name] = route.connections;
  }
  return {
    at,
    connections,
    terminations: { ...stats.terminations },
    eventLoop: { p99Ms: stats.eventLoop.p99Ms, maxMs: stats.eventLoop.maxMs },
    overloaded: stats.overloaded,
  };
}

/**
 * Adds the feed to `app` (after the @ws-heartbeat/fastify plugin): `GET path` answers
 * `text/event-stream`. Open streams are ended in `preClose`, since Fastify's close waits for
 * open responses; the timer is `unref()`ed and cleared in `onClose`. With `cluster` (the view of
 * cluster.mjs), every `stats` event also carries `cluster`: its latest view, read once a second.
 */
export function registerFeed(app, { path = '/events', cluster } = {}) {
  const streams = new Set();
  const history = [];
  let ticks = 0;

  /** Each route's bound: a silent peer is terminated interval + timeout after its last sign of life. */
  function routeSettings(stats) {
    const routes = {};
    for (const name of Object.keys(stats.routes)) {
      if (name === DEFAULT_ROUTE) continue;
      const { interval, timeout, closeTimeout } = app.heartbeat.settings(name);
      routes[name] = { interval, timeout, closeTimeout };
    }
    return routes;
  }

  /** A `stats` event's data: the engine's stats, and the cluster's view when there is one. */
  function snapshot(at, stats) {
    return cluster === undefined ? { at, stats } : { at, stats, cluster: cluster.latest };
  }

  function send(text) {
    for (const res of streams) {
      if (res.writableLength > MAX_QUEUED_BYTES) res.destroy();
      else res.write(text);
    }
  }

  function snapshotTimerOnTick() {
    const at = Date.now();
    const stats = app.heartbeat.stats();
    send(message('stats', snapshot(at, stats)));
    ticks++;
    if (ticks % (SAMPLE_PERIOD_MS / SNAPSHOT_PERIOD_MS) !== 0) return;
    const sample = sampleOf(stats, at);
    history.push(sample);
    if (history.length > HISTORY_LENGTH) history.shift();
    send(message('sample', sample));
  }

  const snapshotTimer = setInterval(snapshotTimerOnTick, SNAPSHOT_PERIOD_MS);
  snapshotTimer.unref();

  app.get(path, (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store' });
    const at = Date.now();
    const stats = app.heartbeat.stats();
    res.write(`retry: ${RETRY_MS}\n\n`);
    res.write(
      message('hello', {
        routes: routeSettings(stats),
        snapshotPeriodMs: SNAPSHOT_PERIOD_MS,
        samplePeriodMs: SAMPLE_PERIOD_MS,
        history,
      }),
    );
    res.write(message('stats', snapshot(at, stats)));
    streams.add(res);
    res.on('close', () => streams.delete(res));
  });

  app.addHook('preClose', async () => {
    for (const res of streams) res.end();
    streams.clear();
  });
  app.addHook('onClose', async () => clearInterval(snapshotTimer));
}
