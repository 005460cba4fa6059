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
