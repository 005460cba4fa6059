// The ws-heartbeat demo: two echo routes on a plain node:http server, managed by one engine.
//   HOST=127.0.0.1 PORT=8080 node examples/server.mjs     (PORT=0 picks a free port)
import http from 'node:http';
import { UpgradeRouter } from '@ws-heartbeat/core';

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8080);

/** Sends every message back as it came: text stays text, binary stays binary. */
function echo(ws) {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
}

const router = new UpgradeRouter();
router.route('/ws/echo', { handler: echo });
router.route('/ws/fast', { handler: echo, heartbeat: { interval: 1000, timeout: 500, closeTimeout: 1000 } });

router.heartbeat.on('connection', (ws, route) => console.log(`connection on ${route}`));
router.heartbeat.on('terminate', (ws, reason, route) => console.log(`terminated a connection on ${route}: ${reason}`));

const HOME = `ws-heartbeat demo

WebSocket routes:
  /ws/echo   echoes every message; default heartbeat (ping after 30 s of silence, terminate 10 s later)
  /ws/fast   echoes every message; ping after 1 s of silence, terminate 0.5 s later, close timeout 1 s

HTTP:
  /stats     the engine's stats() as JSON
`;

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, 'http://localhost');
  if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'text/plain', 'method not allowed\n');
  if (pathname === '/') return reply(res, 200, 'text/plain; charset=utf-8', HOME);
  if (pathname === '/stats') return reply(res, 200, 'application/json', `${JSON.stringify(router.heartbeat.stats(), null, 2)}\n`);
  reply(res, 404, 'text/plain', 'not found\n');
});

function reply(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

router.attach(server);
server.listen(PORT, HOST, () => {
  const { port } = server.address();
  const host = HOST.includes(':') ? `[${HOST}]` : HOST;
  console.log(`ws-heartbeat demo listening on http://${host}:${port} (Ctrl-C to stop)`);
});

// First signal: close cleanly and let the process exit by itself. Second signal: exit now.
let stopping = false;
function stop(signal) {
  if (stopping) {
    console.log(`${signal} again: exiting without waiting`);
    process.exit(1);
  }
  stopping = true;
  console.log(`${signal}: closing (send it again to exit at once)`);
  router.close().then(() => console.log('all connections closed'));
  server.close();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
