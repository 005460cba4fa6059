import { EventEmitter } from 'node:events';
import { WebSocket } from 'ws';
import { answerAppHeartbeat } from './app-heartbeat';
import { SendBacklog } from './backlog';
import { APP_HEARTBEAT, CLOSING, ConnectionTable, FREE, IDLE_ONLY, OPEN, PING_OUT, TERMINATED } from './connections';
import { fail, rethrow } from './errors';
import { addressOf, idOf, intercept, interceptors, pingsDirectly, release, socketOf, type Interceptors } from './intercept';
import { BUFFER_CHECK_MS, Liveness } from './liveness';
import { LoadMonitor } from './load';
import { logEvents } from './log';
import { TICK_MS, type HeartbeatOptions, type ResolvedOptions } from './options';
import { RouteTable } from './routes';
import { shutdownFrame } from './shutdown';
import { SweepRounds } from './sweep';
import { TickTimer } from './ticker';
import type { CloseOptions, HeartbeatEngineOptions, HeartbeatEvents, HeartbeatLogger, HeartbeatStats, TerminateInfo, TerminateReason, TrackInfo } from './types';
import { DeferredVerdicts } from './verdicts';
import { Wheel } from './wheel';

// `performance` is the global one, not perf_hooks' export: a fake clock replaces the global.

const ENGINE_DEFAULTS = { overloadThreshold: 100 } as const;
const WHEEL_SLOTS = 1024;
const LOGGER_METHODS = ['debug', 'info', 'warn'] as const;

