import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { CLOSE_INTERNAL_ERROR } from '@ws-heartbeat/protocol';
import { WebSocket, WebSocketServer, type ServerOptions } from 'ws';
import { checkKeys, describe, fail, rethrow } from './errors';
import { Heartbeat } from './heartbeat';
import { abortHandshake, socketOnError } from './http';
import { Leases, type Lease } from './leases';
import { DEFAULTS as HEARTBEAT_DEFAULTS } from './options';
import { compilePath, splitPath, type PathMatcher, type PathParams } from './path';
import {
  checkAuthTimeout,
  checkWsOptions,
  compileOrigins,
  DEFAULT_MAX_PAYLOAD,
  isObject,
  isPromiseLike,
  limit,
  reportWarning,
  ROUTE_KEYS,
  ROUTER_KEYS,
  type Authenticate,
  type ConnectionHandler,
  type RouterErrorPhase,
  type RouteOptions,
  type UpgradeRouterOptions,
  type UpgradeServer,
} from './router-options';
import { isPresenceCluster, joinPresence, type PresenceCluster } from './presence';
import { checkCloseOptions } from './shutdown';
import { UpgradeListeners } from './upgrade-listeners';
import type { CloseOptions } from './types';

/** A route as the router keeps it. */
interface Route {
  readonly name: string;
  /** How the router matches paths to this route; `undefined` for a route reached through `accept()`. */
  readonly matcher: PathMatcher | undefined;
  readonly handler: ConnectionHandler;
  readonly presence: RouteOptions['presence'];
  readonly authenticate: Authenticate | undefined;
  readonly originAllowed: ((origin: string | undefined) => boolean) | undefined;
  readonly maxConnections: number;
  readonly wss: WebSocketServer;
  /** Open connections plus upgrades in progress. */
  connections: number;
}

/** An upgrade waiting for an asynchronous `authenticate`. */
interface PendingAuth {
  readonly params: PathParams;
  readonly req: IncomingMessage;
  readonly head: Buffer;
  readonly lease: Lease;
  readonly authTimeoutTimer: NodeJS.Timeout;
}

function closeServer(wss: WebSocketServer): Promise<void> {
  return new Promise((resolve) => wss.close(() => resolve()));
}

/**
 * Routes HTTP `'upgrade'` requests to WebSocket handlers by path, refuses the ones that must
 * not become WebSockets with a plain HTTP answer (never a 101 first), and hands every accepted
 * connection to a heartbeat engine.
 *
 * Checks, in order: path (no route: 404, or left to another `'upgrade'` listener), router
 * closing (503; an unmatched path gets 503 too, unless another listener takes it), origin (403), connection limits (503, or 429 per client address), `authenticate` (401 or its
 * status; 500 if it fails, 503 if it takes longer than `authTimeout`), then the handshake as
 * `ws` validates it (400, or 405 for a method other than GET).
 *
 * @example
 * const router = new UpgradeRouter({ heartbeat: { interval: 30_000 } });
 * router.route('/rooms/:id', { handler: (ws, req, { id }) => join(id, ws) });
 * router.attach(server);
 */
export class UpgradeRouter {
  /** The engine that manages every connection this router accepts. */
  readonly heartbeat: Heartbeat;

  readonly #authTimeout: number;
  readonly #cluster: PresenceCluster | undefined;
  readonly #onError: NonNullable<UpgradeRouterOptions['onError']>;

