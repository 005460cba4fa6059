/**
 * The engine's figures for known event sequences, on a fake clock: stand-in connections that
 * record the engine's calls (ping, terminate, close), with pongs delivered at chosen times. Each
 * figure of stats(), of the Prometheus export and of the log lines is checked against the exact
 * value the sequence implies.
 */
import { EventEmitter } from 'node:events';
import { Registry } from 'prom-client';
import { WebSocket } from 'ws';
import { Heartbeat, TICK_MS, collectMetrics, type HeartbeatLogger, type TerminateInfo, type TerminateReason } from '@ws-heartbeat/core';
import { useCleanup } from '../../../test/helpers/cleanup';
import { parseExposition, valueOf } from '../../../test/helpers/prometheus';

/** What the engine uses of a server-side `ws`: readyState, ping(), terminate(), close() and events. */
class FakeConnection extends EventEmitter {
  readyState: number = WebSocket.OPEN;
  bufferedAmount = 0;
  readonly pings: number[] = [];

  ping(): void {
    this.pings.push(performance.now());
  }

  /** As `ws` does: the socket is destroyed now, 'close' follows asynchronously. */
  terminate(): void {
    this.finish(1006);
  }

  close(code = 1005): void {
    this.finish(code);
  }

  private finish(code: number): void {
    if (this.readyState === WebSocket.CLOSED) return;
    this.readyState = WebSocket.CLOSED;
    void Promise.resolve().then(() => this.emit('close', code, Buffer.alloc(0)));
  }
}

const INTERVAL = 1000;
const TIMEOUT = 500;
const RTT = 20;
/**
 * A verdict waits two turns of the event loop (two setImmediate hops) for pending input; jest's
 * fake clock moves 1 ms for each. On a real clock they take microseconds.
 */
const VERDICT_HOPS_MS = 2;
/** When the silent peer is terminated: interval + timeout after it was tracked (its last frame). */
const DETECTED = INTERVAL + TIMEOUT + VERDICT_HOPS_MS;

/** Lets the microtasks of the fake connections run (their 'close'). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** Advances the fake clock by `ms`, running the engine's timers and immediates on the way. */
async function advance(ms: number): Promise<void> {
  await jest.advanceTimersByTimeAsync(ms);
  await settle();
}

