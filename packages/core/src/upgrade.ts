import type { EventEmitter } from 'node:events';
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type ServerOptions } from 'ws';
import { checkKeys, describe, fail, rethrow } from './errors';
import { Heartbeat, shutdownFrame, type CloseOptions, type HeartbeatEngineOptions } from './heartbeat';
import { abortHandshake, socketOnError } from './http';
import { DEFAULTS as HEARTBEAT_DEFAULTS, type HeartbeatOptions } from './options';
import { compilePath, splitPath, type PathMatcher, type PathParams } from './path';

/**
 * Decides whether an upgrade request may become a WebSocket, before anything is sent to the
 * client. `true` accepts; `false` refuses with 401; a number from 400 to 599 refuses with that
 * status. Anything else, a throw or a rejection refuses with 500.
 */
export type Authenticate = (req: IncomingMessage) => boolean | number | Promise<boolean | number>;

/**
 * Receives each accepted connection, already tracked by the heartbeat engine. `params` holds the
 * route's `:name` segments, percent-decoded. A handler that throws (or returns a promise that
 * rejects) gets its connection closed with 1011; the process carries on.
 */
export type ConnectionHandler = (ws: WebSocket, req: IncomingMessage, params: PathParams) => void | Promise<unknown>;

/** Which `Origin` header values a route accepts. */
export type OriginPolicy = readonly string[] | ((origin: string | undefined) => boolean);

/** `ws` server options a route may set; the router owns the server side of the upgrade. */
export type RouteWsOptions = Omit<
  ServerOptions,
  'host' | 'port' | 'backlog' | 'server' | 'noServer' | 'path' | 'verifyClient'
>;

/** Where an error reported to {@link UpgradeRouterOptions.onError} came from. */
export type RouterErrorPhase = 'origins' | 'authenticate' | 'connection';

/** The servers {@link UpgradeRouter.attach} accepts. */
export type UpgradeServer = HttpServer | HttpsServer;

export interface UpgradeRouterOptions {
  /**
   * The engine that manages every accepted connection: a `Heartbeat` to share, or the options of
   * a new one that this router creates. `close()` closes it either way.
   * @default a new `Heartbeat` with its default options
   */
  heartbeat?: Heartbeat | HeartbeatEngineOptions;
  /**
   * Most connections over all routes (open ones and upgrades still authenticating); beyond it
   * upgrades are refused with 503.
   * @default Infinity
   */
  maxConnections?: number;
  /**
   * Most connections from one remote address (`req.socket.remoteAddress`), counted like
   * `maxConnections`; beyond it upgrades are refused with 429.
   * @default Infinity
   */
  maxConnectionsPerClient?: number;
  /**
   * Milliseconds an asynchronous `authenticate` may take; after that the upgrade is refused with
   * 503 and a late answer is ignored.
   * @default 10_000
   */
  authTimeout?: number;
  /**
   * Receives the errors the router catches so that they cannot crash the process: a throwing
   * origin check, a throwing or rejecting `authenticate`, a throwing or rejecting handler.
   * @default reports each one with `process.emitWarning`
   */
  onError?: (error: unknown, info: { route: string; phase: RouterErrorPhase }) => void;
}

export interface RouteOptions {
  /** Receives each accepted connection. */
  handler: ConnectionHandler;
  /**
   * Heartbeat options of this route, over the engine's own.
   * @default the engine's options
   */
  heartbeat?: HeartbeatOptions;
  /**
   * `ws` server options for this route (`maxPayload`, `perMessageDeflate`, `handleProtocols`, ...).
   * The close timeout comes from `heartbeat.closeTimeout`. A message larger than `maxPayload`
   * closes its connection with 1009 before it is buffered.
   * @default `ws`'s defaults, with `clientTracking: false` and `maxPayload` 1 MiB (1_048_576) instead of 100 MiB
   */
  ws?: RouteWsOptions;
  /**
   * Checks each upgrade request before the WebSocket exists.
   * @default every request is accepted
   */
  authenticate?: Authenticate;
  /**
   * Accepted `Origin` values: a list of origins (`'https://example.com'`; a request without an
   * `Origin` header, which is how non-browser clients connect, is accepted), or a function that
   * receives the header (`undefined` when absent). A refused origin gets 403.
   * @default every origin is accepted
   */
  origins?: OriginPolicy;
  /**
   * Most connections on this route (open ones and upgrades still authenticating); beyond it
   * upgrades are refused with 503.
   * @default Infinity
   */
  maxConnections?: number;
}

const DEFAULTS = {
  maxConnections: Infinity,
  maxConnectionsPerClient: Infinity,
  authTimeout: 10_000,
} as const;

