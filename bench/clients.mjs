// A load process: opens its share of the connections in batches and keeps them healthy (they
// answer pings, or for the npm package send its app-level pings) until told that some go silent.
// A silent peer stops reading and writing at its given time, as a hung process would; the last
// time it handed bytes to its socket is its last frame.
import { createRequire } from 'node:module';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import { NPM_PING } from './contenders.mjs';
import { nowMs, serve, sleep } from './lib.mjs';
import { recordBlocks, remember } from './trace.mjs';

const require = createRequire(import.meta.url);
const { url, client, healthy, silent, batch, interval, timeout, trace } = JSON.parse(process.argv[2]);

// --trace: when each healthy peer received its pings (by its port), and this process's event-loop
// blocks from the start, while it opens its connections too (trace.mjs).
const traced = trace ? { peers: {}, blocks: recordBlocks() } : undefined;

const silentPeers = new Map(); // id → { socket, lastFrameAt }
let healthyCloses = 0;
let shuttingDown = false;

/** Opens one peer; resolves with its raw TCP socket once it is open. */
function open(kind, id) {
  const query = id === undefined ? `kind=${kind}` : `kind=${kind}&id=${id}`;
  return new Promise((resolve, reject) => {
    const onClose = () => {
      if (kind === 'h' && !shuttingDown) healthyCloses += 1;
    };
    if (client === 'socket.io') {
      const socket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true, query: { kind, id } });
      socket.once('connect_error', reject);
      // One message each way first (see server.mjs), then the peer counts as open.
      socket.once('welcome', () => {
        socket.emit('hello');
        resolve(socket.io.engine.transport.ws._socket);
      });
      socket.on('disconnect', onClose);
      return;
    }
    // Silent-to-be peers answer pings themselves, so that they can stop (autoPong off).
    const ws = new WebSocket(`${url}/?${query}`, { autoPong: kind !== 's' });
    if (kind === 's') ws.on('ping', (data) => ws.pong(data));
    if (client === 'npm') {
      const { setWsHeartbeat } = require('ws-heartbeat-npm/client');
      setWsHeartbeat(ws, NPM_PING, { pingInterval: interval, pingTimeout: interval + timeout });
    }
    ws.once('message', () => {
      ws.send('hello');
      if (traced && kind === 'h') {
        const pings = (traced.peers[ws._socket.localPort] = { pings: [] }).pings;
        // ws has written its pong when it emits 'ping'.
        ws.on('ping', () => remember(pings, nowMs()));
      }
      resolve(ws._socket);
    });
    ws.once('error', reject);
    ws.on('close', onClose);
  });
}

async function openSilent(id) {
  const socket = await open('s', id);
  const peer = { socket, lastFrameAt: nowMs(), silent: false };
  const { write } = socket;
  socket.write = function (...args) {
    if (peer.silent) return true;
    peer.lastFrameAt = nowMs();
    return write.apply(this, args);
  };
  silentPeers.set(id, peer);
}

/**
 * From now on the peer neither reads nor writes nor closes, like a hung process: client
 * libraries with timers of their own (socket.io-client, the npm package's client) would
 * otherwise close the connection themselves when the server's heartbeats stop arriving.
 */
function silence(peer) {
  peer.silent = true;
  peer.socket.pause();
  peer.socket.end = peer.socket.destroy = () => peer.socket;
}

// Silent peers are spread through the batches like the healthy ones.
const total = healthy + silent.length;
const order = [];
for (let i = 0, s = 0; i < total; i++) {
  const silentHere = Math.floor(((i + 1) * silent.length) / total) > s;
  order.push(silentHere ? silent[s++] : undefined);
}
const lag = monitorEventLoopDelay({ resolution: 10 });
lag.enable();
let failed = 0;
for (let start = 0; start < total; start += batch) {
  const opening = order.slice(start, start + batch).map((id) => (id === undefined ? open('h') : openSilent(id)));
  const results = await Promise.allSettled(opening);
  failed += results.filter((r) => r.status === 'rejected').length;
  await sleep(10);
}

serve({
  silence: ({ at }) => {
    for (const [id, time] of Object.entries(at)) {
      const peer = silentPeers.get(id);
      setTimeout(() => silence(peer), time - nowMs());
    }
    return {};
  },
  lastFrames: () => ({ lastFrameAt: Object.fromEntries([...silentPeers].map(([id, peer]) => [id, peer.lastFrameAt])) }),
  closes: () => ({ healthyCloses, lagMaxMs: lag.max / 1e6 }),
  // The records of the given peers only: the whole map would be a megabyte per process.
  trace: ({ ports }) => ({
    peers: Object.fromEntries(ports.filter((port) => traced?.peers[port]).map((port) => [port, traced.peers[port]])),
    blocks: traced?.blocks ?? [],
  }),
  exit: () => {
    shuttingDown = true;
    setImmediate(() => process.exit(0));
    return {};
  },
});

process.send({ ready: true, opened: total - failed, failed, lagMaxMs: lag.max / 1e6 });
lag.reset();
