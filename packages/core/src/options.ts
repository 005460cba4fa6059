import { APP_PING, formatAppPong } from '@ws-heartbeat/protocol';
import type { RawData } from 'ws';
import { checkKeys, fail } from './errors';

/** Granularity of the timing wheel in milliseconds: every bound of the engine holds to one tick. */
export const TICK_MS = 5;

/** The smallest `interval`, `timeout` or `closeTimeout` the wheel can honour: two ticks. */
export const MIN_DURATION_MS = 2 * TICK_MS;

/** The largest duration accepted: what Node's timers accept (about 24.8 days). */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * Behind a proxy, `interval` plus one tick must stay within this share of `proxyIdleTimeout`: the
 * rest is room for a late tick (an event-loop stall), the ping's way to the proxy, and a proxy
 * whose timer is coarser than it says.
 */
export const PROXY_IDLE_SHARE = 0.8;

/** The largest `interval` that `proxyIdleTimeout` allows. */
export function largestSafeInterval(proxyIdleTimeout: number): number {
  return Math.floor(PROXY_IDLE_SHARE * proxyIdleTimeout) - TICK_MS;
}

/**
 * Application-level heartbeat for clients that cannot send ping frames (browsers).
 * A message that `match` accepts counts as proof of life, is answered with `reply`, and is
 * never emitted as `'message'` to the application.
 */
export interface AppHeartbeatOptions {
  /**
   * Decides whether an inbound message is a heartbeat.
   * @default a text message that is exactly `{"type":"ping"}` (`APP_PING` of `@ws-heartbeat/protocol`)
   */
  match?: (data: RawData, isBinary: boolean) => boolean;
  /**
   * What to answer. A function receives the heartbeat message; returning `undefined` sends nothing.
   * Strings are sent as text, Buffers as binary.
   * @default a JSON text of type pong that names the route's `interval` and `timeout`, so that a client can match them (`formatAppPong` of `@ws-heartbeat/protocol`)
   */
  reply?: string | Buffer | ((data: RawData) => string | Buffer | undefined);
}

/** Heartbeat options. Durations are in milliseconds. */
export interface HeartbeatOptions {
  /**
   * A connection that has sent nothing for this long gets a ping.
   * @default 30_000
   */
  interval?: number;
  /**
   * After that ping, a connection that sends nothing for this long is terminated (reason `'timeout'`).
   * @default 10_000
   */
  timeout?: number;
  /**
   * A connection in CLOSING for longer than this is destroyed (reason `'close-timeout'`).
   * @default 5_000
   */
  closeTimeout?: number;
  /**
   * `true`: any inbound frame (message, ping, pong) is proof of life and postpones the ping, so
   * busy connections are never pinged. `false`: only pongs count, and every connection is pinged
   * once per `interval`.
   * @default true
   */
  idleOnly?: boolean;
  /**
   * Application-level heartbeat: `true` for the default format, an object to customise it,
   * `false` to turn it off.
   * @default false
   */
  appHeartbeat?: boolean | AppHeartbeatOptions;
  /**
   * The most bytes the server holds for one peer: once more than this is queued to it (it reads
   * slower than the application sends), it is terminated (reason `'backpressure'`). The queue is
   * re-read at least every `interval` or every second, whichever is shorter. `false` turns the
   * limit off (a slow reader can then make the server buffer without bound).
   * @default 67_108_864 (64 MiB); on a router route, twice the route's `maxPayload` if that is more
   */
  maxBufferedAmount?: number | false;
  /**
   * The shortest idle timeout of a proxy or load balancer between the clients and this server
   * (nginx's `proxy_read_timeout`, 60 s by default; an AWS ALB's idle timeout, 60 s). A connection
   * is never idle for longer than `interval` plus a tick: each silent peer is pinged by then. With
   * this option, a route whose `interval` plus one tick (5 ms) is more than 0.8 × this throws a
   * `TypeError` when it is defined, naming both values and the largest safe interval, instead of
   * letting the proxy cut idle connections. `false`: no check.
   * @default false
   */
  proxyIdleTimeout?: number | false;
}

/** Options with every default applied, as the engine uses them. */
export interface ResolvedOptions {
  readonly interval: number;
  readonly timeout: number;
  readonly closeTimeout: number;
  readonly idleOnly: boolean;
  readonly appHeartbeat: false | Required<AppHeartbeatOptions>;
  readonly maxBufferedAmount: number | false;
  readonly proxyIdleTimeout: number | false;
}

