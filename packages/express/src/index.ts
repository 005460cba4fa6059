import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQuery, type ParsedUrlQuery } from 'node:querystring';
import type { Duplex } from 'node:stream';
import parseUrl from 'parseurl';
import { match, type MatchFunction } from 'path-to-regexp';
import type { WebSocket } from 'ws';
import {
  UpgradeRouter,
  abortHandshake,
  adapterEngine,
  checkKeys,
  collectMetrics,
  isMetricsRegistry,
  UpgradeListeners,
  type Authenticate,
  type CloseOptions,
  type Heartbeat,
  type HeartbeatEngineOptions,
  type HeartbeatLogger,
  type HeartbeatOptions,
  type MetricsRegistry,
  type OriginPolicy,
  type PresenceCluster,
  type PresenceKeys,
  type RouteWsOptions,
  type RouterErrorPhase,
  type UpgradeServer,
} from '@ws-heartbeat/core';

/** Route parameters as Express 5 gives them: a wildcard (`*rest`) is an array of segments. */
export type RouteParams = Record<string, string | string[]>;

/** The upgrade request a handler receives, with `params` and `query` as Express 5 fills them. */
export type WebSocketRequest<P extends RouteParams = RouteParams> = IncomingMessage & {
  /** The route's parameters, percent-decoded. */
  params: P;
  /** The query string, parsed like Express 5's default ("simple") query parser. */
  query: ParsedUrlQuery;
};

/** Receives each accepted connection of a route, already tracked by the heartbeat engine. */
export type WebSocketHandler<P extends RouteParams = RouteParams> = (ws: WebSocket, req: WebSocketRequest<P>) => void | Promise<unknown>;

/** Options of one WebSocket route. */
export interface WebSocketRouteOptions<P extends RouteParams = RouteParams> {
  /**
   * Heartbeat options of this route, over the constructor's `heartbeat` option.
   * @default the constructor's heartbeat options
   */
  heartbeat?: HeartbeatOptions;
  /**
   * `ws` server options of this route (`maxPayload`, `perMessageDeflate`, ...), over the constructor's `ws` option.
   * @default the constructor's ws options
   */
  ws?: RouteWsOptions;
  /**
   * Decides, before any 101, whether the upgrade may proceed: `true` accepts, `false` refuses
   * with 401, a number from 400 to 599 refuses with that status. It sees `req.params` and `req.query`.
   * @default every request is accepted
   */
  authenticate?: (req: WebSocketRequest<P>) => ReturnType<Authenticate>;
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
   * The presence keys (a user id, a room) each connection holds in the `cluster` until it closes,
   * from its request: `(req) => req.params.user`. Needs the `cluster` option.
   * @default none
   */
  presence?: (req: WebSocketRequest<P>) => PresenceKeys;
}

