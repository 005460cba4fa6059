import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyPluginCallback, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import FindMyWay from 'find-my-way';
import {
  DEFAULT_AUTH_TIMEOUT,
  UpgradeRouter,
  abortHandshake,
  adapterEngine,
  checkCloseOptions,
  checkKeys,
  collectMetrics,
  isMetricsRegistry,
  socketOnError,
  upgradeBelongsElsewhere,
  type MetricsRegistry,
  type PresenceCluster,
  type PathParams,
  type RouteWsOptions,
} from '@ws-heartbeat/core';

import type { WebSocketHandler, WsHeartbeatOptions } from './types.js';

export type { WebSocketHandler, WebSocketRouteOptions, WsHeartbeatOptions } from './types.js';

/** What the `'upgrade'` listener leaves on the raw request for the route handler. */
interface PendingUpgrade {
  readonly socket: Duplex;
  readonly head: Buffer;
  /** Refuses the upgrade at `authTimeout`; cleared once Fastify has answered or the route handler runs. */
  timer: NodeJS.Timeout | undefined;
  /** Set by the route handler, for the WebSocket handler. */
  request?: FastifyRequest;
  instance?: FastifyInstance;
}

const kUpgrade = Symbol('ws-heartbeat.upgrade');
type UpgradeRequest = IncomingMessage & { [kUpgrade]?: PendingUpgrade };

const PLUGIN_KEYS = new Set([
  'heartbeat',
  'cluster',
  'ws',
  'maxConnections',
  'maxConnectionsPerClient',
  'authTimeout',
  'statsRoute',
  'metricsRoute',
  'metricsRegistry',
  'retryWithin',
]);

/** A GET path option (`statsRoute`, `metricsRoute`): a path starting with "/", or false. */
function checkPathOption(name: string, value: unknown): void {
  if (value !== false && (typeof value !== 'string' || !value.startsWith('/'))) {
    throw new TypeError(`The "${name}" option must be a path starting with "/" or false: got ${String(value)}`);
  }
}

function pendingUpgrade(request: FastifyRequest): PendingUpgrade | undefined {
  return (request.raw as UpgradeRequest)[kUpgrade];
}

/** An HTTP answer written through Fastify to an upgrade socket ends that socket once written. */
function responseOnFinish(this: ServerResponse): void {
  clearTimeout((this.req as UpgradeRequest)[kUpgrade]?.timer);
  const socket = this.socket;
  if (socket === null) return;
  socket.once('finish', socket.destroy);
  socket.end();
}

/** Fastify's hooks took longer than `authTimeout`: whatever they answer later goes nowhere. */
function authTimeoutExpired(pending: PendingUpgrade): void {
  pending.timer = undefined;
  abortHandshake(pending.socket, 503);
}

/** A plain HTTP GET on a WebSocket route: the client must upgrade. */
function upgradeRequired(_request: FastifyRequest, reply: FastifyReply): void {
  void reply.code(426).header('Upgrade', 'websocket').header('Connection', 'Upgrade').send('Upgrade Required');
}

/**
 * Registration: every setup error (an invalid option, a decorator already present) is passed to
 * `done`, so that `register()` rejects with it instead of throwing out of Fastify's plugin loader.
 */
const plugin: FastifyPluginCallback<WsHeartbeatOptions> = (fastify, options, done) => {
  try {
    setUp(fastify, options);
  } catch (error) {
    done(error as Error);
    return;
  }
  done();
};