  /** Routes the router matches itself, most specific first. */
  readonly #routes: Route[] = [];
  /** Every route by name, including those reached through `accept()`. */
  readonly #routesByName = new Map<string, Route>();
  readonly #listeners = new UpgradeListeners(
    (req, socket, head) => this.#take(req, socket, head),
    () => this.#closing,
  );
  readonly #pending = new Map<Duplex, PendingAuth>();
  readonly #leases: Leases;
  #closing = false;
  #closePromise: Promise<void> | undefined;

  // Listeners shared by every socket and connection of this router: `this` is the emitter.
  readonly #socketOnGone: (this: Duplex) => void;
  readonly #authTimeoutExpired: (socket: Duplex) => void;

  constructor(options: UpgradeRouterOptions = {}) {
    if (typeof options !== 'object' || options === null) fail('options', 'an object', options);
    checkKeys(options, ROUTER_KEYS, 'UpgradeRouter');
    const { heartbeat, onError } = options;
    if (heartbeat !== undefined && !isObject(heartbeat)) fail('heartbeat', 'a Heartbeat or heartbeat options', heartbeat);
    if (onError !== undefined && typeof onError !== 'function') fail('onError', 'a function', onError);
    this.#leases = new Leases(limit('maxConnections', options.maxConnections), limit('maxConnectionsPerClient', options.maxConnectionsPerClient));
    this.#authTimeout = checkAuthTimeout(options.authTimeout);
    this.#onError = onError ?? reportWarning;
    this.heartbeat = heartbeat instanceof Heartbeat ? heartbeat : new Heartbeat(heartbeat);
    if (options.cluster !== undefined) {
      if (!isPresenceCluster(options.cluster)) fail('cluster', 'a cluster with start, join and close (such as @ws-heartbeat/cluster)', options.cluster);
      this.#cluster = options.cluster;
      this.#cluster.start(this.heartbeat).catch((error: unknown) => process.emitWarning(`cluster start failed: ${String(error)}`, 'UpgradeRouterWarning'));
    }

    const router = this;
    this.#socketOnGone = function socketOnGone() {
      // The client left (or half-closed) while `authenticate` was running.
      router.#abandon(this);
    };
    this.#authTimeoutExpired = function authTimeoutExpired(socket) {
      router.#refusePending(socket, 503);
    };
  }

  /**
   * Adds a route. `pattern` is a path such as `/rooms/:id` (see `path.ts` for the rules); the
   * most specific pattern wins (a literal segment beats a parameter), whatever the order of the
   * calls. Also defines the heartbeat route of the same name. Throws a `TypeError` for a
   * malformed pattern, a pattern that matches the same paths as an existing route, or an
   * invalid option.
   */
  route(pattern: string, options: RouteOptions): this {
    if (this.#closing) throw new Error('UpgradeRouter is closed: no route can be added');
    const matcher = compilePath(pattern);
    const same = this.#routes.find((route) => route.matcher!.key === matcher.key);
    if (same) throw new TypeError(`Duplicate route ${JSON.stringify(pattern)}: ${JSON.stringify(same.name)} matches the same paths`);
    const route = this.#define(pattern, matcher, options);
    const at = this.#routes.findIndex((other) => other.matcher!.rank > matcher.rank);
    this.#routes.splice(at === -1 ? this.#routes.length : at, 0, route);
    return this;
  }

  /**
   * Adds a route that the router does not match by path: for adapters whose framework owns
   * routing (Fastify's router, Express's paths). Requests reach it through {@link accept}.
   * `name` is free-form (the framework's route path, say) and names the heartbeat route too.
   * Throws a `TypeError` for a name in use or an invalid option.
   */
  define(name: string, options: RouteOptions): this {
    if (this.#closing) throw new Error('UpgradeRouter is closed: no route can be added');
    if (typeof name !== 'string' || name === '') fail('name', 'a non-empty string', name);
    this.#define(name, undefined, options);
    return this;
  }

  /**
   * Admits an upgrade request that the caller matched to the route `name` (see {@link define}):
   * runs the route's checks (origin, connection limits, `authenticate`), then upgrades it and
   * calls the handler with `params`; or refuses it with a plain HTTP answer, never after a 101.
   * After `close()`, answers 503. Throws a `TypeError` for an unknown route name.
   */
  accept(name: string, req: IncomingMessage, socket: Duplex, head: Buffer, params: PathParams = {}): void {
    const route = this.#routesByName.get(name);
    if (route === undefined) throw new TypeError(`Unknown route ${JSON.stringify(name)}: define it with router.define()`);
    socket.on('error', socketOnError);
    if (this.#closing) {
      abortHandshake(socket, 503);
      return;
    }
    this.#admit(route, params, req, socket, head);
  }

  #define(name: string, matcher: PathMatcher | undefined, options: RouteOptions): Route {
    if (this.#routesByName.has(name)) throw new TypeError(`Duplicate route ${JSON.stringify(name)}`);
    if (typeof options !== 'object' || options === null) fail('options', 'an object', options);
    checkKeys(options, ROUTE_KEYS, 'route');
    if (typeof options.handler !== 'function') fail('handler', 'a function', options.handler);
    if (options.authenticate !== undefined && typeof options.authenticate !== 'function') {
      fail('authenticate', 'a function', options.authenticate);
    }
    if (options.presence !== undefined) {
      if (typeof options.presence !== 'function') fail('presence', 'a function', options.presence);
      if (this.#cluster === undefined) throw new TypeError(`The "presence" option of route ${JSON.stringify(name)} needs the router's "cluster" option`);
    }
    if (options.heartbeat !== undefined && !isObject(options.heartbeat)) {
      fail('heartbeat', 'an object of heartbeat options', options.heartbeat);
    }
    const originAllowed = compileOrigins(options.origins);
    const maxConnections = limit('maxConnections', options.maxConnections);
    const wsOptions = checkWsOptions(options.ws);

    const maxPayload = wsOptions.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    // By default a route may queue to a slow reader twice the largest message it accepts (so that
    // echoing one never ends its reader), and never less than the engine's own default.
    const maxBufferedAmount = Math.max(HEARTBEAT_DEFAULTS.maxBufferedAmount, 2 * maxPayload);
    const { closeTimeout } = this.heartbeat.route(name, options.heartbeat, { maxBufferedAmount });
    // ws 8.23 takes `closeTimeout`; @types/ws does not declare it yet.
    const serverOptions: ServerOptions & { closeTimeout?: number } = {
      noServer: true,
      clientTracking: false,
      ...wsOptions,
      maxPayload,
      closeTimeout,
    };
    const route: Route = {
      name,
      matcher,
      handler: options.handler,
      presence: options.presence,
      authenticate: options.authenticate,
      originAllowed,
      maxConnections,
      wss: new WebSocketServer(serverOptions),
      connections: 0,
    };
    this.#routesByName.set(name, route);
    return route;
  }

  /**
   * Handles the `'upgrade'` events of `server`: adds one listener. Paths that match no route are
   * answered 404 (503 while closing), unless the server has another `'upgrade'` listener: then
   * they are left to it, untouched. Returns the function that removes this listener again (the
   * connections stay); attaching twice to the same server returns the same function.
   */
  attach(server: UpgradeServer): () => void {
    if (this.#closing) throw new Error('UpgradeRouter is closed: it cannot be attached');
    return this.#listeners.add(server);
  }

  /**
   * Handles one upgrade request, for adapters that own the `'upgrade'` event. Returns `true`
   * when the router took the socket (accepted, refused, or authenticating), `false` when no
   * route matches: the socket is left untouched and unanswered for the caller to deal with.
   * After `close()`, every request is answered 503.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    if (this.#closing) {
      abortHandshake(socket, 503);
      return true;
    }
    return this.#take(req, socket, head);
  }

  /**
   * Shuts down: answers 503 to every upgrade from now on and to those still authenticating,
   * closes the heartbeat engine (1001 to every connection, or 1012 with a retry hint given
   * `retryWithin`; see `Heartbeat.close`) and the routes' `ws` servers, then removes the
   * `'upgrade'` listeners that `attach()` added. Resolves once every connection is gone. Safe to
   * call more than once.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#closePromise) return this.#closePromise;
    checkCloseOptions(options); // an invalid retryWithin throws here, before anything has changed
    this.#closing = true;
    for (const socket of [...this.#pending.keys()]) this.#refusePending(socket, 503);
    this.#closePromise = this.#shutdown(options);
    return this.#closePromise;
  }

  async #shutdown(options: CloseOptions): Promise<void> {
    // The cluster first: this node's keys go offline now, not when its connections are gone.
    await this.#cluster?.close();
    await this.heartbeat.close(options);
    await Promise.all([...this.#routesByName.values()].map((route) => closeServer(route.wss)));
    this.#listeners.removeAll();
  }

  /** Matches the path to a route and takes the socket (503 while closing); false when no route matches (socket untouched). */
  #take(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const segments = splitPath(req.url ?? '');
    let route: Route | undefined;
    let params: PathParams | null = null;
    if (segments !== null) {
      for (const candidate of this.#routes) {
        params = candidate.matcher!.matchSegments(segments);
        if (params !== null) {
          route = candidate;
          break;
        }
      }
    }
    if (route === undefined || params === null) return false;
    socket.on('error', socketOnError);
    if (this.#closing) abortHandshake(socket, 503);
    else this.#admit(route, params, req, socket, head);
    return true;
  }

  /** The checks after a route matched: origin, limits, `authenticate`; then the upgrade. */
  #admit(route: Route, params: PathParams, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (route.originAllowed !== undefined) {
      let allowed: boolean;
      try {
        allowed = route.originAllowed(req.headers.origin) === true;
      } catch (error) {
        this.#report(error, route, 'origins');
        abortHandshake(socket, 500);
        return;
      }
      if (!allowed) {
        abortHandshake(socket, 403);
        return;
      }
    }

    const lease = this.#leases.take(route, req);
    if (typeof lease === 'number') {
      abortHandshake(socket, lease);
      return;
    }

    if (route.authenticate === undefined) {
      this.#upgrade(route, params, req, socket, head, lease);
      return;
    }
    let verdict: ReturnType<Authenticate>;
    try {
      verdict = route.authenticate(req);
    } catch (error) {
      this.#report(error, route, 'authenticate');
      this.#refuseLeased(socket, lease, 500);
      return;
    }
    if (!isPromiseLike(verdict)) {
      const status = this.#refusalStatus(route, verdict);
      if (status !== 0) this.#refuseLeased(socket, lease, status);
      else this.#upgrade(route, params, req, socket, head, lease);
      return;
    }

    const authTimeoutTimer = setTimeout(this.#authTimeoutExpired, this.#authTimeout, socket);
    authTimeoutTimer.unref();
    this.#pending.set(socket, { params, req, head, lease, authTimeoutTimer });
    socket.on('end', this.#socketOnGone);
    socket.on('close', this.#socketOnGone);
    Promise.resolve(verdict).then(
      (value) => this.#authenticated(route, socket, value),
      (error: unknown) => {
        this.#report(error, route, 'authenticate');
        this.#refusePending(socket, 500);
      },
    );
  }

  /** An asynchronous `authenticate` answered in time. */
  #authenticated(route: Route, socket: Duplex, verdict: unknown): void {
    if (!this.#pending.has(socket)) return; // timed out, abandoned by the client, or the router closed
    const status = this.#refusalStatus(route, verdict);
    if (status !== 0) {
      this.#refusePending(socket, status);
      return;
    }
    const { params, req, head, lease } = this.#settle(socket)!;
    this.#upgrade(route, params, req, socket, head, lease);
  }

  /** Ends the wait for `authenticate`; undefined if it had already ended. */
  #settle(socket: Duplex): PendingAuth | undefined {
    const pending = this.#pending.get(socket);
    if (pending === undefined) return undefined;
    this.#pending.delete(socket);
    clearTimeout(pending.authTimeoutTimer);
    socket.removeListener('end', this.#socketOnGone);
    socket.removeListener('close', this.#socketOnGone);
    return pending;
  }

  #refusePending(socket: Duplex, status: number): void {
    const pending = this.#settle(socket);
    if (pending !== undefined) this.#refuseLeased(socket, pending.lease, status);
  }

  /** The client went away while `authenticate` was running: nothing is created. */
  #abandon(socket: Duplex): void {
    const pending = this.#settle(socket);
    if (pending === undefined) return;
    this.#leases.release(pending.lease);
    socket.destroy();
  }

  /** Hands the socket to the route's `ws` server, which validates the handshake and answers 101. */
  #upgrade(route: Route, params: PathParams, req: IncomingMessage, socket: Duplex, head: Buffer, lease: Lease): void {
    if (socket.destroyed || !socket.readable || !socket.writable) {
      this.#leases.release(lease);
      socket.destroy();
      return;
    }
    let upgraded = false;
    route.wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded = true;
      this.#connected(route, params, req, socket, lease, ws);
    });
    // `ws` refused the handshake (it answered 400 or 405) or destroyed the socket; or it has yet
    // to call back (then the socket's lease moves to the `ws` when it does).
    if (!upgraded) this.#leases.holdUntilClose(socket, lease);
  }

  /** The upgrade succeeded: the engine tracks the connection, then the route's handler gets it. */
  #connected(route: Route, params: PathParams, req: IncomingMessage, socket: Duplex, lease: Lease, ws: WebSocket): void {
    this.#leases.handOver(socket, ws, lease);
    socket.removeListener('error', socketOnError); // `ws` listens for socket errors from now on
    try {
      this.heartbeat.track(ws, { route: route.name, socket });
      if (route.presence !== undefined) joinPresence(this.#cluster!, ws, () => route.presence!(req, params), (error) => this.#report(error, route, 'presence'));
      const result = route.handler(ws, req, params);
      if (isPromiseLike(result)) {
        result.then(undefined, (error: unknown) => this.#connectionFailed(error, route, ws));
      }
    } catch (error) {
      this.#connectionFailed(error, route, ws);
    }
  }

  #connectionFailed(error: unknown, route: Route, ws: WebSocket): void {
    this.#report(error, route, 'connection');
    if (ws.readyState === WebSocket.OPEN) ws.close(CLOSE_INTERNAL_ERROR, 'Internal Error');
  }

  #refuseLeased(socket: Duplex, lease: Lease, status: number): void {
    this.#leases.release(lease);
    abortHandshake(socket, status);
  }

  /** The status that refuses an `authenticate` verdict, or 0 when it accepts. */
  #refusalStatus(route: Route, verdict: unknown): number {
    if (verdict === true) return 0;
    if (verdict === false) return 401;
    if (typeof verdict === 'number' && Number.isInteger(verdict) && verdict >= 400 && verdict <= 599) return verdict;
    const error = new TypeError(`authenticate must return true, false or a status from 400 to 599: got ${describe(verdict)}`);
    this.#report(error, route, 'authenticate');
    return 500;
  }

  #report(error: unknown, route: Route, phase: RouterErrorPhase): void {
    try {
      this.#onError(error, { route: route.name, phase });
    } catch (thrown) {
      // The application's own error handler failed: surface that as the application's error.
      process.nextTick(rethrow, thrown);
    }
  }
}
