// The engine's public types: its options, events, stats and what it reports. No behaviour here
// beyond the list of termination reasons.
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { LatencySummary } from './histogram';
import type { EventLoopDelay } from './load';
import type { HeartbeatOptions } from './options';

/** Every reason for which the engine ends a connection, in the order stats list them. */
export const TERMINATE_REASONS = ['timeout', 'close-timeout', 'backpressure', 'shutdown'] as const;

/** Why the engine ended a connection. */
export type TerminateReason = (typeof TERMINATE_REASONS)[number];

/** A count per reason, every one at zero. */
export function noTerminations(): Record<TerminateReason, number> {
  const counts = {} as Record<TerminateReason, number>;
  for (const reason of TERMINATE_REASONS) counts[reason] = 0;
  return counts;
}

/** What the caller knows about a connection it hands to `Heartbeat.track()`. */
export interface TrackInfo {
  /**
   * Name of a route defined with `Heartbeat.route()`; its options apply.
   * @default 'default'
   */
  route?: string;
  /**
   * The raw socket under `ws` (the one the `'upgrade'` event gave). The engine watches it for
   * a FIN from the peer; without it, the engine falls back to the socket `ws` holds internally.
   */
  socket?: Duplex;
}

/** What the engine knew of a connection when it ended it. */
export interface TerminateInfo {
  /** The peer's address, when the socket still knew it. */
  remoteAddress: string | undefined;
  /** Milliseconds since the connection was tracked. */
  ageMs: number;
  /**
   * Milliseconds since the peer's last sign of life: bytes read from it, our queue to it moving, or
   * the end of the tail allowed after that queue emptied (since it was tracked, if it showed none).
   */
  silentMs: number;
}

/** The figures an `'overload'` event carries, in ms. */
export interface OverloadInfo {
  /** The longest event-loop delay of the latest window. */
  eventLoopDelayMs: number;
  /** The longest lateness of the engine's ticks in the latest window. */
  tickLateMs: number;
  thresholdMs: number;
}

/**
 * A pino-compatible logger: Fastify's `request.log`/`app.log`, pino itself, or anything with the
 * same `(object, message)` methods. Debug lines are written only to a logger whose
 * `isLevelEnabled('debug')` is true or whose `level` is `'debug'` or `'trace'`.
 */
export interface HeartbeatLogger {
  debug(object: object, message: string): void;
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  isLevelEnabled?(level: string): boolean;
  level?: string;
}

/** Options of the engine as a whole; they cannot differ per route. */
export interface EngineOptions {
  /**
   * The process counts as overloaded while, within the latest one-second window, the event loop
   * was delayed (or the engine's tick was late) by more than this many ms. `stats().overloaded`
   * tells, and an `'overload'` event is emitted at each change.
   * @default 100
   */
  overloadThreshold?: number;
  /**
   * Where the engine writes what it does: pings and pongs at debug, terminations at info,
   * overload at warn. A pino-compatible logger (Fastify's `app.log`, pino); `false` for none.
   * @default false
   */
  logger?: HeartbeatLogger | false;
}

/** Options of `Heartbeat.close()`. */
export interface CloseOptions {
  /**
   * Tells clients to come back within this many ms: connections are closed with code 1012
   * (Service Restart) and a reason that carries the window (`formatRetryHint` of
   * `@ws-heartbeat/protocol`), which `@ws-heartbeat/client` reads to wait a random delay in it, so
   * that a restart does not bring every client back at once. Without it: code 1001,
   * `Server shutting down`.
   * @default none
   */
  retryWithin?: number;
}

/** The constructor's options: every route's heartbeat defaults, and the engine's own. */
export type HeartbeatEngineOptions = HeartbeatOptions & EngineOptions;

export interface HeartbeatEvents {
  /** A connection is now tracked. */
  connection: [ws: WebSocket, route: string];
  /** A ping was sent to an idle connection. */
  ping: [ws: WebSocket, route: string];
  /** A pong answered our ping after `rttMs` milliseconds. */
  pong: [ws: WebSocket, rttMs: number, route: string];
  /**
   * A connection was ended by the engine (`ws` emits `'close'` afterwards), or by `ws`'s own
   * close timer after the route's `closeTimeout` (emitted as `ws` closes).
   */
  terminate: [ws: WebSocket, reason: TerminateReason, route: string, info: TerminateInfo];
  /** The process became overloaded (`true`) or stopped being so (`false`); see `overloadThreshold`. */
  overload: [overloaded: boolean, info: OverloadInfo];
  /** `close()` finished: every connection is gone and the timer is cleared. */
  close: [];
}

export interface RouteStats {
  /** Connections open now. */
  connections: number;
  pingsSent: number;
  pongsReceived: number;
  terminations: Record<TerminateReason, number>;
  /** Ping → pong round-trip times, ms. */
  rtt: LatencySummary;
  /**
   * Detection latency of the `'timeout'` terminations: ms from the peer's last sign of life to its
   * termination. By the liveness rule it is `interval + timeout`, plus at most a tick or two.
   */
  detection: LatencySummary;
}

export interface HeartbeatStats {
  connections: number;
  pingsSent: number;
  pongsReceived: number;
  terminations: Record<TerminateReason, number>;
  routes: Record<string, RouteStats>;
  /**
   * The engine's own timer: how late its ticks fired (a measure of event-loop stalls): the last
   * tick, the latest one-second window's worst, and the worst since the engine started.
   */
  tick: { ms: number; lastLateMs: number; recentLateMs: number; maxLateMs: number };
  /** The event-loop delay over the latest one-second window (`perf_hooks.monitorEventLoopDelay`). */
  eventLoop: EventLoopDelay;
  /** True while the latest window's event-loop delay or tick lateness exceeded `overloadThreshold`. */
  overloaded: boolean;
  overloadThreshold: number;
}

/** The summary of a route's round-trip times: a {@link LatencySummary}. */
export type RttSummary = LatencySummary;
export type { EventLoopDelay, LatencySummary };
