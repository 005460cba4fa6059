import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type {
  ContextConfigDefault,
  FastifyBaseLogger,
  FastifyInstance,
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  FastifySchema,
  FastifyTypeProvider,
  FastifyTypeProviderDefault,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerBase,
  RawServerDefault,
  RequestGenericInterface,
  RouteGenericInterface,
  RouteOptions,
} from 'fastify';
import fp from 'fastify-plugin';
import FindMyWay from 'find-my-way';
import type { WebSocket } from 'ws';
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
  type Heartbeat,
  type HeartbeatEngineOptions,
  type HeartbeatOptions,
  type MetricsRegistry,
  type OriginPolicy,
  type PresenceCluster,
  type PresenceKeys,
  type PathParams,
  type RouteWsOptions,
} from '@ws-heartbeat/core';

/**
 * Receives each accepted WebSocket of a route, with the Fastify request its hooks saw
 * (`params`, `query`, `headers`, `log`, and whatever earlier hooks decorated). `this` is the
 * Fastify instance the route was declared in.
 */
export type WebSocketHandler<
  RawServer extends RawServerBase = RawServerDefault,
  RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
  RequestGeneric extends RequestGenericInterface = RequestGenericInterface,
  ContextConfig = ContextConfigDefault,
  SchemaCompiler extends FastifySchema = FastifySchema,
  TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
  Logger extends FastifyBaseLogger = FastifyBaseLogger,
> = (
  this: FastifyInstance,
  socket: WebSocket,
  request: FastifyRequest<RequestGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>,
) => void | Promise<unknown>;

/** Route options of a WebSocket route, beside Fastify's own. */
export interface WebSocketRouteOptions {
  /** Marks a GET route as a WebSocket route: its handler receives `(socket, request)`. */
  websocket?: boolean;
  /**
   * Heartbeat options of this route, over the plugin's `heartbeat` option.
   * @default the plugin's heartbeat options
   */
  heartbeat?: HeartbeatOptions;
  /**
   * `ws` server options of this route (`maxPayload`, `perMessageDeflate`, ...), over the plugin's `ws` option.
   * @default the plugin's ws options
   */
  ws?: RouteWsOptions;
  /**
   * Accepted `Origin` values (a list, or a function of the header); others get 403. A request
   * without `Origin` (a non-browser client) passes a list.
   * @default every origin is accepted
   */
  origins?: OriginPolicy;
  /**
   * Most connections on this route; beyond it upgrades get 503.
   * @default Infinity
   */
  maxConnections?: number;
  /**
   * The presence keys (a user id, a room) each connection holds in the plugin's `cluster` until it
   * closes, from the Fastify request its hooks saw: `(request) => request.user.id`.
   * @default none
   */
  presence?: (request: FastifyRequest) => PresenceKeys;
}