/** A server's ping frame: FIN and opcode 0x9, unmasked, no payload (what `ws.ping()` sends). */
const PING_FRAME = Buffer.from([0x89, 0x00]);

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
  private readonly routes: RouteTable;
  private readonly wheel: Wheel;
  private readonly backlog = new SendBacklog();
  private readonly table: ConnectionTable;
  private readonly verdicts: DeferredVerdicts;
  private readonly liveness: Liveness;
  private readonly interceptors: Interceptors;
  private readonly load: LoadMonitor;
  /** The runtime's unseen reads were logged (see tellReadsUnseen). */
  private readsUnseenTold = false;
  /** When each part of the table is next re-read for `maxBufferedAmount` (Liveness.sweepBuffers). */
  private readonly sweep = new SweepRounds(BUFFER_CHECK_MS, performance.now());

  private readonly timer = new TickTimer((now, lateMs) => this.onTick(now, lateMs));

  /** The logger the engine writes to (its `logger` option), `false` for none: what works beside the engine, such as a cluster, writes there too. */
  readonly logger: HeartbeatLogger | false;

  private closePromise: Promise<void> | undefined;
  /** The close frame of the shutdown: set by `close()`. */
  private shutdown = shutdownFrame();
  private resolveClose: (() => void) | undefined;
  private closed = false;

  constructor(options: HeartbeatEngineOptions = {}) {
    super();
    if (typeof options !== 'object' || options === null) fail('options', 'an object', options);
    const { overloadThreshold = ENGINE_DEFAULTS.overloadThreshold, logger = false, ...routeOptions } = options;
    if (typeof overloadThreshold !== 'number' || !Number.isFinite(overloadThreshold) || overloadThreshold <= 0) {
      fail('overloadThreshold', 'a positive finite number of milliseconds', overloadThreshold);
    }
    if (logger !== false && (typeof logger !== 'object' || logger === null || LOGGER_METHODS.some((level) => typeof logger[level] !== 'function'))) {
      fail('logger', 'a logger with debug, info and warn methods (pino-compatible), or false', logger);
    }
    this.routes = new RouteTable(routeOptions);
    this.route('default');
    const now = performance.now();
    this.wheel = new Wheel({ tickMs: TICK_MS, slots: WHEEL_SLOTS, start: now });
    this.table = new ConnectionTable((capacity) => {
      this.wheel.ensureCapacity(capacity);
    });
    const engine = this;
    this.liveness = new Liveness(this.table, this.routes, this.backlog, {
      get closing() {
        return engine.closing;
      },
      ping: (id, ws) => this.ping(id, ws),
      judge: (id, final, reason) => this.judge(id, final, reason),
      leastLoaded: (from, to, steps, full) => this.wheel.leastLoaded(from, to, steps, full),
    });
    this.verdicts = new DeferredVerdicts(
      (id, at) => {
        const next = this.liveness.check(id, at, true);
        if (next !== Infinity) this.wheel.schedule(id, next);
      },
      () => this.wake(),
    );
    this.interceptors = interceptors(this.table, {
      appMessage: (ws, id, data, isBinary) => {
        if (!answerAppHeartbeat(ws, this.routes.at(this.table.profile[id]!), data, isBinary)) return false;
        this.table.lastSeen[id] = performance.now();
        return true;
      },
      pong: (ws, id) => this.onPong(ws, id),
      readsUnseen: () => this.tellReadsUnseen(),
      closing: (id) => this.markClosing(id),
      closed: (id) => this.untrack(id),
    });
    this.load = new LoadMonitor({ threshold: overloadThreshold, now });
    this.logger = logger;
    if (logger !== false) logEvents(this, logger);
  }

  /**
   * Defines the options of a named route (overrides over the constructor's options), or
   * redefines them for the connections tracked from now on. Returns the resolved options.
   * The route `'default'` always exists and has the constructor's options. `defaults` replace
   * the engine's own defaults for this route where neither `overrides` nor the constructor's
   * options say otherwise (the router scales `maxBufferedAmount` with a route's `maxPayload`).
   */
  route(name: string, overrides: HeartbeatOptions = {}, defaults: HeartbeatOptions = {}): ResolvedOptions {
    return this.routes.define(name, overrides, defaults);
  }

  /** The resolved options of a route. */
  settings(route = 'default'): ResolvedOptions {
    return this.routes.at(this.routes.indexOf(route)).options;
  }

  /** Number of connections currently tracked. */
  get size(): number {
    return this.table.count;
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
   * `close` methods: the `ws` object (and its raw socket, to see reads and the peer's FIN) gets a
   * prototype of the engine's over its own, which it gets back on `'close'`. `ws instanceof
   * WebSocket` still holds, and nothing else of the connection changes. (An object with an `emit`
   * of its own keeps it: the engine sets its methods on such a `ws`, and listens on such a socket.)
   * After `close()` was called, the connection is closed with 1001 at once.
   */
  track(ws: WebSocket, info: TrackInfo = {}): void {
    const index = this.routes.indexOf(info.route ?? 'default');
    const known = idOf(ws);
    if (known !== undefined && known >= 0) {
      if (this.table.ws[known] === ws) return;
      throw new Error('This WebSocket is already tracked by another Heartbeat');
    }
    if (ws.readyState === WebSocket.CLOSED) return;

    const { table } = this;
    const id = table.allocate();
    const profile = this.routes.at(index);
    const { options } = profile;
    const now = performance.now();
    const socket = info.socket ?? socketOf(ws);
    table.ws[id] = ws;
    table.socket[id] = socket;
    table.profile[id] = index;
    table.state[id] = OPEN;
    table.traits[id] = (options.idleOnly ? IDLE_ONLY : 0) | (options.appHeartbeat ? APP_HEARTBEAT : 0);
    table.lastSeen[id] = now;
    table.trackedAt[id] = now;
    table.pingAt[id] = 0;
    table.beatAt[id] = 0;
    table.closingAt[id] = 0;
    table.latestRtt[id] = NaN;
    this.backlog.reset(id);
    intercept(ws, socket, id, this.interceptors);
    profile.counters.connections += 1;
    // The first check goes to the least loaded tick of a window before the due time (see
    // Liveness.firstLook); the connection keeps that tick from then on.
    const due = now + options.interval - TICK_MS;
    this.wheel.schedule(id, this.liveness.firstLook(id, due));
    this.emitSafely('connection', ws, profile.name);

    if (ws.readyState === WebSocket.CLOSING) this.markClosing(id);
    else if (this.closing) ws.close(this.shutdown.code, this.shutdown.reason);
    this.wake();
  }

  /** The latest ping→pong round-trip time of a tracked connection, in ms. */
  rtt(ws: WebSocket): number | undefined {
    const id = idOf(ws);
    if (id === undefined || id < 0 || this.table.ws[id] !== ws) return undefined;
    const rtt = this.table.latestRtt[id]!;
    return Number.isNaN(rtt) ? undefined : rtt;
  }

  /** A plain-object snapshot of the engine's figures, overall and per route. */
  stats(): HeartbeatStats {
    this.sampleLoad(performance.now());
    return {
      connections: this.table.count,
      ...this.routes.snapshot(),
      tick: { ms: TICK_MS, lastLateMs: this.timer.lastLateMs, recentLateMs: this.load.recentLateMs, maxLateMs: this.timer.maxLateMs },
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
    const { table } = this;
    for (let id = 0; id < table.ws.length; id++) {
      const ws = table.ws[id];
      if (ws !== undefined && table.state[id] === OPEN) ws.close(this.shutdown.code, this.shutdown.reason);
    }
    if (table.count === 0) this.finishClose();
    return this.closePromise;
  }

  /** The connection entered CLOSING: its close timeout starts now. */
  private markClosing(id: number | undefined): void {
    const { table } = this;
    if (id === undefined || id < 0 || table.state[id] !== OPEN) return;
    // Once `ws`'s own close timer has destroyed the socket, it no longer knows the peer's address.
    table.remoteAddress.set(id, addressOf(table.socket[id]));
    const now = performance.now();
    table.state[id] = CLOSING;
    table.closingAt[id] = now;
    this.wheel.schedule(id, now + this.routes.at(table.profile[id]!).options.closeTimeout);
    this.wake();
  }

  /** A connection that looks dead: ended now when `final`, else once its pending input was read. */
  private judge(id: number, final: boolean, reason: TerminateReason): number {
    if (final) this.terminate(id, reason);
    else this.verdicts.defer(id);
    return Infinity;
  }

  /**
   * Pings a connection; returns when the ping was written. The frame goes straight to the raw
   * socket where it can: `ws.ping()` would queue it behind every message `ws` is still
   * compressing (permessage-deflate), megabytes that the peer has not even been sent yet.
   */
  private ping(id: number, ws: WebSocket): number {
    const { table } = this;
    const profile = this.routes.at(table.profile[id]!);
    profile.counters.pingsSent += 1;
    const socket = table.socket[id];
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
    table.pingAt[id] = at;
    table.flags[id]! |= PING_OUT;
    if (this.listenerCount('ping') !== 0) this.emitSafely('ping', ws, profile.name);
    return at;
  }

  /**
   * Says once, at info, that this runtime reads the sockets out of the engine's sight (Bun's `ws`
   * does): whole frames prove life there, so a frame that takes longer than `interval + timeout`
   * to arrive is not seen in progress.
   */
  private tellReadsUnseen(): void {
    if (this.readsUnseenTold) return;
    this.readsUnseenTold = true;
    if (this.logger === false) return;
    const runtime = process.versions.bun === undefined ? `node ${process.versions.node}` : `bun ${process.versions.bun}`;
    this.logger.info({ runtime }, 'ws-heartbeat: this runtime reads WebSocket sockets out of sight: whole frames prove life, so a single frame must arrive within interval + timeout');
  }

  private onPong(ws: WebSocket, id: number): void {
    const { table } = this;
    const now = performance.now();
    table.lastSeen[id] = now;
    // Unsolicited (no ping out), or CLOSING: proof of life, but no round trip to measure.
    if ((table.flags[id]! & PING_OUT) === 0 || table.state[id] !== OPEN) return;
    table.flags[id]! &= ~PING_OUT;
    // Stored as a float32 (7 significant digits): the event and rtt(ws) report the same value.
    const rtt = Math.fround(now - table.pingAt[id]!);
    table.latestRtt[id] = rtt;
    const next = this.liveness.answered(id);
    if (next !== undefined) this.wheel.schedule(id, next);
    const { counters, name } = this.routes.at(table.profile[id]!);
    counters.pongsReceived += 1;
    counters.rtt.record(rtt);
    if (this.listenerCount('pong') !== 0) this.emitSafely('pong', ws, rtt, name);
  }

  private terminate(id: number, reason: TerminateReason): void {
    const { table } = this;
    table.state[id] = TERMINATED;
    this.wheel.cancel(id);
    // Read before the socket is destroyed: afterwards it no longer knows its peer.
    if (!table.remoteAddress.has(id)) table.remoteAddress.set(id, addressOf(table.socket[id]));
    table.ws[id]!.terminate();
    this.countTermination(id, reason);
  }

  private countTermination(id: number, reason: TerminateReason): void {
    const { table } = this;
    const now = performance.now();
    const profile = this.routes.at(table.profile[id]!);
    const silentMs = now - table.lastSeen[id]!;
    profile.counters.terminations[reason] += 1;
    if (reason === 'timeout') profile.counters.detection.record(silentMs);
    const info: TerminateInfo = { remoteAddress: table.remoteAddress.get(id), ageMs: now - table.trackedAt[id]!, silentMs };
    this.emitSafely('terminate', table.ws[id]!, reason, profile.name, info);
  }

  /** Forgets a connection on its `'close'`. */
  private untrack(id: number | undefined): void {
    const { table } = this;
    if (id === undefined || id < 0 || table.state[id] === FREE) return;
    const profile = this.routes.at(table.profile[id]!);
    // `ws` runs a close timer of its own (the router gives it the route's closeTimeout). When that
    // timer, not ours, destroyed the socket, the connection still ended by its close timeout.
    if (table.state[id] === CLOSING && performance.now() - table.closingAt[id]! >= profile.options.closeTimeout - 1) {
      this.countTermination(id, this.closing ? 'shutdown' : 'close-timeout');
    }
    this.wheel.cancel(id);
    this.verdicts.cancel(id);
    this.backlog.reset(id);
    release(table.ws[id]!, table.socket[id], this.interceptors);
    table.release(id);
    profile.counters.connections -= 1;
    if (this.closing && table.count === 0) this.finishClose();
  }

  private finishClose(): void {
    this.timer.clear();
    if (this.closed) return;
    this.closed = true;
    this.load.stop();
    this.emitSafely('close');
    this.resolveClose?.();
  }

  /** Arms the one timer for the next tick that holds a connection (or the next update of the load figures). */
  private wake(): void {
    const now = performance.now();
    const at = this.wheel.nextTickTime(now);
    // While connections are tracked, the load figures are updated on time (they may warn of overload).
    this.timer.arm(this.table.count > 0 ? Math.min(at, this.load.halfEnd, this.sweep.dueAt) : at, now);
  }

  /** The wheel's visit: a due connection's check, told the start of the tick it was due in. */
  private readonly visit = (id: number, now: number, tickAt: number): number => this.liveness.check(id, now, false, tickAt);

  private onTick(now: number, lateMs: number): void {
    this.load.noteLateness(lateMs);
    this.wheel.advance(now, this.visit);
    this.sweep.take(now, this.table.ws.length, this.liveness.sweepBuffers);
    this.sampleLoad(now);
    this.wake();
  }

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
