'use strict';
/**
 * Child process of test/faults/peers.test.ts: one ordinary `ws` client (it answers pings by
 * itself) to argv[2]. Reports { type: 'open', port } (its local port) and { type: 'ping' } for
 * every ping over IPC. The test SIGSTOPs it, so from then on nothing answers the server; the
 * test's cleanup continues and kills it.
 *
 * Usage: fork(held-peer.js, [url])
 */
const WebSocket = require('ws');

const ws = new WebSocket(process.argv[2]);
ws.once('open', () => process.send({ type: 'open', port: ws._socket.localPort }));
ws.on('ping', () => process.send({ type: 'ping' }));
ws.on('error', (error) => process.send({ type: 'error', message: String(error) }));