describe('stats(), metrics and logs of a known sequence (fake clock)', () => {
  let hb: Heartbeat;
  const lines: Array<{ level: string; object: Record<string, unknown>; message: string }> = [];
  const logger: HeartbeatLogger = {
    debug: (object, message) => lines.push({ level: 'debug', object: object as Record<string, unknown>, message }),
    info: (object, message) => lines.push({ level: 'info', object: object as Record<string, unknown>, message }),
    warn: (object, message) => lines.push({ level: 'warn', object: object as Record<string, unknown>, message }),
    level: 'debug',
  };
  const terminations: Array<{ reason: TerminateReason; route: string; info: TerminateInfo; at: number }> = [];
  let healthy: FakeConnection;
  let silent: FakeConnection;
  let start: number;
  const cleanup = useCleanup('all');

  beforeAll(async () => {
    jest.useFakeTimers();
    cleanup.defer(() => jest.useRealTimers());
    // Start on a tick boundary, so that every due time of the sequence falls on one.
    await advance(TICK_MS - (performance.now() % TICK_MS));
    // A huge threshold: the real event-loop monitor runs beside the fake clock and must not matter here.
    hb = new Heartbeat({ logger, overloadThreshold: 1e9 });
    cleanup.defer(async () => {
      const closed = hb.close();
      await advance(0);
      await closed;
    });
    hb.route('fast', { interval: INTERVAL, timeout: TIMEOUT });
    hb.on('terminate', (_ws, reason, route, info) => terminations.push({ reason, route, info, at: performance.now() }));
    start = performance.now();
    healthy = new FakeConnection();
    silent = new FakeConnection();
    hb.track(healthy as unknown as WebSocket, { route: 'fast' });
    hb.track(silent as unknown as WebSocket, { route: 'fast' });
    // The healthy peer answers each ping RTT ms later.
    healthy.ping = function ping(this: FakeConnection) {
      FakeConnection.prototype.ping.call(this);
      setTimeout(() => this.emit('pong', Buffer.alloc(0)), RTT);
    };
    // Three intervals: the silent one is pinged once and terminated, the healthy one answers three pings.
    await advance(3 * INTERVAL + 3 * RTT + TICK_MS);
  });

  test('the silent peer is pinged once and terminated at interval + timeout; its detection latency is exactly that', () => {
    expect(silent.pings).toHaveLength(1);
    expect(terminations).toHaveLength(1);
    const [end] = terminations;
    expect(end!.reason).toBe('timeout');
    expect(end!.route).toBe('fast');
    expect(end!.at - start).toBe(DETECTED);
    expect(end!.info).toEqual({ remoteAddress: undefined, ageMs: DETECTED, silentMs: DETECTED });

    const { detection } = hb.stats().routes.fast!;
    expect(detection).toMatchObject({ count: 1, sum: DETECTED, p50: DETECTED, p90: DETECTED, p99: DETECTED, max: DETECTED });
    expect(detection.buckets.find((b) => b.le === 1000)?.count).toBe(0);
    expect(detection.buckets.find((b) => b.le === 2500)?.count).toBe(1);
    expect(detection.buckets[detection.buckets.length - 1]).toEqual({ le: '+Inf', count: 1 });
  });

  test('stats() counts every ping, pong and termination of the route, and the RTTs exactly', () => {
    const stats = hb.stats();
    const route = stats.routes.fast!;
    expect(healthy.pings).toHaveLength(3);
    expect(route.connections).toBe(1);
    expect(route.pingsSent).toBe(4);
    expect(route.pongsReceived).toBe(3);
    expect(route.terminations).toEqual({ timeout: 1, 'close-timeout': 0, backpressure: 0, shutdown: 0 });
    expect(route.rtt).toMatchObject({ count: 3, sum: 3 * RTT, p50: RTT, p90: RTT, p99: RTT, max: RTT });
    expect(route.rtt.buckets.find((b) => b.le === 10)?.count).toBe(0);
    expect(route.rtt.buckets.find((b) => b.le === 25)?.count).toBe(3);
    expect(hb.rtt(healthy as unknown as WebSocket)).toBe(RTT);

    // The engine-wide totals are the sums over the routes; the unused default route has zeros.
    expect(stats).toMatchObject({ connections: 1, pingsSent: 4, pongsReceived: 3 });
    expect(stats.terminations.timeout).toBe(1);
    expect(stats.routes.default).toMatchObject({ connections: 0, pingsSent: 0, pongsReceived: 0 });
    expect(stats.routes.default!.rtt.count).toBe(0);
    expect(stats.overloaded).toBe(false);
    expect(stats.overloadThreshold).toBe(1e9);
    expect(stats.tick.ms).toBe(TICK_MS);
  });

  test('the Prometheus export carries the same figures, per route, in seconds', async () => {
    const registry = new Registry();
    const remove = collectMetrics(hb, registry);
    const all = parseExposition(await registry.metrics());
    const fast = { route: 'fast' };
    expect(valueOf(all, 'ws_heartbeat_connections', fast)).toBe(1);
    expect(valueOf(all, 'ws_heartbeat_pings_total', fast)).toBe(4);
    expect(valueOf(all, 'ws_heartbeat_pongs_total', fast)).toBe(3);
    expect(valueOf(all, 'ws_heartbeat_terminations_total', { route: 'fast', reason: 'timeout' })).toBe(1);
    expect(valueOf(all, 'ws_heartbeat_terminations_total', { route: 'fast', reason: 'shutdown' })).toBe(0);
    expect(valueOf(all, 'ws_heartbeat_rtt_seconds_count', fast)).toBe(3);
    expect(valueOf(all, 'ws_heartbeat_rtt_seconds_sum', fast)).toBeCloseTo((3 * RTT) / 1000, 12);
    expect(valueOf(all, 'ws_heartbeat_rtt_seconds_bucket', { route: 'fast', le: '0.01' })).toBe(0);
    expect(valueOf(all, 'ws_heartbeat_rtt_seconds_bucket', { route: 'fast', le: '0.025' })).toBe(3);
    expect(valueOf(all, 'ws_heartbeat_rtt_seconds_bucket', { route: 'fast', le: '+Inf' })).toBe(3);
    expect(valueOf(all, 'ws_heartbeat_detection_seconds_count', fast)).toBe(1);
    expect(valueOf(all, 'ws_heartbeat_detection_seconds_sum', fast)).toBe(DETECTED / 1000);
    expect(valueOf(all, 'ws_heartbeat_detection_seconds_bucket', { route: 'fast', le: '1' })).toBe(0);
    expect(valueOf(all, 'ws_heartbeat_detection_seconds_bucket', { route: 'fast', le: '2.5' })).toBe(1);
    expect(valueOf(all, 'ws_heartbeat_overloaded', {})).toBe(0);
    // The engine's longest event-loop delay of the window, in seconds (the clock is fake: no time passed since the scrape).
    expect(valueOf(all, 'ws_heartbeat_event_loop_delay_seconds', {})).toBeCloseTo(hb.stats().eventLoop.maxMs / 1000, 12);
    expect(valueOf(all, 'ws_heartbeat_tick_lateness_seconds', {})).toBe(0);

    // One snapshot per scrape, shared by every metric; the next scrape takes a fresh one.
    const spy = jest.spyOn(hb, 'stats');
    await registry.metrics();
    expect(spy).toHaveBeenCalledTimes(1);
    await registry.metrics();
    expect(spy).toHaveBeenCalledTimes(2);
    spy.mockRestore();

    // The same names cannot be registered twice; removed, they can.
    expect(() => collectMetrics(hb, registry)).toThrow('ws_heartbeat_connections is already registered');
    remove();
    expect(await registry.metrics()).not.toContain('ws_heartbeat_');
    const again = collectMetrics(hb, registry, { prefix: 'app_ws_' });
    expect(await registry.metrics()).toContain('app_ws_pings_total{route="fast"} 4');
    again();
  });

  test('logs: each ping and pong at debug, the termination at info with reason, route, age and silence', () => {
    const pings = lines.filter((l) => l.message === 'ws-heartbeat: ping');
    const pongs = lines.filter((l) => l.message === 'ws-heartbeat: pong');
    expect(pings).toHaveLength(4);
    expect(pongs).toHaveLength(3);
    for (const line of [...pings, ...pongs]) expect(line.level).toBe('debug');
    expect(pings[0]!.object).toEqual({ route: 'fast' });
    expect(pongs[0]!.object).toEqual({ route: 'fast', rttMs: RTT });
    const infos = lines.filter((l) => l.level !== 'debug');
    expect(infos).toEqual([
      {
        level: 'info',
        message: 'ws-heartbeat: terminated a connection (timeout)',
        object: { reason: 'timeout', route: 'fast', remoteAddress: undefined, ageMs: DETECTED, silentMs: DETECTED },
      },
    ]);
  });
});