function setUp(fastify: FastifyInstance, options: WsHeartbeatOptions): void {
  checkKeys(options, PLUGIN_KEYS, '@ws-heartbeat/fastify');
  const {
    heartbeat,
    cluster,
    ws: wsDefaults = {},
    maxConnections,
    maxConnectionsPerClient,
    authTimeout = DEFAULT_AUTH_TIMEOUT,
    statsRoute = false,
    metricsRoute = false,
    metricsRegistry,
    retryWithin,
  } = options;
  checkCloseOptions({ retryWithin }); // throws for an invalid value, before anything is set up
  checkPathOption('statsRoute', statsRoute);
  checkPathOption('metricsRoute', metricsRoute);
  if (metricsRegistry !== undefined && !isMetricsRegistry(metricsRegistry)) {
    throw new TypeError(`The "metricsRegistry" option must be a prom-client Registry: got ${String(metricsRegistry)}`);
  }
  if (metricsRoute !== false && metricsRegistry === undefined) {
    throw new TypeError(`The "metricsRoute" option (${metricsRoute}) needs a "metricsRegistry" to serve`);
  }
  const router = new UpgradeRouter({
    heartbeat: adapterEngine(heartbeat, undefined, fastify.log).heartbeat,
    cluster,
    maxConnections,
    maxConnectionsPerClient,
    authTimeout, // validated there; the plugin's own timer below uses it
    onError: (error, { route, phase }) => fastify.log.error({ err: error, route, phase }, `ws-heartbeat: ${phase} failed on ${route}`),
  });
  try {
    setUpRoutes(fastify, router, { wsDefaults, authTimeout, statsRoute, metricsRoute, metricsRegistry, retryWithin, cluster });
  } catch (error) {
    // Nothing of a registration that failed stays behind: the engine's load monitor stops too.
    router.close().catch(() => undefined);
    throw error;
  }
}

interface RouteSetup {
  wsDefaults: RouteWsOptions;
  authTimeout: number;
  statsRoute: string | false;
  metricsRoute: string | false;
  metricsRegistry: MetricsRegistry | undefined;
  retryWithin: number | undefined;
  cluster: PresenceCluster | undefined;
}

