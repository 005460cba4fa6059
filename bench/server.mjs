// One contender's server process (started by run.mjs with --expose-gc). Every contender gets the
// same HTTP server, the same connection bookkeeping and the same echo for the probe; only the
// heartbeat differs. Peers say who they are in the query: kind=h (healthy), kind=s&id=N (goes
// silent later), kind=p (the probe, whose messages are echoed).
//
// Every connection carries one message each way when it opens (the server's "welcome", the
// peer's "hello"), as any real connection does: Node and `ws` allocate their read and write
// state on first use (~150 bytes), which would otherwise count as heartbeat memory for every
// contender that pings and not for `none`.
import http from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { contenders } from './contenders.mjs';
import { nowMs, serve } from './lib.mjs';
import { recordBlocks, remember } from './trace.mjs';

const { contender: name, interval, timeout, trace } = JSON.parse(process.argv[2]);
const contender = contenders[name];

// --trace: when each ping was written, per connection; what happened to each closed healthy peer;
// the event-loop blocks (trace.mjs).
const traced = trace ? { closed: [], blocks: recordBlocks() } : undefined;

const silentClosedAt = {};
let healthyCloses = 0;
const healthyCloseReasons = {};

// The false-termination phase: the busy-wait starts in the event-loop turn right after a
// heartbeat frame went out, while its answers are on their way back.
let stallArmed = false;
let onStallTrigger;
/** A heartbeat frame went out (to `ws`, where the contender knows it). */
function heartbeatSent(ws) {
  if (traced && ws) remember((ws.pingsWritten ??= []), nowMs());
  if (!stallArmed) return;
  stallArmed = false;
  onStallTrigger('heartbeat');
}
const ping = WebSocket.prototype.ping;
WebSocket.prototype.ping = function (...args) {
  const result = ping.apply(this, args);
  heartbeatSent(this);
  return result;
};

function busyWait(ms) {
  const end = nowMs() + ms;
  while (nowMs() < end);
}

function peer(query) {
  const params = new URLSearchParams(query);
  return { kind: params.get('kind'), id: params.get('id') };
}

/** reason: the close code (ws) or the disconnect reason (socket.io) the server saw. */
function onPeerClosed({ kind, id, port }, reason, ws) {
  if (kind === 's') silentClosedAt[id] = nowMs();
  else if (kind === 'h') {
    healthyCloses += 1;
    healthyCloseReasons[reason] = (healthyCloseReasons[reason] ?? 0) + 1;
    if (traced) traced.closed.push({ port, reason, at: nowMs(), silentMs: ws?.endedInfo?.silentMs ?? null, pingsWritten: ws?.pingsWritten ?? [] });
  }
}

const server = http.createServer((req, res) => res.writeHead(404).end());
let wss;
if (contender.client === 'socket.io') {
  const { Server } = await import('socket.io');
  const io = new Server(server, { pingInterval: interval, pingTimeout: timeout, transports: ['websocket'], serveClient: false });
  io.on('connection', (socket) => {
    const who = peer(socket.handshake.query);
    if (who.kind === 'p') socket.on('echo', (message) => socket.emit('echo', message));
    socket.on('disconnect', (reason) => onPeerClosed(who, reason));
    socket.emit('welcome');
  });
} else {
  wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    const who = { ...peer(req.url.slice(req.url.indexOf('?') + 1)), port: req.socket.remotePort };
    ws.on('error', () => {});
    if (who.kind === 'p') ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('close', (code) => onPeerClosed(who, ws.endedBy ?? (code === 1006 ? '1006 (no close frame)' : String(code)), ws));
    ws.send('welcome');
  });
}
await contender.setup({ interval, timeout, wss, heartbeatSent });
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

function heap() {
  for (let i = 0; i < 4; i++) global.gc();
  const usage = process.memoryUsage();
  // Typed arrays and Buffers live outside the JS heap; per-connection state in them counts too.
  return usage.heapUsed + usage.arrayBuffers;
}

/** --profile: V8's sampling profiler over the quiet CPU window (started and stopped by run.mjs). */
let profiler;

serve({
  profileStart: async () => {
    const { Session } = await import('node:inspector/promises');
    profiler = new Session();
    profiler.connect();
    await profiler.post('Profiler.enable');
    // 100 µs between samples: ~10,000 a second, enough for the frames that cost a few percent.
    await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
    await profiler.post('Profiler.start');
    return {};
  },
  profileStop: async ({ path }) => {
    const { profile } = await profiler.post('Profiler.stop');
    profiler.disconnect();
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path, JSON.stringify(profile));
    return {};
  },
  heap: async () => {
    const bytes = heap();
    // BENCH_HEAP_SNAPSHOT=<dir>: a heap snapshot per run there, to see what the figure is made of.
    const dir = process.env.BENCH_HEAP_SNAPSHOT;
    if (dir) (await import('node:v8')).writeHeapSnapshot(`${dir}/${name}-${wss.clients.size}.heapsnapshot`);
    return { bytes };
  },
  cpu: () => {
    const { user, system } = process.cpuUsage();
    return { ms: (user + system) / 1000, userMs: user / 1000, at: nowMs() };
  },
  closes: () => ({ silentClosedAt, healthyCloses, healthyCloseReasons: { ...healthyCloseReasons } }),
  trace: () => traced ?? { closed: [], blocks: [] },
  stall: ({ ms, fallbackMs }) =>
    new Promise((resolve) => {
      let fallback;
      onStallTrigger = (trigger) => {
        clearTimeout(fallback);
        // After the current callback: the heartbeat round that sent this frame completes first.
        setImmediate(() => {
          const start = nowMs();
          busyWait(ms);
          resolve({ trigger, start, end: nowMs() });
        });
      };
      stallArmed = true;
      // A contender that sends no heartbeat (none) stalls at an arbitrary moment.
      fallback = setTimeout(() => {
        stallArmed = false;
        onStallTrigger('timer');
      }, fallbackMs);
    }),
  exit: () => {
    setImmediate(() => process.exit(0));
    return {};
  },
});

process.send({ ready: true, port: server.address().port, heapBytes: heap() });