describe('logger levels', () => {
  const cleanup = useCleanup();

  test.each([
    ['isLevelEnabled("debug") false', 0, { isLevelEnabled: (level: string) => level !== 'debug' }],
    ['level "info"', 0, { level: 'info' }],
    ['level "debug"', 1, { level: 'debug' }],
    ['neither (a no-op logger, or a plain object)', 0, {}],
  ])('with %s, a ping writes %i debug lines', async (_name, expected, extra) => {
    jest.useFakeTimers();
    cleanup.defer(() => jest.useRealTimers());
    const debug = jest.fn();
    const hb = new Heartbeat({ interval: INTERVAL, timeout: 10 * INTERVAL, logger: { debug, info: jest.fn(), warn: jest.fn(), ...extra } });
    cleanup.defer(async () => {
      const closed = hb.close();
      await advance(0);
      await closed;
    });
    const peer = new FakeConnection();
    hb.track(peer as unknown as WebSocket);
    await advance(INTERVAL + TICK_MS);
    expect(peer.pings).toHaveLength(1);
    expect(debug).toHaveBeenCalledTimes(expected);
  });

  test('a logger without debug, info and warn methods is refused with a TypeError naming the option', () => {
    expect(() => new Heartbeat({ logger: { info() {} } as unknown as HeartbeatLogger })).toThrow(/"logger" option/);
    expect(() => new Heartbeat({ overloadThreshold: -1 })).toThrow(/"overloadThreshold" option .* got -1/);
    expect(() => new Heartbeat({ overloadThreshold: Infinity })).toThrow(TypeError);
    expect(() => new Heartbeat().route('r', { overloadThreshold: 5 } as never)).toThrow('Unknown heartbeat option "overloadThreshold"');
  });
});

describe('after close()', () => {
  test('the load figures stay as they were: the stopped monitor is not read as one long block (real clock)', async () => {
    const hb = new Heartbeat({ overloadThreshold: 50 });
    await hb.close();
    const last = hb.stats();
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(hb.stats()).toMatchObject({ overloaded: false, eventLoop: last.eventLoop, tick: last.tick });
  });
});