/** Options of {@link WebSocketRoutes}. */
export interface WebSocketRoutesOptions {
  /**
   * Heartbeat options for every route (`interval`, `timeout`, `closeTimeout`, ...), and the
   * engine's `overloadThreshold`.
   * @default the core defaults: interval 30 s, timeout 10 s, closeTimeout 5 s, overloadThreshold 100 ms
   */
  heartbeat?: HeartbeatEngineOptions;
  /**
   * Where the engine writes what it does: each ping and pong at debug, each termination at info,
   * an overload of the event loop at warn and its end at info. A pino-compatible logger (pino
   * itself, or anything with `debug`, `info` and `warn` taking `(object, message)`); `false` for none.
   * The same setting as `heartbeat.logger`: give one of them (both is a `TypeError`).
   * @default false
   */
  logger?: HeartbeatLogger | false;
  /**
   * `ws` server options for every route; a route's `ws` option overrides them.
   * @default `ws`'s defaults, with `maxPayload` 1 MiB (a larger message closes its connection with 1009)
   */
  ws?: RouteWsOptions;
  /**
   * Most connections over all routes; beyond it upgrades get 503.
   * @default Infinity
   */
  maxConnections?: number;
  /**
   * Most connections from one remote address; beyond it upgrades get 429.
   * @default Infinity
   */
  maxConnectionsPerClient?: number;
  /**
   * Milliseconds an asynchronous `authenticate` may take; then the upgrade gets 503.
   * @default 10_000
   */
  authTimeout?: number;
  /**
   * A cluster that shares presence between processes (`new Cluster({ url })` of
   * `@ws-heartbeat/cluster`): started with the engine, joined by each route's `presence` keys,
   * closed first by {@link WebSocketRoutes.close} (this node's keys go offline at once).
   * @default none
   */
  cluster?: PresenceCluster;
  /**
   * Match paths case-sensitively, like Express's `case sensitive routing` setting.
   * @default false
   */
  caseSensitive?: boolean;
  /**
   * Treat `/a` and `/a/` as different paths, like Express's `strict routing` setting.
   * @default false
   */
  strict?: boolean;
  /**
   * Receives the errors caught so that they cannot crash the process: a throwing origin check or
   * `authenticate`, a throwing or rejecting handler.
   * @default reports each one with `process.emitWarning`
   */
  onError?: (error: unknown, info: { route: string; phase: RouterErrorPhase }) => void;
}

interface Route {
  readonly path: string;
  readonly match: MatchFunction<RouteParams>;
}

const OPTION_KEYS = new Set(['heartbeat', 'cluster', 'ws', 'maxConnections', 'maxConnectionsPerClient', 'authTimeout', 'caseSensitive', 'strict', 'onError', 'logger']);
const METRICS_FAILED = 'Metrics unavailable\n';
const ROUTE_KEYS = new Set(['heartbeat', 'ws', 'authenticate', 'origins', 'maxConnections', 'presence']);
const TRAILING_SLASHES = /\/+$/;

/** Express's param decoding: a bad percent escape is the client's error (400). */
function decodeParam(value: string): string {
  if (value.length === 0 || !value.includes('%')) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    throw new BadRequest();
  }
}

class BadRequest extends Error {}

