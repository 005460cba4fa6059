/**
 * Compile-only checks of the plugin's types: `tsc -p tsconfig.json --noEmit` (part of the test
 * command) type-checks this file; nothing here is ever executed, and it is not a jest file.
 * Each `// @ts-expect-error` fails the type check if the line under it stops being an error.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import wsHeartbeat, { wsHeartbeat as namedExport, type WsHeartbeatOptions } from '@ws-heartbeat/fastify';
import type { Heartbeat, HeartbeatStats } from '@ws-heartbeat/core';
import { Registry } from 'prom-client';

export async function typedRoutes(): Promise<void> {
  const app = Fastify();
  const options: WsHeartbeatOptions = {
    heartbeat: { interval: 30_000, timeout: 10_000, closeTimeout: 5_000 },
    ws: { maxPayload: 65_536 },
    maxConnections: 1000,
    maxConnectionsPerClient: 10,
    statsRoute: '/ws-stats',
  };
  await app.register(wsHeartbeat, options);
  const sameFunction: typeof wsHeartbeat = namedExport;
  void sameFunction;

  // The decorator is the core engine.
  const engine: Heartbeat = app.heartbeat;
  const stats: HeartbeatStats = app.heartbeat.stats();
  void engine;
  void stats;

  // A typed handler: the socket is ws's WebSocket, the request a FastifyRequest with typed params.
  app.get(
    '/rooms/:id',
    { websocket: true, heartbeat: { interval: 1000 } },
    (socket: WebSocket, request: FastifyRequest<{ Params: { id: string } }>) => {
      const id: string = request.params.id;
      socket.send(id);
    },
  );

  // The route generic types the request without annotations; `this` is the Fastify instance.
  app.get<{ Params: { id: string }; Querystring: { token?: string } }>(
    '/users/:id',
    { websocket: true, heartbeat: { interval: 1000, timeout: 500, closeTimeout: 300 }, ws: { maxPayload: 1024 } },
    function (socket, request) {
      const id: string = request.params.id;
      const token: string | undefined = request.query.token;
      const self: FastifyInstance = this;
      request.log.info({ id, token }, 'joined');
      socket.on('message', (data) => socket.send(data));
      void self;
    },
  );

  // Unannotated parameters are typed from the route declaration.
  app.get('/echo', { websocket: true }, (socket, request) => {
    const ws: WebSocket = socket;
    const url: string = request.url;
    ws.send(url);
    // @ts-expect-error the socket is a WebSocket, not a Fastify reply
    socket.code(200);
  });

  // An async handler may return a promise.
  app.get('/async', { websocket: true }, async (socket) => {
    await Promise.resolve();
    socket.close(1000);
  });

  // The full form: wsHandler for upgrades, handler for plain GETs of the same URL.
  app.route<{ Params: { id: string } }>({
    method: 'GET',
    url: '/feed/:id',
    websocket: true,
    heartbeat: { interval: 2000 },
    wsHandler: (socket, request) => {
      const id: string = request.params.id;
      socket.send(id);
    },
    handler: async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => reply.send(request.params.id),
  });

  app.get(
    '/typo',
    {
      websocket: true,
      // @ts-expect-error misspelled heartbeat option: there is no `intervall`
      heartbeat: { intervall: 1000 },
    },
    (socket: WebSocket) => socket.close(),
  );

  // @ts-expect-error the first parameter of a WebSocket handler is a WebSocket, not a string
  app.get('/wrong', { websocket: true }, (socket: string, request: FastifyRequest) => request.log.info(socket));

  app.get<{ Params: { id: string } }>('/wrong-param/:id', { websocket: true }, (socket, request) => {
    // @ts-expect-error request.params.id is a string, not a number
    const id: number = request.params.id;
    socket.send(String(id));
  });

  // @ts-expect-error misspelled plugin option
  await app.register(wsHeartbeat, { heartbeat: { interval: 1000 }, statsRout: '/ws-stats' });

  // @ts-expect-error a heartbeat option of the wrong type
  await app.register(wsHeartbeat, { heartbeat: { interval: '1000' } });
}

export async function typedObservability(): Promise<void> {
  const app = Fastify({ logger: true });
  // The engine's own options go with the plugin's heartbeat; a prom-client Registry is a metricsRegistry.
  await app.register(wsHeartbeat, {
    heartbeat: { interval: 30_000, overloadThreshold: 200, logger: app.log },
    metricsRoute: '/metrics',
    metricsRegistry: new Registry(),
  });
  await app.register(wsHeartbeat, { heartbeat: { logger: false }, metricsRoute: false });

  // @ts-expect-error metricsRoute is a path or false
  await app.register(wsHeartbeat, { metricsRoute: true });

  // @ts-expect-error a registry needs metrics() and contentType
  await app.register(wsHeartbeat, { metricsRegistry: { registerMetric() {} } });

  app.get(
    '/engine-option-on-a-route',
    {
      websocket: true,
      // @ts-expect-error overloadThreshold is the engine's, not a route's
      heartbeat: { overloadThreshold: 200 },
    },
    (socket: WebSocket) => socket.close(),
  );
}