/**
 * The largest message a route accepts unless its `ws.maxPayload` says otherwise: 1 MiB, as
 * Python's `websockets` and socket.io bound theirs. `ws`'s own 100 MiB lets a handful of peers make
 * the server buffer gigabytes.
 */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

const ROUTER_KEYS = new Set(['heartbeat', 'maxConnections', 'maxConnectionsPerClient', 'authTimeout', 'onError']);
const ROUTE_KEYS = new Set(['handler', 'heartbeat', 'ws', 'authenticate', 'origins', 'maxConnections']);
/** `ws` options the router sets itself, with what to use instead. */
const RESERVED_WS_KEYS: Record<string, string> = {
  host: 'attach the router to a server',
  port: 'attach the router to a server',
  backlog: 'attach the router to a server',
  server: 'use router.attach(server)',
  noServer: 'the router always handles the upgrade itself',
  path: 'the route pattern is the path',
  verifyClient: 'use the route option authenticate',
  closeTimeout: 'use the route option heartbeat.closeTimeout',
};
const MAX_TIMER_MS = 2 ** 31 - 1;
const INTERNAL_ERROR = 1011;

/** A route as the router keeps it. */
interface Route {
  readonly name: string;
  /** How the router matches paths to this route; `undefined` for a route reached through `accept()`. */
  readonly matcher: PathMatcher | undefined;
  readonly handler: ConnectionHandler;
  readonly authenticate: Authenticate | undefined;
  readonly originAllowed: ((origin: string | undefined) => boolean) | undefined;
  readonly maxConnections: number;
  readonly wss: WebSocketServer;
  /** Open connections plus upgrades in progress. */
  connections: number;
}

/** One counted connection, from the limit check until its `ws` emits `'close'`. */
interface Lease {
  readonly route: Route;
  /** Set only when the per-client limit is on. */
  readonly address: string | undefined;
  released: boolean;
  /** The `ws` exists: it releases the lease on `'close'`. */
  accepted: boolean;
}

/** An upgrade waiting for an asynchronous `authenticate`. */
interface PendingAuth {
  readonly params: PathParams;
  readonly req: IncomingMessage;
  readonly head: Buffer;
  readonly lease: Lease;
  readonly authTimeoutTimer: NodeJS.Timeout;
}

type ServerUpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function limit(name: string, value: unknown): number {
  if (value === undefined) return Infinity;
  if (value !== Infinity && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)) {
    fail(name, 'a positive integer or Infinity', value);
  }
  return value;
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

function compileOrigins(origins: unknown): ((origin: string | undefined) => boolean) | undefined {
  if (origins === undefined) return undefined;
  if (typeof origins === 'function') return origins as (origin: string | undefined) => boolean;
  if (!Array.isArray(origins)) return fail('origins', 'an array of origins or a function', origins);
  const allowed = new Set<string>();
  for (const entry of origins as unknown[]) {
    if (entry === 'null') {
      allowed.add(entry); // opaque origins (sandboxed frames, file:) send the literal "null"
      continue;
    }
    let url: URL | undefined;
    try {
      url = typeof entry === 'string' ? new URL(entry) : undefined;
    } catch {
      url = undefined;
    }
    if (url === undefined || url.origin === 'null' || url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
      fail('origins', 'a list of origins such as "https://example.com" (scheme, host and optional port only)', entry);
    }
    allowed.add(url.origin);
  }
  return function originInList(origin) {
    return origin === undefined || allowed.has(origin) || allowed.has(origin.toLowerCase());
  };
}

function checkWsOptions(ws: unknown): RouteWsOptions {
  if (ws === undefined) return {};
  if (!isObject(ws)) return fail('ws', 'an object of ws server options', ws);
  for (const key of Object.keys(ws)) {
    const instead = RESERVED_WS_KEYS[key];
    if (instead !== undefined) throw new TypeError(`The "ws.${key}" option is set by the router: ${instead}`);
  }
  const { maxPayload } = ws as RouteWsOptions;
  if (maxPayload !== undefined && (typeof maxPayload !== 'number' || !Number.isSafeInteger(maxPayload) || maxPayload < 0)) {
    fail('ws.maxPayload', 'a whole number of bytes (0 for no limit)', maxPayload);
  }
  return ws as RouteWsOptions;
}

function closeServer(wss: WebSocketServer): Promise<void> {
  return new Promise((resolve) => wss.close(() => resolve()));
}