/** A plain-text answer of a metrics handler: its status and body, unless the response already began. */
function endPlain(res: ServerResponse, status: number, contentType: string, body: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/**
 * WebSocket routes for an Express application, with heartbeat: declared with Express 5 paths,
 * matched as Express 5 matches them, and served from the `http.Server`'s `'upgrade'` event —
 * never inside the Express middleware chain, which is what breaks on Node 20 ("RSV1 must be
 * clear"). Nothing of Express is patched or even imported.
 *
 * @example
 * const sockets = new WebSocketRoutes({ heartbeat: { interval: 30_000 } });
 * sockets.route('/rooms/:id', (ws, req) => ws.send(`room ${req.params.id}`));
 * const server = app.listen(3000);
 * sockets.mount(server);
 */
export class WebSocketRoutes {
  /** The heartbeat engine of every route: `stats()` and its events. */
  readonly heartbeat: Heartbeat;
  /** The `cluster` option: presence reads and cluster events. */
  readonly cluster: PresenceCluster | undefined;

  readonly #router: UpgradeRouter;
  readonly #routes: Route[] = [];
  readonly #wsDefaults: RouteWsOptions;
  readonly #caseSensitive: boolean;
  readonly #strict: boolean;
  readonly #listeners = new UpgradeListeners(
    (req, socket, head) => this.#dispatch(req, socket, head),
    () => this.#closePromise !== undefined,
  );
  /** Per registry given to {@link metricsHandler}: its handler, and the remover of its metrics. */
  readonly #metrics = new Map<MetricsRegistry, { handler: (req: IncomingMessage, res: ServerResponse) => void; remove: () => void }>();
  readonly #logger: HeartbeatLogger | false;
  #closePromise: Promise<void> | undefined;

  constructor(options: WebSocketRoutesOptions = {}) {
    checkKeys(options, OPTION_KEYS, '@ws-heartbeat/express');
    const { heartbeat, cluster, logger, ws = {}, maxConnections, maxConnectionsPerClient, authTimeout, caseSensitive = false, strict = false, onError } = options;
    if (typeof caseSensitive !== 'boolean') throw new TypeError(`The "caseSensitive" option must be a boolean: got ${String(caseSensitive)}`);
    if (typeof strict !== 'boolean') throw new TypeError(`The "strict" option must be a boolean: got ${String(strict)}`);
    const engine = adapterEngine(heartbeat, logger);
    this.#router = new UpgradeRouter({ heartbeat: engine.heartbeat, cluster, maxConnections, maxConnectionsPerClient, authTimeout, onError });
    this.cluster = cluster;
    this.heartbeat = this.#router.heartbeat;
    this.#logger = engine.logger;
    this.#wsDefaults = ws;
    this.#caseSensitive = caseSensitive;
    this.#strict = strict;
  }

  /**
   * Declares a WebSocket route. `path` uses Express 5's syntax (`/rooms/:id`, `/files/*rest`,
   * `/docs{/:lang}`); the first declared route that matches wins. Throws a `TypeError` for an
   * invalid path or option. Returns `this`.
   */
  route<P extends RouteParams = RouteParams>(path: string, handler: WebSocketHandler<P>): this;
  route<P extends RouteParams = RouteParams>(path: string, options: WebSocketRouteOptions<P>, handler: WebSocketHandler<P>): this;
  route<P extends RouteParams = RouteParams>(
    path: string,
    optionsOrHandler: WebSocketRouteOptions<P> | WebSocketHandler<P>,
    maybeHandler?: WebSocketHandler<P>,
  ): this {
    const options = typeof optionsOrHandler === 'function' ? {} : optionsOrHandler;
    const handler = typeof optionsOrHandler === 'function' ? optionsOrHandler : maybeHandler;
    if (typeof path !== 'string' || !path.startsWith('/')) throw new TypeError(`A route path must be a string starting with "/": got ${String(path)}`);
    if (typeof handler !== 'function') throw new TypeError(`The handler of ${path} must be a function`);
    checkKeys(options, ROUTE_KEYS, 'route');
    let matcher: MatchFunction<RouteParams>;
    try {
      matcher = match<RouteParams>(this.#strict || path === '/' ? path : path.replace(TRAILING_SLASHES, ''), {
        sensitive: this.#caseSensitive,
        trailing: !this.#strict,
        decode: decodeParam,
      });
    } catch (error) {
      throw new TypeError(`Invalid route path ${JSON.stringify(path)}: ${(error as Error).message}`);
    }
    const { authenticate, presence } = options;
    this.#router.define(path, {
      handler: (ws, req) => handler(ws, req as WebSocketRequest<P>),
      heartbeat: options.heartbeat,
      ws: { ...this.#wsDefaults, ...options.ws },
      authenticate: authenticate && ((req) => authenticate(req as WebSocketRequest<P>)),
      presence: presence && ((req) => presence(req as WebSocketRequest<P>)),
      origins: options.origins,
      maxConnections: options.maxConnections,
    });
    this.#routes.push({ path, match: matcher });
    return this;
  }

  /**
   * Serves the routes on `server` (what `app.listen()` returns, or an `http`/`https` server made
   * with the app): adds one `'upgrade'` listener. Upgrades whose path matches no route get 404
   * (503 while closing), unless the server has another `'upgrade'` listener; then they are left
   * to it, untouched. Returns the function that removes this listener again (the connections
   * stay), as core's `router.attach()` does; mounting the same server twice returns the same
   * function. {@link close} removes every listener once the connections are gone.
   */
  mount(server: UpgradeServer): () => void {
    if (this.#closePromise) throw new Error('WebSocketRoutes is closed: it cannot be mounted');
    return this.#listeners.add(server);
  }

  /**
   * A request handler that answers `heartbeat.stats()` as JSON: `app.get('/ws-stats', sockets.statsHandler)`.
   * It works with plain `node:http` too.
   */
  readonly statsHandler = (_req: IncomingMessage, res: ServerResponse): void => {
    const body = JSON.stringify(this.heartbeat.stats());
    res.statusCode = 200;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(body);
  };

  /**
   * A request handler that answers the Prometheus metrics of `registry` (a prom-client
   * `Registry`), with the engine's metrics (`ws_heartbeat_*`) added to it:
   * `app.get('/metrics', sockets.metricsHandler(registry))`. It works with plain `node:http` too.
   * The metrics are added on the first call for a registry; later calls with the same registry
   * return the same handler. {@link close} removes them. If `registry.metrics()` fails, the
   * handler answers 500 (and tells the `logger` at warn, if there is one). Throws if the registry
   * already holds a metric of one of these names, or after `close()`.
   */
  metricsHandler(registry: MetricsRegistry): (req: IncomingMessage, res: ServerResponse) => void {
    if (!isMetricsRegistry(registry)) throw new TypeError(`metricsHandler() needs a prom-client Registry: got ${String(registry)}`);
    const known = this.#metrics.get(registry);
    if (known !== undefined) return known.handler;
    if (this.#closePromise) throw new Error('WebSocketRoutes is closed: it has no metrics to serve');
    const remove = collectMetrics(this.heartbeat, registry);
    const logger = this.#logger;
    const handler = function metricsHandler(_req: IncomingMessage, res: ServerResponse): void {
      const answered = (body: string): void => endPlain(res, 200, registry.contentType, body);
      const failed = (error: unknown): void => {
        if (logger !== false) logger.warn({ err: error }, 'ws-heartbeat: metrics failed');
        endPlain(res, 500, 'text/plain; charset=utf-8', METRICS_FAILED);
      };
      // A registry that throws instead of rejecting, or a response that throws, is a 500 (or a destroyed response) too.
      new Promise<string>((resolve) => resolve(registry.metrics()))
        .then(answered, failed)
        .catch(() => res.destroy());
    };
    this.#metrics.set(registry, { handler, remove });
    return handler;
  }

  /**
   * Shuts down, as core's `router.close()` does: upgrades get 503 from now on, every connection
   * gets close code 1001 (or, with `options.retryWithin`, 1012 and a reason that carries the
   * window, which `@ws-heartbeat/client` reads to come back at a random moment in it), those
   * still open after their route's `closeTimeout` are destroyed (reason `'shutdown'`); once all
   * are gone, the `'upgrade'` listeners and the metrics of {@link metricsHandler} are removed.
   * Resolves then; `server.close()` can complete and nothing of this package keeps the process
   * alive. Safe to call more than once.
   */
  close(options: CloseOptions = {}): Promise<void> {
    this.#closePromise ??= this.#router.close(options).then(() => {
      this.#listeners.removeAll();
      for (const { remove } of this.#metrics.values()) remove();
      this.#metrics.clear();
    });
    return this.#closePromise;
  }

  /** Matches a route as Express would and hands the upgrade to it; false when none matches. */
  #dispatch(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = parseUrl(req);
    const pathname = url?.pathname;
    if (pathname == null) return false;
    for (const route of this.#routes) {
      let result: ReturnType<MatchFunction<RouteParams>>;
      try {
        result = route.match(pathname);
      } catch (error) {
        if (!(error instanceof BadRequest)) throw error;
        abortHandshake(socket, 400);
        return true;
      }
      if (result === false) continue;
      const request = req as WebSocketRequest;
      request.params = result.params;
      // parseurl leaves the query a string; parse it as Express 5's default ("simple") parser does.
      request.query = typeof url!.query === 'string' ? parseQuery(url!.query) : {};
      this.#router.accept(route.path, req, socket, head, {});
      return true;
    }
    return false;
  }
}

// Core's types (the engine, its options, events and stats), for users who import only this package.
export type * from '@ws-heartbeat/core';
