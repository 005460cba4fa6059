// The probe: one connection of its own that sends a small message at exponential gaps (mean
// 5 ms) and times the server's echo. A server that blocks its event loop for 200 ms shows up here
// as echoes 200 ms late, which event-loop-delay histograms hide.
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import { nowMs, quantile, serve, sleep } from './lib.mjs';

const { url, client } = JSON.parse(process.argv[2]);
const MEAN_GAP_MS = 5;

const sentAt = new Map();
const rtts = [];
let seq = 0;
let timer;

function onEcho(message) {
  const at = sentAt.get(Number(message));
  if (at === undefined) return;
  sentAt.delete(Number(message));
  rtts.push(nowMs() - at);
}

let send;
if (client === 'socket.io') {
  const socket = io(url, { transports: ['websocket'], reconnection: false, query: { kind: 'p' } });
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('connect_error', reject));
  socket.on('echo', onEcho);
  send = (text) => socket.emit('echo', text);
} else {
  const ws = new WebSocket(`${url}/?kind=p`);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  ws.on('message', (data) => onEcho(String(data)));
  // The npm contender closes connections that send nothing for I + T: the probe is never idle
  // that long while it runs, and it only runs during the measured window.
  send = (text) => ws.send(text);
}

function next() {
  timer = setTimeout(() => {
    seq += 1;
    sentAt.set(seq, nowMs());
    send(String(seq));
    next();
  }, -Math.log(1 - Math.random()) * MEAN_GAP_MS);
}

serve({
  start: () => {
    next();
    return {};
  },
  stop: async () => {
    clearTimeout(timer);
    // Echoes still on their way count with their real delay; give them up to 5 s.
    const deadline = nowMs() + 5000;
    while (sentAt.size > 0 && nowMs() < deadline) await sleep(10);
    const lost = sentAt.size;
    const sorted = [...rtts].sort((a, b) => a - b);
    return {
      samples: sorted.length,
      lost,
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      max: sorted[sorted.length - 1] ?? null,
    };
  },
  exit: () => {
    setImmediate(() => process.exit(0));
    return {};
  },
});

process.send({ ready: true });
