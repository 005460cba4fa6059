import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import { SendBacklog } from './backlog';
import { fail, rethrow } from './errors';
import { DETECTION_BOUNDS_MS, LatencyHistogram, RTT_BOUNDS_MS, type LatencySummary } from './histogram';
import { LoadMonitor, type EventLoopDelay } from './load';
import { logEvents, type HeartbeatLogger } from './log';
import { resolveOptions, TICK_MS, type HeartbeatOptions, type ResolvedOptions } from './options';
import { Wheel } from './wheel';

// `performance` is the global one, not perf_hooks' export: a fake clock replaces the global.

/** Why the engine ended a connection. */
export type TerminateReason = 'timeout' | 'close-timeout' | 'backpressure' | 'shutdown';

const REASONS: readonly TerminateReason[] = ['timeout', 'close-timeout', 'backpressure', 'shutdown'];

/** What the caller knows about a connection it hands to {@link Heartbeat.track}. */
export interface TrackInfo {
  /**
   * Name of a route defined with {@link Heartbeat.route}; its options apply.
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

/** Options of {@link Heartbeat.close}. */
export interface CloseOptions {
  /**
   * Tells clients to come back within this many ms: connections are closed with code 1012
   * (Service Restart) and the reason `Server restarting, retry within <n> ms`, which
   * `@ws-heartbeat/client` reads to wait a random delay in that window, so that a restart does
   * not bring every client back at once. Without it: code 1001, `Server shutting down`.
   * @default none
   */
  retryWithin?: number;
}

/**
 * The close frame a shutdown sends: 1001 `Server shutting down`, or with `retryWithin`, 1012
 * `Server restarting, retry within <n> ms`. Throws a `TypeError` for an invalid `retryWithin`.
 */
export function shutdownFrame(options: CloseOptions = {}): { code: number; reason: string } {
  if (typeof options !== 'object' || options === null) fail('close options', 'an object', options);
  const { retryWithin } = options;
  if (retryWithin === undefined) return { code: SHUTDOWN_CODE, reason: SHUTDOWN_REASON };
  if (typeof retryWithin !== 'number' || !Number.isSafeInteger(retryWithin) || retryWithin <= 0) {
    fail('retryWithin', 'a positive whole number of milliseconds', retryWithin);
  }
  return { code: RESTART_CODE, reason: `Server restarting, retry within ${retryWithin} ms` };
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
export type { EventLoopDelay, HeartbeatLogger, LatencySummary };

/** Counters of one route; shared by every definition of that route. */
class RouteCounters {
  connections = 0;
  pingsSent = 0;
  pongsReceived = 0;
  readonly terminations: Record<TerminateReason, number> = { timeout: 0, 'close-timeout': 0, backpressure: 0, shutdown: 0 };
  readonly rtt = new LatencyHistogram(RTT_BOUNDS_MS);
  readonly detection = new LatencyHistogram(DETECTION_BOUNDS_MS);

  snapshot(): RouteStats {
    return {
      connections: this.connections,
      pingsSent: this.pingsSent,
      pongsReceived: this.pongsReceived,
      terminations: { ...this.terminations },
      rtt: this.rtt.summary(),
      detection: this.detection.summary(),
    };
  }
}

interface Profile {
  readonly name: string;
  readonly options: ResolvedOptions;
  /** The default-format reply, encoded once. */
  readonly appReply: Buffer | undefined;
  readonly counters: RouteCounters;
}

/** The property that links a tracked `ws` (and its raw socket) to its slot in the engine. */
const kId = Symbol('ws-heartbeat.id');

type Tagged<T> = T & { [kId]?: number };

/** traits bits: what the event paths need of the route and the connection, without a lookup. */
const IDLE_ONLY = 1;
const APP_HEARTBEAT = 2;
/** The raw socket's reads are watched: every chunk is a sign of life, frames need no store of their own. */
const READS_WATCHED = 4;

/** flags bits. */
/** A ping is out, and no pong has answered it yet (the pong that does gives the round trip). */
const PING_OUT = 1;
/** The connection looked dead; its verdict waits until pending input has been read. */
const SUSPECTED = 2;

const FREE = 0;
const OPEN = 1;
const CLOSING = 2;
const TERMINATED = 3;

const ENGINE_DEFAULTS = { overloadThreshold: 100 } as const;

const WHEEL_SLOTS = 1024;
const INITIAL_CAPACITY = 64;
const SHUTDOWN_CODE = 1001;
const SHUTDOWN_REASON = 'Server shutting down';
/** Service Restart (RFC 6455 §7.4.1 registry): the close code of a shutdown with a retry hint. */
const RESTART_CODE = 1012;
/** How often a route with `maxBufferedAmount` re-reads its connections' queues, at most. */
const BUFFER_CHECK_MS = 1_000;
/** How often, at most, a connection with bytes queued to it is looked at for progress of that queue. */
const PROGRESS_CHECK_MS = 250;
/** How much earlier than its due time a new connection's first ping may go, at most, to keep ticks even. */
const FIRST_PING_SPREAD_MS = 2_500;

/** The window before its due time in which a new connection's first ping may be placed. */
function firstPingSpread(options: ResolvedOptions): number {
  return Math.min(options.interval / 4, FIRST_PING_SPREAD_MS);
}
/**
 * While bytes are queued to a peer, how often its queue is looked at: a quarter of the timeout, at
 * most {@link PROGRESS_CHECK_MS}, never less than a tick. Queue progress is seen this late at most,
 * which is all it adds to the bound of a peer that vanishes in the middle of a download.
 */
function progressCheck(options: ResolvedOptions): number {
  return Math.max(TICK_MS, Math.min(options.timeout / 4, PROGRESS_CHECK_MS));
}
/**
 * When a connection pinged at `pingAt`, whose last sign of life came at `lastSeen`, is judged:
 * `timeout` after the ping was due, or after it was sent if that was later (a ping sent late, after
 * a stall, still gets its full timeout).
 */
function verdictDue(pingAt: number, lastSeen: number, options: ResolvedOptions): number {
  return Math.max(pingAt, lastSeen + options.interval) + options.timeout;
}
const TEXT = { binary: false } as const;
/** A server's ping frame: FIN and opcode 0x9, unmasked, no payload (what `ws.ping()` sends). */
const PING_FRAME = Buffer.from([0x89, 0x00]);

const emitOriginal = EventEmitter.prototype.emit;

/** The raw socket `ws` keeps for a connection; `ws` does not expose it publicly. */
function socketOf(ws: WebSocket): Duplex | undefined {
  return (ws as unknown as { _socket?: Duplex | null })._socket ?? undefined;
}

/**
 * Whether a ping may be written straight to `socket`: it is the socket of a server-side `ws`
 * (whose frames are unmasked) and still writable. `ws` writes each frame whole, in one
 * synchronous call, so a control frame written between two of its writes is in the right place
 * (RFC 6455 §5.4 allows one even between the fragments of a message).
 */
function pingsDirectly(ws: WebSocket, socket: Duplex | undefined): socket is Duplex {
  return socket !== undefined && socket.writable && socketOf(ws) === socket && (ws as unknown as { _isServer?: boolean })._isServer === true;
}

/** The peer's address of a raw socket (a `net.Socket` under `ws`), if it has one. */
function addressOf(socket: Duplex | undefined): string | undefined {
  return (socket as Partial<Socket> | undefined)?.remoteAddress;
}

/**
 * The heartbeat engine: tells, for every tracked server-side `ws` connection, whether the peer is
 * still there, and ends those that are not.
 *
 * One engine serves many connections, with options per route. Per connection it keeps a few
 * numbers in typed arrays (no timers, no closures), and one `unref()`ed timer drives a timing
 * wheel whose ticks each visit only the connections that fall due in them.
 *
 * The liveness bound: with `t0` the peer's last sign of life (a chunk of bytes read from it, or
 * our queue to it moving; or the moment it was tracked), an idle connection is pinged at
 * `t0 + interval` and terminated at `t0 + interval + timeout` if it showed nothing more — never
 * earlier, and at most one tick (5 ms) plus the timer's own delay later. A transfer of any length
 * is therefore no reason to end a peer. A verdict always waits until pending input has been read,
 * so an event-loop stall of any length terminates no healthy peer.
 *
 * @example
 * const heartbeat = new Heartbeat({ interval: 30_000, timeout: 10_000 });
 * wss.on('connection', (ws, req) => heartbeat.track(ws, { socket: req.socket }));
 * heartbeat.on('terminate', (ws, reason) => console.log('ended a peer:', reason));
 */
export class Heartbeat extends EventEmitter<HeartbeatEvents> {
  private readonly baseOptions: HeartbeatOptions;
  private readonly profiles: Profile[] = [];
  private readonly profileByName = new Map<string, number>();
  private readonly wheel: Wheel;

  // Per-connection state, indexed by the connection's slot id.
  private sockets: (WebSocket | undefined)[] = [];
  private rawSockets: (Duplex | undefined)[] = [];
  private state = new Uint8Array(0);
  /** IDLE_ONLY, APP_HEARTBEAT and READS_WATCHED bits. */
  private traits = new Uint8Array(0);
  /** PING_OUT and SUSPECTED bits. */
  private flags = new Uint8Array(0);
  private profileOf = new Uint16Array(0);
  /** The peer's last sign of life: a chunk read from it, a frame, or our queue to it moving. */
  private lastSeen = new Float64Array(0);
  private trackedAt = new Float64Array(0);
  /** When the latest ping was written (0: never pinged). */
  private pingAt = new Float64Array(0);
  /** When the connection entered CLOSING. */
  private closingAt = new Float64Array(0);
  private latestRtt = new Float32Array(0);
  private readonly backlog = new SendBacklog();
  private readonly freeIds: number[] = [];
  private count = 0;

  /** Connections whose verdict waits until pending input has been read. */
  private readonly suspects: number[] = [];
  private readonly judging: number[] = [];
  private judgeScheduled = false;

  private tickTimer: NodeJS.Timeout | undefined;
  private tickTimerAt = Infinity;
  private lastLateMs = 0;
  private maxLateMs = 0;
  private readonly load: LoadMonitor;

  private closePromise: Promise<void> | undefined;
  /** The close frame of the shutdown: set by `close()`. */
  private shutdown = shutdownFrame();
  private resolveClose: (() => void) | undefined;
  private closed = false;

  // Methods shared by every connection of this engine, set as own properties of the tracked
  // objects (an own property costs no memory there, five listeners would): `this` is the object.
  private readonly wsEmit: (this: Tagged<WebSocket>, event: string | symbol, ...args: unknown[]) => boolean;
  private readonly wsClose: (this: Tagged<WebSocket>, code?: number, reason?: string | Buffer) => void;
  private readonly socketEmit: (this: Tagged<Duplex>, event: string | symbol, ...args: unknown[]) => boolean;
  /** For a socket that already has an `emit` of its own: listeners instead. */
  private readonly socketOnEnd: (this: Tagged<Duplex>) => void;
  private readonly socketOnData: (this: Tagged<Duplex>) => void;

  constructor(options: HeartbeatEngineOptions = {}) {
    super();
    if (typeof options !== 'object' || options === null) fail('options', 'an object', options);
    const { overloadThreshold = ENGINE_DEFAULTS.overloadThreshold, logger = false, ...routeOptions } = options;
    if (typeof overloadThreshold !== 'number' || !Number.isFinite(overloadThreshold) || overloadThreshold <= 0) {
      fail('overloadThreshold', 'a positive finite number of milliseconds', overloadThreshold);
    }
    if (logger !== false && (typeof logger !== 'object' || logger === null || ['debug', 'info', 'warn'].some((level) => typeof logger[level as 'info'] !== 'function'))) {
      fail('logger', 'a logger with debug, info and warn methods (pino-compatible), or false', logger);
    }
    this.baseOptions = routeOptions;
    this.route('default');
    const now = performance.now();
    this.wheel = new Wheel({ tickMs: TICK_MS, slots: WHEEL_SLOTS, start: now });
    this.grow(INITIAL_CAPACITY);
    this.load = new LoadMonitor({ threshold: overloadThreshold, now });
    if (logger !== false) logEvents(this, logger);

    const engine = this;
    // Every event of a tracked connection passes here first: frames prove life (one store, unless
    // the raw socket's reads already did), pongs end a ping, 'close' forgets the connection, and
    // an 'error' nobody listens to is dropped instead of thrown (`ws` closes the connection after
    // emitting it).
    this.wsEmit = function wsEmit(event, data, isBinary) {
      const id = this[kId]!;
      switch (event) {
        case 'message':
          if ((engine.traits[id]! & APP_HEARTBEAT) !== 0 && engine.answerAppHeartbeat(this, id, data as RawData, isBinary === true)) return true;
          if ((engine.traits[id]! & READS_WATCHED) === 0) engine.lastSeen[id] = performance.now();
          break;
        case 'ping':
          if ((engine.traits[id]! & READS_WATCHED) === 0) engine.lastSeen[id] = performance.now();
          break;
        case 'pong':
          engine.onPong(this, id);
          break;
        case 'close':
          engine.untrack(id);
          break;
        case 'error':
          if (this.listenerCount('error') === 0) return false;
          break;
      }
      return Reflect.apply(emitOriginal, this, arguments) as boolean;
    };
    this.wsClose = function wsClose(code, reason) {
      engine.markClosing(this[kId]!);
      Object.getPrototypeOf(this).close.call(this, code, reason);
    };
    // Every chunk read from the peer is a sign of life, a frame complete or not (one large frame
    // can take seconds to arrive, and the peer's pong waits behind it): one store per read.
    // The peer sent FIN: `ws` is now CLOSING and may never finish if data is queued to a peer
    // that stopped reading. The close timeout starts here.
    this.socketEmit = function socketEmit(event) {
      if (event === 'data') engine.lastSeen[this[kId]!] = performance.now();
      else if (event === 'end') engine.markClosing(this[kId]!);
      return Reflect.apply(Object.getPrototypeOf(this).emit, this, arguments) as boolean;
    };
    this.socketOnEnd = function socketOnEnd() {
      engine.markClosing(this[kId]!);
    };
    this.socketOnData = function socketOnData() {
      engine.lastSeen[this[kId]!] = performance.now();
    };
  }

  /**
   * Defines the options of a named route (overrides over the constructor's options), or
   * redefines them for the connections tracked from now on. Returns the resolved options.
   * The route `'default'` always exists and has the constructor's options. `defaults` replace
   * the engine's own defaults for this route where neither `overrides` nor the constructor's
   * options say otherwise (the router scales `maxBufferedAmount` with a route's `maxPayload`).
   */
  route(name: string, overrides: HeartbeatOptions = {}, defaults: HeartbeatOptions = {}): ResolvedOptions {
    if (typeof name !== 'string' || name === '') throw new TypeError(`A route name must be a non-empty string: got ${String(name)}`);
    const options = resolveOptions(overrides, this.baseOptions, defaults);
    const previous = this.profileByName.get(name);
    if (this.profiles.length >= 0xffff) throw new RangeError('Too many route definitions');
    const counters = previous === undefined ? new RouteCounters() : this.profiles[previous]!.counters;
    const app = options.appHeartbeat;
    const appReply = app && typeof app.reply === 'string' ? Buffer.from(app.reply) : undefined;
    this.profileByName.set(name, this.profiles.length);
    this.profiles.push({ name, options, appReply, counters });
    return options;
  }

  /** The resolved options of a route. */
  settings(route = 'default'): ResolvedOptions {
    return this.profile(route).options;
  }

  /** Number of connections currently tracked. */
  get size(): number {
    return this.count;
  }

  /** True once `close()` has been called. */
  get closing(): boolean {
    return this.closePromise !== undefined;
  }

  /**
   * Starts managing a server-side connection. From now on an `'error'` with no listener of the
   * application's is dropped, so a misbehaving peer can never crash the process. Tracking a
   * connection twice is a no-op.
   *
   * Until the connection closes, the engine sees its events through pass-through `emit` and
   * `close` methods set on the `ws` object (and an `emit` on its raw socket, to see the peer's
   * FIN); they are removed on `'close'`. Nothing else of the connection changes.
   * After `close()` was called, the connection is closed with 1001 at once.
   */
  track(ws: WebSocket, info: TrackInfo = {}): void {
    const index = this.profileIndex(info.route ?? 'default');
    const tagged = ws as Tagged<WebSocket>;
    const known = tagged[kId];
    if (known !== undefined && known >= 0) {
      if (this.sockets[known] === ws) return;
      throw new Error('This WebSocket is already tracked by another Heartbeat');
    }
    if (ws.readyState === WebSocket.CLOSED) return;

    const id = this.allocate();
    const profile = this.profiles[index]!;
    const { options } = profile;
    const now = performance.now();
    this.sockets[id] = ws;
    this.profileOf[id] = index;
    this.state[id] = OPEN;
    this.lastSeen[id] = now;
    this.trackedAt[id] = now;
    this.pingAt[id] = 0;
    this.closingAt[id] = 0;
    this.flags[id] = 0;
    this.latestRtt[id] = NaN;
    this.backlog.reset(id);
    const socket = info.socket ?? socketOf(ws);
    this.traits[id] = (options.idleOnly ? IDLE_ONLY : 0) | (options.appHeartbeat ? APP_HEARTBEAT : 0) | (socket ? READS_WATCHED : 0);
    tagged[kId] = id;

    ws.emit = this.wsEmit;
    ws.close = this.wsClose;
    if (socket) {
      (socket as Tagged<Duplex>)[kId] = id;
      if (Object.hasOwn(socket, 'emit')) {
        socket.on('data', this.socketOnData);
        socket.on('end', this.socketOnEnd);
      } else {
        socket.emit = this.socketEmit;
      }
      this.rawSockets[id] = socket;
    }

    this.count += 1;
    profile.counters.connections += 1;
    // Connections that arrive together would otherwise be pinged together every interval from
    // then on (each pong re-anchors t0). The first check goes to the least loaded tick of a window
    // before the due time instead; the spread then persists through the pongs.
    const due = now + options.interval - TICK_MS;
    this.wheel.schedule(id, this.wheel.leastLoaded(due - firstPingSpread(options), due));
    this.emitSafely('connection', ws, profile.name);

    if (ws.readyState === WebSocket.CLOSING) this.markClosing(id);
    else if (this.closing) ws.close(this.shutdown.code, this.shutdown.reason);
    this.wake();
  }

  /** The latest ping→pong round-trip time of a tracked connection, in ms. */
  rtt(ws: WebSocket): number | undefined {
    const id = (ws as Tagged<WebSocket>)[kId];
    if (id === undefined || id < 0 || this.sockets[id] !== ws) return undefined;
    const rtt = this.latestRtt[id]!;
    return Number.isNaN(rtt) ? undefined : rtt;
  }

  /** A plain-object snapshot of the engine's figures, overall and per route. */
  stats(): HeartbeatStats {
    this.sampleLoad(performance.now());
    const routes: Record<string, RouteStats> = {};
    const total = { pingsSent: 0, pongsReceived: 0, terminations: { timeout: 0, 'close-timeout': 0, backpressure: 0, shutdown: 0 } };
    for (const [name, index] of this.profileByName) {
      const route = this.profiles[index]!.counters.snapshot();
      routes[name] = route;
      total.pingsSent += route.pingsSent;
      total.pongsReceived += route.pongsReceived;
      for (const reason of REASONS) total.terminations[reason] += route.terminations[reason];
    }
    return {
      connections: this.count,
      ...total,
      routes,
      tick: { ms: TICK_MS, lastLateMs: this.lastLateMs, recentLateMs: this.load.recentLateMs, maxLateMs: this.maxLateMs },
      eventLoop: { ...this.load.recent },
      overloaded: this.load.overloaded,
      overloadThreshold: this.load.threshold,
    };
  }

  /**
   * Closes every connection with code 1001 (or 1012 and a retry hint, with `retryWithin`),
   * destroys those still open after their route's `closeTimeout` (reason `'shutdown'`), clears
   * the timer, and resolves once every connection is gone; then emits `'close'`. Safe to call
   * more than once: later calls return the first call's promise, and their options are ignored.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.closePromise) return this.closePromise;
    this.shutdown = shutdownFrame(options);
    this.closePromise = new Promise((resolve) => {
      this.resolveClose = resolve;
    });
    for (let id = 0; id < this.sockets.length; id++) {
      const ws = this.sockets[id];
      if (ws !== undefined && this.state[id] === OPEN) ws.close(this.shutdown.code, this.shutdown.reason);
    }
    if (this.count === 0) this.finishClose();
    return this.closePromise;
  }

  private profile(name: string): Profile {
    return this.profiles[this.profileIndex(name)]!;
  }

  private profileIndex(name: string): number {
    const index = this.profileByName.get(name);
    if (index === undefined) throw new TypeError(`Unknown heartbeat route "${name}": define it with heartbeat.route()`);
    return index;
  }

  private allocate(): number {
    const free = this.freeIds.pop();
    if (free !== undefined) return free;
    const id = this.sockets.length;
    // Grown by half: at tens of thousands of connections, doubling would leave up to half unused.
    if (id >= this.state.length) this.grow(Math.ceil(this.state.length * 1.5));
    this.sockets.push(undefined);
    this.rawSockets.push(undefined);
    return id;
  }

  private grow(capacity: number): void {
    const copy = <T extends Uint8Array | Uint16Array | Float32Array | Float64Array>(from: T, to: T): T => {
      to.set(from);
      return to;
    };
    this.state = copy(this.state, new Uint8Array(capacity));
    this.traits = copy(this.traits, new Uint8Array(capacity));
    this.flags = copy(this.flags, new Uint8Array(capacity));
    this.profileOf = copy(this.profileOf, new Uint16Array(capacity));
    this.lastSeen = copy(this.lastSeen, new Float64Array(capacity));
    this.trackedAt = copy(this.trackedAt, new Float64Array(capacity));
    this.pingAt = copy(this.pingAt, new Float64Array(capacity));
    this.closingAt = copy(this.closingAt, new Float64Array(capacity));
    this.latestRtt = copy(this.latestRtt, new Float32Array(capacity));
    this.backlog.ensureCapacity(capacity);
    this.wheel.ensureCapacity(capacity);
  }

  private onPong(ws: Tagged<WebSocket>, id: number): void {
    const now = performance.now();
    this.lastSeen[id] = now;
    // Unsolicited (no ping out), or CLOSING: proof of life, but no round trip to measure.
    if ((this.flags[id]! & PING_OUT) === 0 || this.state[id] !== OPEN) return;
    this.flags[id]! &= ~PING_OUT;
    // Stored as a float32 (7 significant digits): the event and rtt(ws) report the same value.
    const rtt = Math.fround(now - this.pingAt[id]!);
    this.latestRtt[id] = rtt;
    const { counters, name } = this.profiles[this.profileOf[id]!]!;
    counters.pongsReceived += 1;
    counters.rtt.record(rtt);
    if (this.listenerCount('pong') !== 0) this.emitSafely('pong', ws, rtt, name);
  }

  /** Answers an application-level heartbeat; returns true when `data` was one. */
  private answerAppHeartbeat(ws: WebSocket, id: number, data: RawData, isBinary: boolean): boolean {
    const profile = this.profiles[this.profileOf[id]!]!;
    const app = profile.options.appHeartbeat;
    if (!app) return false;
    let reply: string | Buffer | undefined;
    try {
      if (!app.match(data, isBinary)) return false;
      reply = profile.appReply ?? (typeof app.reply === 'function' ? app.reply(data) : app.reply);
    } catch (error) {
      // A throwing matcher or reply function is the application's bug: surface it without
      // letting it into the receive path of this connection.
      process.nextTick(rethrow, error);
      return false;
    }
    this.lastSeen[id] = performance.now();
    if (reply !== undefined && ws.readyState === WebSocket.OPEN) {
      if (typeof reply === 'string') ws.send(reply);
      else if (reply === profile.appReply) ws.send(reply, TEXT);
      else ws.send(reply);
    }
    return true;
  }

  /** The connection entered CLOSING: its close timeout starts now. */
  private markClosing(id: number | undefined): void {
    if (id === undefined || id < 0 || this.state[id] !== OPEN) return;
    // Node caches the peer's address once read; after `ws`'s own close timer destroys the socket,
    // the termination can still name it.
    addressOf(this.rawSockets[id]);
    const now = performance.now();
    this.state[id] = CLOSING;
    this.closingAt[id] = now;
    this.wheel.schedule(id, now + this.profiles[this.profileOf[id]!]!.options.closeTimeout);
    this.wake();
  }

  /**
   * Decides what a due connection needs and returns when to look at it again (`Infinity`: not
   * in the wheel any more). With `final` false, a connection that looks dead becomes a suspect
   * whose verdict waits until pending input has been read; with `final` true it is ended.
   *
   * In order: CLOSING for `closeTimeout` → ended; more than `maxBufferedAmount` queued to the peer
   * → ended (`backpressure`); our queue to the peer moved since the last look → a sign of life
   * now (one that lasts while the kernels deliver their tail, when the queue has just emptied);
   * a sign of life after the latest ping answers it; a ping still unanswered `timeout` after
   * it was due (or sent, if later) → ended (`timeout`); otherwise a ping once one is due: an
   * interval after the last sign of life (`idleOnly`), or after the previous ping.
   */
  private readonly check = (id: number, now: number, final = false): number => {
    const ws = this.sockets[id]!;
    const { options } = this.profiles[this.profileOf[id]!]!;
    if (this.state[id] === OPEN && ws.readyState !== WebSocket.OPEN) {
      // CLOSING without a call we could see; start the close timeout from here.
      this.state[id] = CLOSING;
      this.closingAt[id] = now;
    }
    if (this.state[id] === CLOSING) {
      const deadline = this.closingAt[id]! + options.closeTimeout;
      if (now < deadline) return deadline;
      return this.judge(id, final, this.closing ? 'shutdown' : 'close-timeout');
    }
    if (options.maxBufferedAmount !== false && ws.bufferedAmount > options.maxBufferedAmount) {
      this.terminate(id, 'backpressure');
      return Infinity;
    }
    const socket = this.rawSockets[id];
    // The peer's kernel took some of what we queued to it: alive, even if its answer to our ping
    // still waits behind megabytes we sent before the ping. When it moved is only known to be
    // since the last look, so it counts as now: never earlier than it happened. When the queue has
    // just emptied, the peer is still reading what the kernels hold for it, and that counts on
    // until it would have read it at the rate it was reading (see SendBacklog).
    let formed = false;
    if (socket !== undefined) {
      const alive = this.backlog.look(id, socket, now, options.interval + options.timeout);
      if (alive > this.lastSeen[id]!) this.lastSeen[id] = alive;
      else formed = Number.isNaN(alive);
    }
    const lastSeen = this.lastSeen[id]!;
    let pinged = (this.flags[id]! & PING_OUT) !== 0;
    if (pinged && lastSeen >= this.pingAt[id]!) {
      pinged = false; // any sign of life after the ping answers it
      this.flags[id]! &= ~PING_OUT;
    }
    // While a ping is out, the connection is looked at again at least once per interval (not only
    // at its deadline), so that when a timeout longer than the interval is configured, an answer
    // is noticed in time to send the next ping on schedule. Reads themselves stay one store.
    let next: number;
    if (pinged) {
      const deadline = verdictDue(this.pingAt[id]!, lastSeen, options);
      if (now < deadline) next = Math.min(deadline, now + options.interval);
      // A queue to the peer that formed since the last look may be moving: one more look tells.
      else if (formed) next = now + progressCheck(options);
      else return this.judge(id, final, 'timeout');
    } else {
      const trackedAt = this.trackedAt[id]!;
      const anchor = (this.traits[id]! & IDLE_ONLY) !== 0 ? lastSeen : Math.max(this.pingAt[id]!, trackedAt);
      const due = anchor + options.interval - TICK_MS;
      // A connection that showed nothing since it was tracked (and was never pinged) may get its
      // first ping in the check it was spread to (see track()).
      if (now >= due || (anchor === trackedAt && now >= due - firstPingSpread(options))) {
        // Pinged in the tick that ends at or after the due time: the verdict then falls due at
        // exactly t0 + interval + timeout.
        next = Math.min(verdictDue(this.ping(id, ws), lastSeen, options), now + options.interval);
      } else {
        next = due;
      }
    }
    if (options.maxBufferedAmount !== false) next = Math.min(next, now + Math.min(options.interval, BUFFER_CHECK_MS));
    // A queue is watched while it holds bytes, and so is one about to form: `ws` still holds
    // bytes for the peer (messages it is compressing, or has yet to hand to the socket).
    if (this.backlog.queued(id) || ws.bufferedAmount > 0) next = Math.min(next, now + progressCheck(options));
    return next;
  };

  private judge(id: number, final: boolean, reason: TerminateReason): number {
    if (final) {
      this.terminate(id, reason);
    } else if ((this.flags[id]! & SUSPECTED) === 0) {
      this.flags[id]! |= SUSPECTED;
      this.suspects.push(id);
      if (!this.judgeScheduled) {
        this.judgeScheduled = true;
        setImmediate(this.afterPendingInput);
      }
    }
    return Infinity;
  }

  /**
   * Runs the suspects' verdicts two turns of the event loop after they were found: the first
   * turn's poll phase reads the input that arrived while this process was busy (a stall delays
   * our timer and the peers' pongs alike), the second lets `ws` deliver anything it deferred.
   */
  private readonly afterPendingInput = (): void => {
    if (this.judging.length === 0) {
      this.judging.push(...this.suspects);
      this.suspects.length = 0;
      setImmediate(this.afterPendingInput);
      return;
    }
    this.judgeScheduled = false;
    const now = performance.now();
    for (const id of this.judging) {
      if ((this.flags[id]! & SUSPECTED) === 0) continue; // closed meanwhile
      this.flags[id]! &= ~SUSPECTED;
      const next = this.check(id, now, true);
      if (next !== Infinity) this.wheel.schedule(id, next);
    }
    this.judging.length = 0;
    if (this.suspects.length > 0 && !this.judgeScheduled) {
      this.judgeScheduled = true;
      setImmediate(this.afterPendingInput);
    }
    this.wake();
  };

  /**
   * Pings a connection; returns when the ping was written. The frame goes straight to the raw
   * socket where it can: `ws.ping()` would queue it behind every message `ws` is still
   * compressing (permessage-deflate), megabytes that the peer has not even been sent yet.
   */
  private ping(id: number, ws: WebSocket): number {
    const profile = this.profiles[this.profileOf[id]!]!;
    profile.counters.pingsSent += 1;
    const socket = this.rawSockets[id];
    if (pingsDirectly(ws, socket)) {
      socket.write(PING_FRAME);
    } else {
      try {
        ws.ping();
      } catch {
        // Only thrown for a socket that is not open; the next check sees its state.
      }
    }
    // The timeout runs from the write, not from the start of the tick: in a tick that pings many
    // connections (after a stall, or with slow 'ping' listeners) the last pings leave later, and
    // each gets its whole timeout.
    const at = performance.now();
    this.pingAt[id] = at;
    this.flags[id]! |= PING_OUT;
    if (this.listenerCount('ping') !== 0) this.emitSafely('ping', ws, profile.name);
    return at;
  }

  private terminate(id: number, reason: TerminateReason): void {
    this.state[id] = TERMINATED;
    this.wheel.cancel(id);
    // Read before the socket is destroyed: afterwards it no longer knows its peer.
    const remoteAddress = addressOf(this.rawSockets[id]);
    this.sockets[id]!.terminate();
    this.countTermination(id, reason, remoteAddress);
  }

  private countTermination(id: number, reason: TerminateReason, remoteAddress: string | undefined): void {
    const now = performance.now();
    const profile = this.profiles[this.profileOf[id]!]!;
    const silentMs = now - this.lastSeen[id]!;
    profile.counters.terminations[reason] += 1;
    if (reason === 'timeout') profile.counters.detection.record(silentMs);
    const info: TerminateInfo = { remoteAddress, ageMs: now - this.trackedAt[id]!, silentMs };
    this.emitSafely('terminate', this.sockets[id]!, reason, profile.name, info);
  }

  /** Forgets a connection on its `'close'`. */
  private untrack(id: number | undefined): void {
    if (id === undefined || id < 0 || this.state[id] === FREE) return;
    const ws = this.sockets[id]! as Tagged<WebSocket>;
    if (this.state[id] === CLOSING) {
      // `ws` runs a close timer of its own (the router gives it the route's closeTimeout). When
      // that timer, not ours, destroyed the socket, the connection still ended by its close timeout.
      const { closeTimeout } = this.profiles[this.profileOf[id]!]!.options;
      if (performance.now() - this.closingAt[id]! >= closeTimeout - 1) {
        this.countTermination(id, this.closing ? 'shutdown' : 'close-timeout', addressOf(this.rawSockets[id]));
      }
    }
    this.wheel.cancel(id);
    this.flags[id] = 0;
    this.backlog.reset(id);
    // Give the connection its own methods back.
    Reflect.deleteProperty(ws, 'close');
    Reflect.deleteProperty(ws, 'emit');
    ws[kId] = -1;
    const socket = this.rawSockets[id] as Tagged<Duplex> | undefined;
    if (socket) {
      if (socket.emit === this.socketEmit) {
        Reflect.deleteProperty(socket, 'emit');
      } else {
        socket.removeListener('data', this.socketOnData);
        socket.removeListener('end', this.socketOnEnd);
      }
      socket[kId] = -1;
    }
    this.sockets[id] = undefined;
    this.rawSockets[id] = undefined;
    this.state[id] = FREE;
    this.freeIds.push(id);
    this.count -= 1;
    this.profiles[this.profileOf[id]!]!.counters.connections -= 1;
    if (this.closing && this.count === 0) this.finishClose();
  }

  private finishClose(): void {
    this.clearTimer();
    if (this.closed) return;
    this.closed = true;
    this.load.stop();
    this.emitSafely('close');
    this.resolveClose?.();
  }

  /** Arms the one timer for the next tick that holds a connection, aligned to the tick boundary. */
  private wake(): void {
    const now = performance.now();
    let at = this.wheel.nextTickTime(now);
    // While connections are tracked, the load figures are updated on time (they may warn of overload).
    if (this.count > 0) at = Math.min(at, this.load.halfEnd);
    if (at === Infinity) {
      this.clearTimer();
      return;
    }
    // A time already past (a tick or a load half that fell due while nothing was tracked and no
    // timer ran) means "at once": the tick's lateness counts from now, not from a moment at which
    // no timer was armed, or the first connection after an idle spell would read as an overload.
    const due = Math.max(at, now);
    if (this.tickTimer !== undefined && this.tickTimerAt <= due) return;
    this.clearTimer();
    this.tickTimerAt = due;
    this.tickTimer = setTimeout(this.onTick, Math.max(1, Math.ceil(due - now)));
    this.tickTimer.unref();
  }

  private clearTimer(): void {
    if (this.tickTimer !== undefined) clearTimeout(this.tickTimer);
    this.tickTimer = undefined;
    this.tickTimerAt = Infinity;
  }

  private readonly onTick = (): void => {
    const now = performance.now();
    const late = Math.max(0, now - this.tickTimerAt);
    this.tickTimer = undefined;
    this.tickTimerAt = Infinity;
    this.lastLateMs = late;
    if (late > this.maxLateMs) this.maxLateMs = late;
    this.load.noteLateness(late);
    this.wheel.advance(now, this.check);
    this.sampleLoad(now);
    this.wake();
  };

  /** Updates the load figures when they are due; reports an overload's start and end. */
  private sampleLoad(now: number): void {
    // After close() the monitor is stopped: the latest figures stay as they were.
    if (this.closed || !this.load.sample(now)) return;
    const { load } = this;
    this.emitSafely('overload', load.overloaded, { eventLoopDelayMs: load.recent.maxMs, tickLateMs: load.recentLateMs, thresholdMs: load.threshold });
  }

  /**
   * Emits an event; a listener that throws cannot leave the engine half-way through its work:
   * the error is rethrown on the next tick, as an uncaught exception of the application's own.
   */
  private emitSafely<K extends keyof HeartbeatEvents>(event: K, ...args: HeartbeatEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: HeartbeatEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      process.nextTick(rethrow, error);
    }
  }
}

