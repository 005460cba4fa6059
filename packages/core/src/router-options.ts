// The upgrade router's options: their types, defaults and checks.
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { ServerOptions, WebSocket } from 'ws';
import { fail } from './errors';
import type { Heartbeat } from './heartbeat';
import type { HeartbeatOptions } from './options';
import type { PathParams } from './path';
import type { PresenceCluster, PresenceKeys } from './presence';
import type { HeartbeatEngineOptions } from './types';

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
export type RouterErrorPhase = 'origins' | 'authenticate' | 'connection' | 'presence';

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
   * A cluster that shares presence between processes (`@ws-heartbeat/cluster`): the router starts
   * it with its engine, joins each connection to the keys of its route's `presence` option, and
   * closes it first in `close()`, so that this node's keys go offline at once.
   * @default none
   */
  cluster?: PresenceCluster;
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
   * The presence keys (a user id, a room) each accepted connection holds in the router's
   * `cluster` until it closes, from its upgrade request: joined before the handler runs. Needs
   * the router's `cluster` option. A function that throws is reported (phase `'presence'`) and
   * joins nothing; the connection stays.
   * @default none
   */
  presence?: (req: IncomingMessage, params: PathParams) => PresenceKeys;
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

/**
 * How long, in ms, an upgrade may wait for its authentication (the router's `authenticate`, or a
 * framework's hooks) unless `authTimeout` says otherwise.
 */
export const DEFAULT_AUTH_TIMEOUT = 10_000;

/**
 * The largest message a route accepts unless its `ws.maxPayload` says otherwise: 1 MiB, as
 * Python's `websockets` and socket.io bound theirs. `ws`'s own 100 MiB lets a handful of peers make
 * the server buffer gigabytes.
 */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

export const ROUTER_KEYS = new Set(['heartbeat', 'cluster', 'maxConnections', 'maxConnectionsPerClient', 'authTimeout', 'onError']);
export const ROUTE_KEYS = new Set(['handler', 'presence', 'heartbeat', 'ws', 'authenticate', 'origins', 'maxConnections']);
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

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** A connection limit: a positive integer, or Infinity (also when not given). */
export function limit(name: string, value: unknown): number {
  if (value === undefined) return Infinity;
  if (value !== Infinity && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)) {
    fail(name, 'a positive integer or Infinity', value);
  }
  return value;
}

export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** The check of a route's `origins` option; undefined when every origin is accepted. */
export function compileOrigins(origins: unknown): ((origin: string | undefined) => boolean) | undefined {
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

/** A route's `ws` options, refused where they name what the router sets itself. */
export function checkWsOptions(ws: unknown): RouteWsOptions {
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

/** An `authTimeout` option: ms from 1 to what Node's timers accept; the default when not given. */
export function checkAuthTimeout(value: unknown): number {
  const authTimeout = value ?? DEFAULT_AUTH_TIMEOUT;
  if (typeof authTimeout !== 'number' || !Number.isFinite(authTimeout) || authTimeout < 1 || authTimeout > MAX_TIMER_MS) {
    fail('authTimeout', `a finite number of milliseconds from 1 to ${MAX_TIMER_MS}`, authTimeout);
  }
  return authTimeout;
}

/** The default `onError`: each error the router caught becomes a process warning. */
export function reportWarning(error: unknown, info: { route: string; phase: RouterErrorPhase }): void {
  const message = error instanceof Error ? error.stack ?? error.message : String(error);
  process.emitWarning(`${info.phase} of route ${info.route} failed: ${message}`, 'UpgradeRouterWarning');
}