function reportWarning(error: unknown, info: { route: string; phase: RouterErrorPhase }): void {
  const message = error instanceof Error ? error.stack ?? error.message : String(error);
  process.emitWarning(`${info.phase} of route ${info.route} failed: ${message}`, 'UpgradeRouterWarning');
}

/**
 * Routes HTTP `'upgrade'` requests to WebSocket handlers by path, refuses the ones that must
 * not become WebSockets with a plain HTTP answer (never a 101 first), and hands every accepted
 * connection to a heartbeat engine.
 *
 * Checks, in order: router closed (503), path (404, or left to another `'upgrade'` listener),
 * origin (403), connection limits (503, or 429 per client address), `authenticate` (401 or its
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

  readonly #maxConnections: number;
  readonly #maxConnectionsPerClient: number;
  readonly #authTimeout: number;
  readonly #onError: NonNullable<UpgradeRouterOptions['onError']>;

  /** Routes the router matches itself, most specific first. */
  readonly #routes: Route[] = [];
  /** Every route by name, including those reached through `accept()`. */
  readonly #routesByName = new Map<string, Route>();
  readonly #detachers = new Map<UpgradeServer, () => void>();
  readonly #pending = new Map<Duplex, PendingAuth>();
  /** Leases waiting for a socket or a `ws` to close. */
  readonly #leases = new WeakMap<Duplex | WebSocket, Lease>();
  #connections = 0;
  readonly #connectionsPerClient = new Map<string, number>();
  #closing = false;
  #closePromise: Promise<void> | undefined;

  // Listeners shared by every socket and connection of this router: `this` is the emitter.
  readonly #socketOnGone: (this: Duplex) => void;
  readonly #socketOnClose: (this: Duplex) => void;
  readonly #wsOnClose: (this: WebSocket) => void;
  readonly #authTimeoutExpired: (socket: Duplex) => void;

  constructor(options: UpgradeRouterOptions = {}) {
    if (typeof options !== 'object' || options === null) fail('options', 'an object', options);
    checkKeys(options, ROUTER_KEYS, 'UpgradeRouter');
    const { heartbeat, onError } = options;
    if (heartbeat !== undefined && !isObject(heartbeat)) fail('heartbeat', 'a Heartbeat or heartbeat options', heartbeat);
    if (onError !== undefined && typeof onError !== 'function') fail('onError', 'a function', onError);
    this.#maxConnections = limit('maxConnections', options.maxConnections);
    this.#maxConnectionsPerClient = limit('maxConnectionsPerClient', options.maxConnectionsPerClient);
    const authTimeout = options.authTimeout ?? DEFAULTS.authTimeout;
    if (typeof authTimeout !== 'number' || !Number.isFinite(authTimeout) || authTimeout < 1 || authTimeout > MAX_TIMER_MS) {
      fail('authTimeout', `a finite number of milliseconds from 1 to ${MAX_TIMER_MS}`, authTimeout);
    }
    this.#authTimeout = authTimeout;
    this.#onError = onError ?? reportWarning;
    this.heartbeat = heartbeat instanceof Heartbeat ? heartbeat : new Heartbeat(heartbeat);

    const router = this;
    this.#socketOnGone = function socketOnGone() {
      // The client left (or half-closed) while `authenticate` was running.
      router.#abandon(this);
    };
    this.#socketOnClose = function socketOnClose() {
      router.#releaseOf(this);
    };
    this.#wsOnClose = function wsOnClose() {
      router.#releaseOf(this);
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
    this.heartbeat.route(name, options.heartbeat, { maxBufferedAmount });
    const { closeTimeout } = this.heartbeat.settings(name);
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
   * Handles the `'upgrade'` events of `server`. Paths that match no route are answered 404,
   * unless the server has another `'upgrade'` listener: then they are left to it, untouched.
   * Returns the function that removes the listener again. Attaching twice to the same server
   * returns the first detach function.
   */
  attach(server: UpgradeServer): () => void {
    if (this.#closing) throw new Error('UpgradeRouter is closed: it cannot be attached');
    const existing = this.#detachers.get(server);
    if (existing) return existing;
    const emitter: EventEmitter = server;
    const router = this;
    const serverOnUpgrade: ServerUpgradeListener = function serverOnUpgrade(req, socket, head) {
      if (router.#take(req, socket, head)) return;
      // No route: the socket belongs to another 'upgrade' listener if there is one.
      if (emitter.listeners('upgrade').some((listener) => listener !== serverOnUpgrade)) return;
      socket.on('error', socketOnError);
      abortHandshake(socket, 404);
    };
    emitter.on('upgrade', serverOnUpgrade);
    const detach = (): void => {
      emitter.removeListener('upgrade', serverOnUpgrade);
      if (this.#detachers.get(server) === detach) this.#detachers.delete(server);
    };
    this.#detachers.set(server, detach);
    return detach;
  }

  /**
   * Handles one upgrade request, for adapters that own the `'upgrade'` event. Returns `true`
   * when the router took the socket (accepted, refused, or authenticating), `false` when no
   * route matches: the socket is left untouched and unanswered for the caller to deal with.
   * After `close()`, every request is answered 503.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    return this.#take(req, socket, head);
  }

  /**
   * Shuts down: answers 503 to every upgrade from now on and to those still authenticating,
   * removes the `'upgrade'` listeners, closes the heartbeat engine (1001 to every connection, or
   * 1012 with a retry hint given `retryWithin`; see `Heartbeat.close`) and the routes' `ws`
   * servers. Resolves once every connection is gone. Safe to call more than once.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#closePromise) return this.#closePromise;
    shutdownFrame(options); // an invalid retryWithin throws here, before anything has changed
    this.#closing = true;
    for (const detach of [...this.#detachers.values()]) detach();
    for (const socket of [...this.#pending.keys()]) this.#refusePending(socket, 503);
    this.#closePromise = this.#shutdown(options);
    return this.#closePromise;
  }

  async #shutdown(options: CloseOptions): Promise<void> {
    await this.heartbeat.close(options);
    await Promise.all([...this.#routesByName.values()].map((route) => closeServer(route.wss)));
  }

  /** The checks before `authenticate`; false only when no route matches (socket untouched). */
  #take(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    if (this.#closing) {
      socket.on('error', socketOnError);
      abortHandshake(socket, 503);
      return true;
    }
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
    this.#admit(route, params, req, socket, head);
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

    const lease = this.#reserve(route, req);
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
    this.#release(pending.lease);
    socket.destroy();
  }

  /** Hands the socket to the route's `ws` server, which validates the handshake and answers 101. */
  #upgrade(route: Route, params: PathParams, req: IncomingMessage, socket: Duplex, head: Buffer, lease: Lease): void {
    if (socket.destroyed || !socket.readable || !socket.writable) {
      this.#release(lease);
      socket.destroy();
      return;
    }
    route.wss.handleUpgrade(req, socket, head, (ws) => this.#accept(route, params, req, socket, lease, ws));
    if (lease.accepted) return;
    // `ws` refused the handshake (it answered 400 or 405) or destroyed the socket.
    if (socket.closed) {
      this.#release(lease);
    } else {
      this.#leases.set(socket, lease);
      socket.once('close', this.#socketOnClose);
    }
  }

  #accept(route: Route, params: PathParams, req: IncomingMessage, socket: Duplex, lease: Lease, ws: WebSocket): void {
    lease.accepted = true;
    socket.removeListener('close', this.#socketOnClose);
    socket.removeListener('error', socketOnError); // `ws` listens for socket errors from now on
    this.#leases.set(ws, lease);
    ws.once('close', this.#wsOnClose);
    try {
      this.heartbeat.track(ws, { route: route.name, socket });
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
    if (ws.readyState === WebSocket.OPEN) ws.close(INTERNAL_ERROR, 'Internal Error');
  }

  /** Counts a connection against every limit, or returns the status that refuses it. */
  #reserve(route: Route, req: IncomingMessage): Lease | number {
    if (this.#connections >= this.#maxConnections || route.connections >= route.maxConnections) return 503;
    let address: string | undefined;
    if (this.#maxConnectionsPerClient !== Infinity) {
      address = req.socket.remoteAddress ?? '';
      const count = this.#connectionsPerClient.get(address) ?? 0;
      if (count >= this.#maxConnectionsPerClient) return 429;
      this.#connectionsPerClient.set(address, count + 1);
    }
    this.#connections += 1;
    route.connections += 1;
    return { route, address, released: false, accepted: false };
  }

  #release(lease: Lease): void {
    if (lease.released) return;
    lease.released = true;
    this.#connections -= 1;
    lease.route.connections -= 1;
    const { address } = lease;
    if (address === undefined) return;
    const count = (this.#connectionsPerClient.get(address) ?? 1) - 1;
    if (count > 0) this.#connectionsPerClient.set(address, count);
    else this.#connectionsPerClient.delete(address);
  }

  #releaseOf(emitter: Duplex | WebSocket): void {
    const lease = this.#leases.get(emitter);
    if (lease === undefined) return;
    this.#leases.delete(emitter);
    this.#release(lease);
  }

  #refuseLeased(socket: Duplex, lease: Lease, status: number): void {
    this.#release(lease);
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
