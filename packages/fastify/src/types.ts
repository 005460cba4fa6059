// The plugin's public types: its options, a WebSocket route's options and handler, and what it
// adds to Fastify's own types (the \`heartbeat\` and \`cluster\` decorators, the \`websocket\` route option).
import type {
  ContextConfigDefault,
  FastifyBaseLogger,
  FastifyInstance,
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
} from 'fastify';
import type { WebSocket } from 'ws';
import type {
  Heartbeat,
  HeartbeatEngineOptions,
  HeartbeatOptions,
  MetricsRegistry,
  OriginPolicy,
  PresenceCluster,
  PresenceKeys,
  RouteWsOptions,
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