/** Options of the plugin. */
export interface WsHeartbeatOptions {
  /**
   * Heartbeat options for every WebSocket route (`interval`, `timeout`, `closeTimeout`, ...), and
   * the engine's own (`overloadThreshold`, `logger`). The engine logs through `app.log` unless
   * `logger` is set here (`false` for no logging): the rule of every adapter, where the
   * framework's logger is the default and a logger given is used instead.
   * @default the core defaults: interval 30 s, timeout 10 s, closeTimeout 5 s, overloadThreshold 100 ms; logger `app.log`
   */
  heartbeat?: HeartbeatEngineOptions;
  /**
   * A cluster that shares presence between processes (`new Cluster({ url })` of
   * `@ws-heartbeat/cluster`), decorated as `app.cluster`: started with the engine, joined by each
   * route's `presence` keys, and closed first at `app.close()` (this node's keys go offline at once).
   * @default none
   */
  cluster?: PresenceCluster;
  /**
   * `ws` server options for every WebSocket route; a route's `ws` option overrides them.
   * @default `ws`'s defaults, with `maxPayload` 1 MiB (a larger message closes its connection with 1009)
   */
  ws?: RouteWsOptions;
  /**
   * Most WebSocket connections over all routes; beyond it upgrades get 503.
   * @default Infinity
   */
  maxConnections?: number;
  /**
   * Most WebSocket connections from one remote address; beyond it upgrades get 429.
   * @default Infinity
   */
  maxConnectionsPerClient?: number;
  /**
   * Milliseconds an upgrade request may spend in Fastify's router and the route's hooks (an
   * authentication hook, say) before the route handler runs. Past it the upgrade is refused with
   * 503 and its socket destroyed, so a hook that never answers holds no socket for longer; a
   * late answer of the hook is ignored.
   * @default 10_000
   */
  authTimeout?: number;
  /**
   * A path at which a GET answers `app.heartbeat.stats()` as JSON, or `false` for none.
   * @default false
   */
  statsRoute?: string | false;
  /**
   * A path at which a GET answers `metricsRegistry.metrics()` (Prometheus text), or `false` for
   * none. Needs `metricsRegistry`.
   * @default false
   */
  metricsRoute?: string | false;
  /**
   * A prom-client `Registry` to which the engine's metrics (`ws_heartbeat_*`) are added at
   * registration and from which they are removed at `app.close()`. Without `metricsRoute`, the
   * application serves the registry itself.
   * @default none: no metrics
   */
  metricsRegistry?: MetricsRegistry;
  /**
   * On `app.close()`, tell the clients to come back within this many ms: every connection is
   * closed with code 1012 and a reason that carries the window (the retry hint of
   * `@ws-heartbeat/protocol`), which `@ws-heartbeat/client` reads to reconnect at a random moment
   * in it. Without it, connections get 1001 `Server shutting down`.
   * @default none
   */
  retryWithin?: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The heartbeat engine of every WebSocket route: `stats()` and its events. */
    heartbeat: Heartbeat;
    /** The plugin's `cluster` option (undefined without one). */
    cluster: PresenceCluster | undefined;
  }

  interface RouteShorthandOptions<RawServer extends RawServerBase = RawServerDefault> extends WebSocketRouteOptions {}

  interface RouteShorthandMethod<
    RawServer extends RawServerBase = RawServerDefault,
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    RawReply extends RawReplyDefaultExpression<RawServer> = RawReplyDefaultExpression<RawServer>,
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
    Logger extends FastifyBaseLogger = FastifyBaseLogger,
  > {
    <
      RequestGeneric extends RequestGenericInterface = RequestGenericInterface,
      ContextConfig = ContextConfigDefault,
      SchemaCompiler extends FastifySchema = FastifySchema,
      InnerLogger extends Logger = Logger,
    >(
      path: string,
      opts: RouteShorthandOptions<RawServer, RawRequest, RawReply, RequestGeneric, ContextConfig, SchemaCompiler, TypeProvider, InnerLogger> & {
        websocket: true;
      },
      handler: WebSocketHandler<RawServer, RawRequest, RequestGeneric, ContextConfig, SchemaCompiler, TypeProvider, InnerLogger>,
    ): FastifyInstance<RawServer, RawRequest, RawReply, InnerLogger, TypeProvider>;
  }

  interface RouteOptions<
    RawServer extends RawServerBase = RawServerDefault,
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    RawReply extends RawReplyDefaultExpression<RawServer> = RawReplyDefaultExpression<RawServer>,
    RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
    ContextConfig = ContextConfigDefault,
    SchemaCompiler extends FastifySchema = FastifySchema,
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
    Logger extends FastifyBaseLogger = FastifyBaseLogger,
  > extends WebSocketRouteOptions {
    /**
     * The WebSocket handler of a route declared with `app.route()`; the route's `handler` (which
     * Fastify requires) then serves plain HTTP GETs of the same URL.
     */
    wsHandler?: WebSocketHandler<RawServer, RawRequest, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>;
  }
}

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
