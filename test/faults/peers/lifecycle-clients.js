'use strict';
/**
 * Client process of test/faults/lifecycle.test.ts: opens WebSocket clients when told to, and
 * reports each one's local TCP port (the server names connections by it) over IPC. The test
 * SIGSTOPs or SIGKILLs the whole process to make all its clients silent or gone at once.
 *
 * In:  { cmd: 'open', id, url, kind }   kind: 'healthy' (a ws client that answers pings),
 *                                       'mute' (a ws client with autoPong off, that never sends),
 *                                       'raw' (a hand-made handshake, then the socket stops reading)
 *      { cmd: 'close', id }             a clean close (1000) of a ws client
 * Out: { type: 'opened', id, port, at } | { type: 'failed', id, message } | { type: 'closed', id, code, at }
 *      (`at` in process.hrtime milliseconds, the clock of every process of the suite)
 */
const crypto = require('node:crypto');
const net = require('node:net');
const WebSocket = require('ws');

const clients = new Map();

function mono() {
  return Number(process.hrtime.bigint()) / 1e6;
}

function post(message) {
  if (process.connected) process.send(message);
}

function openWs(id, url, autoPong) {
  const ws = new WebSocket(url, { autoPong });
  let open = false;
  ws.on('error', (error) => {
    if (!open) post({ type: 'failed', id, message: String(error) });
  });
  ws.once('open', () => {
    open = true;
    clients.set(id, ws);
    post({ type: 'opened', id, port: ws._socket.localPort, at: mono() });
  });
  ws.on('close', (code) => {
    if (open) post({ type: 'closed', id, code, at: mono() });
  });
}

function openRaw(id, url) {
  const { hostname, port, pathname } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  let head = '';
  let open = false;
  socket.on('error', (error) => {
    if (!open) post({ type: 'failed', id, message: String(error) });
  });
  socket.once('connect', () => {
    const key = crypto.randomBytes(16).toString('base64');
    socket.write(
      `GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
  });
  socket.on('data', function onData(chunk) {
    head += chunk.toString('latin1');
    if (!head.includes('\r\n\r\n')) return;
    // From here on nothing is read: the server's pings stay in the kernel's buffers, unanswered.
    socket.off('data', onData);
    socket.pause();
    if (!head.startsWith('HTTP/1.1 101')) {
      post({ type: 'failed', id, message: head.split('\r\n')[0] });
      socket.destroy();
      return;
    }
    open = true;
    clients.set(id, socket);
    post({ type: 'opened', id, port: socket.localPort, at: mono() });
  });
}

process.on('message', (message) => {
  if (message.cmd === 'open') {
    if (message.kind === 'raw') openRaw(message.id, message.url);
    else openWs(message.id, message.url, message.kind === 'healthy');
  } else if (message.cmd === 'close') {
    clients.get(message.id)?.close(1000);
  }
});
