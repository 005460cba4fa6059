'use strict';
/**
 * A `ws` peer of the fault suite's transfer scenarios (transfers.test.ts), in a process of its own
 * so that the test can SIGSTOP it in the middle of a transfer.
 *
 *   node transfer-peer.js URL RATE DEFLATE
 *
 * With a RATE, it reaches the server through a slow uplink of its own: a TCP relay in this process
 * that passes what the client sends on to the server at RATE bytes per second, in 16 KiB slices.
 * One large message then takes seconds to leave, and the client's answer to a ping of the server
 * waits behind it, as on a real slow link. What the server sends is relayed at full speed. With a
 * RATE of 0 it connects directly (for downloads: a relay would hold megabytes of its own between
 * the reader and the server). DEFLATE is `deflate` for permessage-deflate, `plain` for none.
 *
 * IPC, every time in process.hrtime milliseconds (the clock every process of the suite shares):
 *   → { type: 'open', port }                  once ws is open; port: its own port toward the server (the server's remotePort)
 *   ← { cmd: 'upload', size }                 sends one binary message of `size` random bytes
 *   → { type: 'uploading', digest }           their SHA-1
 *   → { type: 'relayed', bytes, at }          what the relay has passed on to the server so far
 *   ← { cmd: 'send', text }                   sends a text message (a command of the fixture's, say)
 *   → { type: 'message', length, digest, at } a message arrived, with the SHA-1 of its bytes
 *   ← { cmd: 'read-slowly', rate }            from now on the client reads at most `rate` bytes per second
 *   → { type: 'read', bytes, at }             what it has read so far while reading slowly
 *   → { type: 'ping', at }                    a ping of the server's arrived (ws has answered it)
 *   → { type: 'closed', code, at }
 */
const net = require('node:net');
const crypto = require('node:crypto');
const WebSocket = require('ws');

const [url, rateArg, deflateArg] = process.argv.slice(2);
const RATE = Number(rateArg); // bytes per second
const SLICE = 16 * 1024;
const target = new URL(url);
const mono = () => Number(process.hrtime.bigint()) / 1e6;
const post = (message) => process.connected && process.send(message);
const digest = (bytes) => crypto.createHash('sha1').update(bytes).digest('hex');

let relayed = 0;
/** The relay's own port toward the server (the server's `remotePort`), once it connected. */
let relayPort = -1;

const relay = net.createServer((inbound) => {
  const outbound = net.connect(Number(target.port), target.hostname);
  outbound.once('connect', () => {
    relayPort = outbound.localPort;
  });
  const end = () => {
    inbound.destroy();
    outbound.destroy();
  };
  for (const socket of [inbound, outbound]) {
    socket.on('error', end);
    socket.on('close', end);
  }
  outbound.pipe(inbound);
  // Client → server at RATE: each chunk goes out in slices, and the next chunk is read only when
  // the last slice has left.
  inbound.on('data', (chunk) => {
    inbound.pause();
    let offset = 0;
    const step = () => {
      if (outbound.destroyed) return;
      const slice = chunk.subarray(offset, offset + SLICE);
      offset += slice.length;
      outbound.write(slice);
      relayed += slice.length;
      post({ type: 'relayed', bytes: relayed, at: mono() });
      setTimeout(offset < chunk.length ? step : () => inbound.resume(), (slice.length / RATE) * 1000);
    };
    step();
  });
});

function start(via) {
  const ws = new WebSocket(via, { perMessageDeflate: deflateArg === 'deflate' });
  // Commands follow 'open', so it is posted once ws is open (a send before that throws).
  ws.once('open', () => post({ type: 'open', port: RATE === 0 ? ws._socket.localPort : relayPort }));
  ws.on('error', () => {});
  ws.on('ping', () => post({ type: 'ping', at: mono() }));
  ws.on('close', (code) => {
    post({ type: 'closed', code, at: mono() });
    process.disconnect();
    if (relay.listening) relay.close();
  });
  ws.on('message', (data) => {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(data);
    post({ type: 'message', length: bytes.length, digest: digest(bytes), at: mono() });
  });
  process.on('message', (message) => {
    if (message.cmd === 'upload') {
      const bytes = crypto.randomBytes(message.size);
      post({ type: 'uploading', digest: digest(bytes) });
      ws.send(bytes, { binary: true });
    } else if (message.cmd === 'send') {
      ws.send(message.text);
    } else if (message.cmd === 'read-slowly') {
      // Paused whenever it is ahead of the rate. ws.pause(), not the socket's: ws resumes its
      // socket by itself after each chunk it parsed.
      const started = mono();
      let read = 0;
      const ahead = () => read >= (message.rate / 1000) * (mono() - started);
      ws._socket.on('data', (chunk) => {
        read += chunk.length;
        post({ type: 'read', bytes: read, at: mono() });
        if (ahead()) ws.pause();
      });
      ws.pause();
      setInterval(() => ahead() || ws.resume(), 10).unref();
    }
  });
}

if (RATE === 0) start(url);
else relay.listen(0, '127.0.0.1', () => start(`ws://127.0.0.1:${relay.address().port}${target.pathname}${target.search}`));
