// The ws-heartbeat demo: two echo routes on a Fastify server, managed by @ws-heartbeat/fastify,
// with a live dashboard at / (fed by Server-Sent Events), Prometheus metrics at /metrics, and at
// /client a page that uses @ws-heartbeat/client (served as one ES module at /client.js).
// With REDIS_URL set, the process is one node of a cluster (cluster.mjs): /cluster and the
// dashboard show every node, and who is online (`?user=<id>` on a WebSocket URL).
//   HOST=127.0.0.1 PORT=8080 node examples/server.mjs     (PORT=0 picks a free port)
//   REDIS_URL=redis://127.0.0.1:6379 PORT=8081 node examples/server.mjs
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import { Registry } from 'prom-client';
import { wsHeartbeat } from '@ws-heartbeat/fastify';
import { registerFeed } from './feed.mjs';

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8080);
const REDIS_URL = process.env.REDIS_URL || undefined;
const WS_ROUTES = ['/ws/echo', '/ws/fast'];

const DASHBOARD_HTML = readFileSync(new URL('./dashboard.html', import.meta.url), 'utf8');
const DASHBOARD_JS = readFileSync(new URL('./dashboard.js', import.meta.url), 'utf8');
const CLIENT_HTML = readFileSync(new URL('./client.html', import.meta.url), 'utf8');
// The browser build of @ws-heartbeat/client: one ES module with the protocol bundled in (the demo command builds it).
const CLIENT_JS = readFileSync(new URL('../packages/client/dist/browser.js', import.meta.url), 'utf8');

/** Sends every message back as it came: text stays text, binary stays binary. */
function echo(socket) {
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
}

// Without REDIS_URL nothing of the cluster is loaded, and the demo is a single process.
const clustering = REDIS_URL === undefined ? undefined : await import('./cluster.mjs');
const cluster = clustering?.createCluster(REDIS_URL);
// The routes' presence keys: `user:<id>` and `room:<route>` for `?user=<id>`; nothing without a cluster.
const presence = clustering?.presenceOf;

// No logger: the URL line below is the demo's only startup output (with a cluster, one more line).
const app = Fastify({ logger: false });
const registry = new Registry();
// appHeartbeat: the engine answers {"type":"ping"} from browser clients (they cannot send ping frames).
await app.register(wsHeartbeat, { heartbeat: { appHeartbeat: true }, cluster, statsRoute: '/stats', metricsRoute: '/metrics', metricsRegistry: registry });

app.get('/ws/echo', { websocket: true, presence }, echo);
app.get('/ws/fast', { websocket: true, presence, heartbeat: { interval: 1000, timeout: 500, closeTimeout: 1000 } }, echo);

app.heartbeat.on('connection', (ws, route) => console.log(`connection on ${route}`));
app.heartbeat.on('terminate', (ws, reason, route, info) =>
  console.log(`terminated a connection on ${route}: ${reason} (${info.remoteAddress ?? 'unknown address'}, silent for ${Math.round(info.silentMs)} ms)`),
);

const clusterView = cluster && clustering.registerClusterView(app, cluster, { url: REDIS_URL, routes: WS_ROUTES, path: '/cluster' });
registerFeed(app, { path: '/events', cluster: clusterView });
app.get('/', (request, reply) => reply.type('text/html; charset=utf-8').send(DASHBOARD_HTML));
app.get('/dashboard.js', (request, reply) => reply.type('text/javascript; charset=utf-8').send(DASHBOARD_JS));
app.get('/client', (request, reply) => reply.type('text/html; charset=utf-8').send(CLIENT_HTML));
app.get('/client.js', (request, reply) => reply.type('text/javascript; charset=utf-8').send(CLIENT_JS));

await app.listen({ port: PORT, host: HOST });
const { port } = app.server.address();
const host = HOST.includes(':') ? `[${HOST}]` : HOST;
console.log(`ws-heartbeat demo listening on http://${host}:${port} (Ctrl-C to stop)`);

// First signal: close cleanly and let the process exit by itself. Second signal: exit now.
let stopping = false;
function stop(signal) {
  if (stopping) {
    console.log(`${signal} again: exiting without waiting`);
    process.exit(1);
  }
  stopping = true;
  console.log(`${signal}: closing (send it again to exit at once)`);
  // The cluster closes with the app (its keys go offline at once): no more reads of it from here.
  clusterView?.stop();
  app.close().then(
    () => console.log('all connections closed'),
    (error) => {
      console.error('close failed:', error);
      process.exitCode = 1;
    },
  );
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

// With a cluster: one line once this node is in the cluster's view, or one warning.
await clusterView?.reportJoin();
