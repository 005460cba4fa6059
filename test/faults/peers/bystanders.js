'use strict';
/**
 * The fault suite's bystanders, in a process of their own: whatever the test process does (a GC
 * pause, a second of deflating), they answer every ping at once. Opens `count` ordinary `ws`
 * clients to `url` and reports over IPC, with monotonic times (process.hrtime, as mono()):
 *   { type: 'open', ports }            once all are open (their local ports, in order)
 *   { type: 'ping', i, at }            each ping received (ws has already queued the pong)
 *   { type: 'closed', i, code, at }    each close
 *   { type: 'echoed', id, failed }     answer to { cmd: 'echo', id, timeout }: the clients whose
 *                                      echo did not come back within `timeout` ms
 * and closes every client with 1000 on { cmd: 'close' }, then ends once all are closed.
 *
 * Usage: fork(bystanders.js, [url, count])
 */
const WebSocket = require('ws');

const [url, countArg] = process.argv.slice(2);
const mono = () => Number(process.hrtime.bigint()) / 1e6;
const post = (message) => process.connected && process.send(message);

function open(i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('error', reject);
    ws.once('open', () => {
      ws.off('error', reject);
      ws.on('error', () => {});
      ws.on('ping', () => post({ type: 'ping', i, at: mono() }));
      ws.on('close', (code) => post({ type: 'closed', i, code, at: mono() }));
      resolve(ws);
    });
  });
}

/** Sends `text` on `ws` and resolves true once it comes back, false after `timeout` ms. */
function echo(ws, text, timeout) {
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeout, false);
    function onMessage(data) {
      if (data.toString() === text) done(true);
    }
    function done(ok) {
      clearTimeout(timer);
      ws.off('message', onMessage);
      resolve(ok);
    }
    ws.on('message', onMessage);
    ws.send(text);
  });
}

Promise.all(Array.from({ length: Number(countArg) }, (_, i) => open(i))).then(
  (clients) => {
    post({ type: 'open', ports: clients.map((ws) => ws._socket.localPort) });
    process.on('message', async (command) => {
      if (command.cmd === 'close') {
        // Once every close is reported, let go of the channel: the process then ends by itself.
        let open = clients.length;
        for (const ws of clients) {
          ws.once('close', () => --open === 0 && setImmediate(() => process.disconnect()));
          ws.close(1000);
        }
      } else if (command.cmd === 'echo') {
        const results = await Promise.all(clients.map((ws, i) => echo(ws, `bystander ${i}`, command.timeout)));
        post({ type: 'echoed', id: command.id, failed: results.flatMap((ok, i) => (ok ? [] : [i])) });
      }
    });
  },
  (error) => post({ type: 'error', message: String(error) }),
);