export const DEFAULTS = {
  interval: 30_000,
  timeout: 10_000,
  closeTimeout: 5_000,
  idleOnly: true,
  appHeartbeat: false,
  // Room for a burst of tens of MiB to a peer that reads slowly but steadily, and a bound on what
  // one peer can make the server hold (ws's default has none).
  maxBufferedAmount: 64 * 1024 * 1024,
  proxyIdleTimeout: false,
} as const satisfies Required<HeartbeatOptions>;

const KNOWN = new Set<string>(Object.keys(DEFAULTS));

const APP_PING_BYTES = Buffer.from(APP_PING);

/** Matches a text message whose bytes are exactly {@link APP_PING}; allocates nothing. */
function isDefaultAppPing(data: RawData, isBinary: boolean): boolean {
  return !isBinary && Buffer.isBuffer(data) && data.length === APP_PING_BYTES.length && data.equals(APP_PING_BYTES);
}

function duration(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < MIN_DURATION_MS || value > MAX_DURATION_MS) {
    fail(name, `a finite number of milliseconds from ${MIN_DURATION_MS} to ${MAX_DURATION_MS}`, value);
  }
  return value;
}

function appHeartbeat(value: unknown, interval: number, timeout: number): ResolvedOptions['appHeartbeat'] {
  if (value === false) return false;
  const custom: AppHeartbeatOptions = value === true ? {} : (value as AppHeartbeatOptions);
  if (value !== true && (typeof value !== 'object' || value === null)) {
    fail('appHeartbeat', 'a boolean or an object { match, reply }', value);
  }
  if (custom.match !== undefined && typeof custom.match !== 'function') {
    fail('appHeartbeat.match', 'a function', custom.match);
  }
  const reply = custom.reply;
  if (reply !== undefined && typeof reply !== 'string' && typeof reply !== 'function' && !Buffer.isBuffer(reply)) {
    fail('appHeartbeat.reply', 'a string, a Buffer or a function', reply);
  }
  return {
    match: custom.match ?? isDefaultAppPing,
    reply: reply ?? formatAppPong({ interval, timeout }),
  };
}

/**
 * Merges `options` over `base` over `defaults` (the defaults of one route, over {@link DEFAULTS})
 * once and checks every value, including the rules that involve several options. Throws a
 * `TypeError` that names the option and the value.
 */
export function resolveOptions(options: HeartbeatOptions = {}, base: HeartbeatOptions = DEFAULTS, defaults: HeartbeatOptions = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null) fail('options', 'an object', options);
  checkKeys(options, KNOWN, 'heartbeat');
  checkKeys(base, KNOWN, 'heartbeat');
  checkKeys(defaults, KNOWN, 'heartbeat');
  const merged = { ...DEFAULTS, ...defaults, ...base, ...options };
  const interval = duration('interval', merged.interval);
  const timeout = duration('timeout', merged.timeout);
  const closeTimeout = duration('closeTimeout', merged.closeTimeout);
  if (typeof merged.idleOnly !== 'boolean') fail('idleOnly', 'a boolean', merged.idleOnly);
  const max = merged.maxBufferedAmount;
  if (max !== false && (typeof max !== 'number' || !Number.isSafeInteger(max) || max <= 0)) {
    fail('maxBufferedAmount', 'a positive integer number of bytes or false', max);
  }
  const proxy = merged.proxyIdleTimeout;
  if (proxy !== false) {
    duration('proxyIdleTimeout', proxy);
    if (interval > largestSafeInterval(proxy)) {
      throw new TypeError(
        `The "interval" option (${interval} ms) is not safely below "proxyIdleTimeout" (${proxy} ms): the proxy would cut idle connections. ` +
          `The largest safe interval is ${largestSafeInterval(proxy)} ms (${PROXY_IDLE_SHARE} × proxyIdleTimeout, less one ${TICK_MS} ms tick)`,
      );
    }
  }
  return {
    interval,
    timeout,
    closeTimeout,
    idleOnly: merged.idleOnly,
    appHeartbeat: appHeartbeat(merged.appHeartbeat, interval, timeout),
    maxBufferedAmount: max,
    proxyIdleTimeout: proxy,
  };
}
