/**
 * A ws client for a network namespace (`ip netns exec NS node netns-peer.js URL`): it connects,
 * prints one JSON line `{"open":<local port>}`, then `{"ping":<mono ms>}` for every ping it
 * received (and answered: `ws` sends the pong before it emits 'ping'), and otherwise just holds
 * the connection until it is killed.
 */
'use strict';
const WebSocket = require('ws');

const mono = () => Number(process.hrtime.bigint()) / 1e6;
const say = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

const ws = new WebSocket(process.argv[2]);
ws.on('open', () => say({ open: ws._socket.localPort }));
ws.on('ping', () => say({ ping: mono() }));
ws.on('close', (code) => say({ close: code, at: mono() }));
ws.on('error', (error) => say({ error: String(error) }));
