// The client's options, their defaults and checks, and the backoff between reconnects.
import { APP_PING } from '@ws-heartbeat/protocol';
import type { WebSocketConstructor } from './types.js';

export interface ReconnectOptions {
  /**
   * The first retry waits up to this long (ms); each failed retry multiplies the bound by `factor`.
   * @default 500
   */
  minDelay?: number;
  /**
   * The most any retry waits (ms).
   * @default 30_000
   */
  maxDelay?: number;
  /**
   * How much the bound grows per failed retry.
   * @default 2
   */
  factor?: number;
  /**
   * Retries after which the client gives up (readyState CLOSED, a `'close'` event with `final: true`).
   * @default Infinity
   */
  maxRetries?: number;
  /**
   * A connection that stays open this long (ms) resets the backoff to its first step.
   * @default 10_000
   */
  resetAfter?: number;
}

export interface HeartbeatClientOptions {
  /**
   * Subprotocols, as for `new WebSocket(url, protocols)`.
   * @default none
   */
  protocols?: string | string[];
  /**
   * The WebSocket constructor. Node 20 has no global WebSocket: pass `ws` (`require('ws')`).
   * @default globalThis.WebSocket
   */
  WebSocket?: WebSocketConstructor;
  /**
   * When nothing has arrived for this long (ms), the client sends a heartbeat message.
   * Left unset, the server's own `interval` is used: the client then sends a heartbeat as soon as
   * the connection opens, and takes the setting from the answer.
   * @default 30_000 until the server's answer
   */
  pingInterval?: number;
  /**
   * When nothing arrives this long (ms) after a heartbeat message, the server is dead: the client
   * closes the connection and reconnects. Left unset, the server's own `timeout` is used, as for
   * `pingInterval`.
   * @default 10_000 until the server's answer
   */
  pongTimeout?: number;
  /**
   * An attempt whose WebSocket has not opened this long (ms) after it began is given up, and
   * counts as a failed attempt: retried with backoff. A hung server (or one behind a proxy)
   * accepts the TCP connection in its kernel and never answers the upgrade; without this limit
   * such an attempt could wait for minutes.
   * @default 10_000
   */
  connectTimeout?: number;
  /**
   * The heartbeat message. The server's `appHeartbeat` recognises the default.
   * @default '{"type":"ping"}'
   */
  heartbeatMessage?: string;
  /**
   * Reconnect after the connection is lost, with exponential backoff and full jitter; `false`
   * to stay closed.
   * @default {}
   */
  reconnect?: ReconnectOptions | false;
  /**
   * Messages `send()` keeps while the connection is not open, delivered in order once it is.
   * When the queue is full, `send()` refuses the message (returns false). `0`: no queue.
   * @default 0
   */
  queueSize?: number;
  /**
   * `binaryType` of each socket (`'arraybuffer'`, `'blob'`, or `ws`'s `'nodebuffer'`).
   * @default the platform's
   */
  binaryType?: string;
}

export const DEFAULTS = {
  pingInterval: 30_000,
  pongTimeout: 10_000,
  connectTimeout: 10_000,
  heartbeatMessage: APP_PING,
  queueSize: 0,
} as const;

export const RECONNECT_DEFAULTS: Required<ReconnectOptions> = {
  minDelay: 500,
  maxDelay: 30_000,
  factor: 2,
  maxRetries: Infinity,
  resetAfter: 10_000,
};

/**
 * A timer that fires more than this late (ms), or more than half the `pongTimeout` late, was
 * throttled (a background tab) or slept through (a suspended laptop): its verdict would be about
 * time the client did not see. Browsers delay background timers by up to a second.
 */
export const LATE_TIMER_MS = 1_500;

/**
 * The delay before retry number `attempt` (from 1): full jitter, a uniformly random delay from 0
 * to `min(maxDelay, minDelay × factor^(attempt − 1))`.
 */
export function backoffDelay(attempt: number, options: Required<ReconnectOptions>, random: () => number = Math.random): number {
  const bound = Math.min(options.maxDelay, options.minDelay * options.factor ** Math.max(0, attempt - 1));
  return random() * bound;
}

/** A positive number (Infinity only where allowed), or a TypeError naming the option. */
export function positive(name: string, value: unknown, allowInfinity = false): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value <= 0 || (!allowInfinity && !Number.isFinite(value))) {
    throw new TypeError(`The "${name}" option must be a positive number: got ${String(value)}`);
  }
  return value;
}
