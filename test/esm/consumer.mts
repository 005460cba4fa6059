/**
 * Compile-only: an ES-module TypeScript project (module "nodenext") using the built packages
 * through their `exports` maps, as a user's project would. Checked by the test command after the
 * build; never executed.
 */
import Fastify from 'fastify';
import wsHeartbeat, { wsHeartbeat as named, type WsHeartbeatOptions } from '@ws-heartbeat/fastify';
import { Heartbeat, UpgradeRouter } from '@ws-heartbeat/core';

const options: WsHeartbeatOptions = { heartbeat: { interval: 1_000 }, statsRoute: '/ws-stats' };

const app = Fastify();
await app.register(wsHeartbeat, options); // the default import is the plugin itself
await Fastify().register(named, options);

app.get('/rooms/:id', { websocket: true, heartbeat: { timeout: 500 } }, (socket, request) => {
  socket.send(request.url);
});
const engine: Heartbeat = app.heartbeat;
engine.on('terminate', (_ws, reason) => reason satisfies 'timeout' | 'close-timeout' | 'backpressure' | 'shutdown');
new UpgradeRouter({ heartbeat: engine });

// The client package from an ES module: its exports map, ESM types, and the browser entry.
import { HeartbeatClient, backoffDelay, type ClientEventMap } from '@ws-heartbeat/client';
const client = new HeartbeatClient('ws://127.0.0.1:8080/ws', { reconnect: { maxRetries: 3 }, queueSize: 10 });
client.on('dead', (event: ClientEventMap['dead']) => event.reason satisfies 'timeout' | 'connection-lost');
backoffDelay(1, { minDelay: 1, maxDelay: 2, factor: 2, maxRetries: 1, resetAfter: 1 }) satisfies number;

// The types are really there (not `any` from an import the ESM build cannot resolve): each
// line below must be a type error.
// @ts-expect-error the attempt is a number
backoffDelay('first', { minDelay: 1, maxDelay: 2, factor: 2, maxRetries: 1, resetAfter: 1 });
// @ts-expect-error an unknown client option
new HeartbeatClient('ws://127.0.0.1:8080/ws', { reconect: false });
// @ts-expect-error the plugin has no such option
await Fastify().register(wsHeartbeat, { hearbeat: {} });