function setUpRoutes(fastify: FastifyInstance, router: UpgradeRouter, setup: RouteSetup): void {
  const { wsDefaults, authTimeout, statsRoute, metricsRoute, metricsRegistry, retryWithin, cluster } = setup;
  fastify.decorate('heartbeat', router.heartbeat);
  fastify.decorate('cluster', cluster);
  // Throws if the registry already holds these metrics (another engine's, say): register() rejects.
  const removeMetrics = metricsRegistry === undefined ? undefined : collectMetrics(router.heartbeat, metricsRegistry);

  // The WebSocket routes again, in a router of Fastify's own kind and settings: it tells, before
  // any hook runs, whether an upgrade is ours or belongs to another 'upgrade' listener.
  const { caseSensitive, ignoreTrailingSlash, ignoreDuplicateSlashes, maxParamLength, allowUnsafeRegex, useSemicolonDelimiter } =
    fastify.initialConfig;
  // find-my-way reads `useSemicolonDelimiter` (Fastify passes it too); its types do not declare it.
  const routerConfig: FindMyWay.Config<FindMyWay.HTTPVersion.V1> & { useSemicolonDelimiter?: boolean } = {
    caseSensitive,
    ignoreTrailingSlash,
    ignoreDuplicateSlashes,
    maxParamLength,
    allowUnsafeRegex,
    useSemicolonDelimiter,
  };
  const webSocketPaths = FindMyWay(routerConfig);

  fastify.addHook('onRoute', (route) => {
    const wsHandler = route.wsHandler ?? (route.websocket === true ? (route.handler as unknown as WebSocketHandler) : undefined);
    if (wsHandler === undefined) return;
    if (route.method === 'HEAD') {
      // Fastify's automatic HEAD twin: a shorthand route's handler is the WebSocket handler, so
      // HEAD gets what a plain GET gets; a full-form route keeps its HTTP handler.
      if (route.wsHandler === undefined) route.handler = upgradeRequired;
      return;
    }
    if (route.method !== 'GET') throw new TypeError(`A WebSocket route must use GET: ${String(route.method)} ${route.url}`);
    if (typeof wsHandler !== 'function') throw new TypeError(`The WebSocket handler of ${route.url} must be a function`);
    const httpHandler = route.wsHandler !== undefined && route.handler !== undefined ? route.handler : upgradeRequired;
    const name = route.url;
    const { presence } = route;
    router.define(name, {
      handler(socket, req) {
        const pending = (req as UpgradeRequest)[kUpgrade]!;
        return wsHandler.call(pending.instance!, socket, pending.request!);
      },
      heartbeat: route.heartbeat,
      ws: { ...wsDefaults, ...route.ws },
      origins: route.origins,
      maxConnections: route.maxConnections,
      presence: presence && ((req) => presence((req as UpgradeRequest)[kUpgrade]!.request!)),
    });
    webSocketPaths.on('GET', name, () => undefined);
    route.handler = function webSocketRoute(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      const pending = pendingUpgrade(request);
      if (pending === undefined) return httpHandler.call(this, request, reply);
      clearTimeout(pending.timer);
      if (pending.socket.destroyed) {
        // Refused at authTimeout, or the client left while the hooks ran: nothing to upgrade.
        void reply.hijack();
        return;
      }
      pending.request = request;
      pending.instance = this;
      void reply.hijack();
      // From here on the socket is the router's: no HTTP response of Fastify's will use it.
      reply.raw.detachSocket(pending.socket as Socket);
      pending.socket.removeListener('error', socketOnError);
      router.accept(name, request.raw, pending.socket, pending.head, request.params as PathParams);
    } as RouteOptions['handler'];
  });

  // An upgrade that Fastify routed to an HTTP route gets Fastify's 404; its handler never runs.
  fastify.addHook('onRequest', (request, reply, next) => {
    if (pendingUpgrade(request) === undefined || request.is404 || webSocketPaths.find('GET', request.url) !== null) {
      next();
      return;
    }
    reply.callNotFound();
  });

  const server = fastify.server;
  function serverOnUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // Not one of our paths: when another listener is there, the socket is its business (otherwise
    // Fastify answers it, 404 for a path it does not know).
    if (webSocketPaths.find('GET', req.url ?? '/') === null && upgradeBelongsElsewhere(server)) return;
    socket.on('error', socketOnError);
    const pending: PendingUpgrade = { socket, head, timer: undefined };
    pending.timer = setTimeout(authTimeoutExpired, authTimeout, pending);
    pending.timer.unref();
    (req as UpgradeRequest)[kUpgrade] = pending;
    // Route the request through Fastify, with its hooks, as if it were an ordinary request.
    // Whatever Fastify answers instead of an upgrade goes out with `Connection: close`.
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Socket);
    res.once('finish', responseOnFinish);
    fastify.routing(req, res);
  }
  server.on('upgrade', serverOnUpgrade);

  if (statsRoute !== false) {
    fastify.get(statsRoute, async () => router.heartbeat.stats());
  }
  if (metricsRoute !== false && metricsRegistry !== undefined) {
    fastify.get(metricsRoute, async (_request, reply) => {
      const body = await metricsRegistry.metrics();
      return reply.type(metricsRegistry.contentType).send(body);
    });
  }

  // preClose runs before Fastify closes the HTTP server: 1001 (or 1012 with retryWithin) to every connection, stragglers
  // destroyed after their closeTimeout; the server then closes at once. Upgrades that arrive
  // meanwhile still reach the listener and are answered 503 (by Fastify, or by the router).
  fastify.addHook('preClose', async () => {
    await router.close({ retryWithin });
  });
  // router.close() is idempotent: here it only guarantees that the engine's timer is cleared.
  fastify.addHook('onClose', async () => {
    server.removeListener('upgrade', serverOnUpgrade);
    removeMetrics?.();
    await router.close();
  });
}

/**
 * Heartbeat-managed WebSocket routes for Fastify 5: declare a GET route with `websocket: true`
 * and its handler receives `(socket, request)` after the route's hooks ran. Dead peers are
 * pinged, timed out and cleaned up by `@ws-heartbeat/core`.
 *
 * @example
 * await app.register(wsHeartbeat, { heartbeat: { interval: 30_000 } });
 * app.get('/rooms/:id', { websocket: true }, (socket, request) => socket.send(request.params.id));
 */
export const wsHeartbeat = fp(plugin, { fastify: '5.x', name: '@ws-heartbeat/fastify' });
export default wsHeartbeat;
// Core's types (the engine, its options, events and stats), for users who import only this package.
export type * from '@ws-heartbeat/core';
