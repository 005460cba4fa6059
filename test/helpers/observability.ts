/**
 * The observability checks both adapter suites run (packages/fastify/test/observability.test.ts,
 * packages/express/test/observability.test.ts): one traffic scenario on two routes, and what
 * `/stats`, `/metrics` and the logs must say about it, figure by figure; an overload of the event
 * loop; and the child process that must exit by itself with all of it on (the scene its fixture
 * plays, and what the suite expects of its exit). Not a jest file.
 *
 * The app under test declares two WebSocket routes: `/short` (time.ts's INTERVAL and TIMEOUT)
 * and `/idle` (a heartbeat that never acts within a test), and serves `GET /stats`
 * on `server` (and `GET /metrics` where a test says so).
 */
import type http from 'node:http';
import { Counter, Registry } from 'prom-client';
import request from 'supertest';
import type { ClientOptions } from 'ws';
import { TICK_MS, type Heartbeat, type HeartbeatEngineOptions, type HeartbeatStats, type LatencySummary, type TerminateReason } from '@ws-heartbeat/core';
import { expectExitByItself } from './child';
import type { Cleanup } from './cleanup';
import { openPeerMix, type PeerMix, type TestClient } from './clients';
import { within } from './harness';
import { parseExposition, samplesOf, valueOf, type Exposition } from './prometheus';
import { CLOSE_TIMEOUT, EPSILON, INTERVAL, SLOP, TIMEOUT, busyWait, ms, now, sleep, waitFor } from './time';

/** When a silent peer of `/short` (INTERVAL, TIMEOUT) is terminated, after its last frame. */
export const DETECTION_BOUND = INTERVAL + TIMEOUT;
/** An `overloadThreshold` far above what the traffic scenario delays the event loop by: it must not count as overload. */
export const CALM_THRESHOLD = ms(250);
/** The engine's load figures cover the latest second (core's load.ts, updated every half of it). */
export const LOAD_WINDOW_MS = 1000;

const REASONS: readonly TerminateReason[] = ['timeout', 'close-timeout', 'backpressure', 'shutdown'];
const NO_TERMINATIONS: Record<TerminateReason, number> = { timeout: 0, 'close-timeout': 0, backpressure: 0, shutdown: 0 };
const ONE_TIMEOUT: Record<TerminateReason, number> = { ...NO_TERMINATIONS, timeout: 1 };

// ---- the scenario ------------------------------------------------------------------------

export interface ObservedApp {
  heartbeat: Heartbeat;
  /** The app's HTTP server; where a check reads `GET /stats`, it answers with the engine's stats(). */
  server: http.Server;
  /** `ws://127.0.0.1:<port><path>` */
  url(path: string): string;
  /** Opens a client that the suite closes after the test. */
  client(url: string, options?: ClientOptions): Promise<TestClient>;
}

/** What the clients of {@link driveTraffic} saw. */
export interface Traffic {
  /** Pings the healthy `/short` client received (and answered) before it closed. */
  healthyPings: number;
  /** Pings the silent `/short` client received before it was terminated. */
  silentPings: number;
  /** The `/idle` client, still open. */
  idle: TestClient;
}

/**
 * One client on `/idle`; on `/short` a healthy client, closed by itself once its first ping is
 * answered, and a silent one (`autoPong: false`), terminated by the engine. Afterwards nothing
 * moves any more (`/short` is empty, `/idle` is never pinged), so every figure is exact.
 */
export async function driveTraffic(app: ObservedApp): Promise<Traffic> {
  const idle = await app.client(app.url('/idle'));
  const [healthy, silent] = await Promise.all([app.client(app.url('/short')), app.client(app.url('/short'), { autoPong: false })]);
  const shortStats = () => app.heartbeat.stats().routes['/short'];
  // Closed as soon as its first pong is counted: its next ping is an interval away.
  await waitFor(() => healthy.pings >= 1 && (shortStats()?.pongsReceived ?? 0) >= 1, INTERVAL + ms(2000), 'the healthy client to answer a ping');
  healthy.ws.close();
  await within(healthy.closed, ms(2000), 'the healthy client to close');
  const { code } = await within(silent.closed, DETECTION_BOUND + ms(2000), 'the silent client to be terminated');
  expect(code).toBe(1006);
  await waitFor(() => shortStats()?.connections === 0, ms(2000), '/short to be empty');
  return { healthyPings: healthy.pings, silentPings: silent.pings, idle };
}

// ---- /stats --------------------------------------------------------------------------------

/** A latency summary as `stats()` and `/stats` give it: `count` samples, consistent throughout. */
export function expectSummary(summary: LatencySummary, count: number): void {
  expect(Object.keys(summary).sort()).toEqual(['buckets', 'count', 'max', 'p50', 'p90', 'p99', 'sum']);
  expect(summary.count).toBe(count);
  const { buckets } = summary;
  expect(buckets.length).toBeGreaterThan(1);
  expect(buckets.at(-1)).toEqual({ le: '+Inf', count });
  for (let i = 1; i < buckets.length; i++) {
    expect(buckets[i]!.count).toBeGreaterThanOrEqual(buckets[i - 1]!.count);
    if (i < buckets.length - 1) expect(buckets[i]!.le as number).toBeGreaterThan(buckets[i - 1]!.le as number);
  }
  if (count === 0) {
    expect(summary).toMatchObject({ sum: 0, p50: null, p90: null, p99: null, max: null });
    for (const bucket of buckets) expect(bucket.count).toBe(0);
    return;
  }
  const { p50, p90, p99, max, sum } = summary as { p50: number; p90: number; p99: number; max: number; sum: number };
  expect(p50).toBeLessThanOrEqual(p90);
  expect(p90).toBeLessThanOrEqual(p99);
  expect(p99).toBeLessThanOrEqual(max);
  // The largest sample is one of them; no sample exceeds it.
  expect(sum).toBeGreaterThanOrEqual(max);
  expect(sum).toBeLessThanOrEqual(count * max);
  // A bucket whose bound is at or above the largest sample holds every sample; one below it does not.
  for (const bucket of buckets) {
    if (bucket.le === '+Inf' || bucket.le >= max) expect(bucket.count).toBe(count);
    else expect(bucket.count).toBeLessThan(count);
  }
}

/** What `/stats` (or `stats()`) says after {@link driveTraffic} (on an app with CALM_THRESHOLD), figure by figure. */
export function expectStatsAfterTraffic(stats: HeartbeatStats, traffic: Traffic, overloadThreshold: number): void {
  const { healthyPings, silentPings } = traffic;
  expect(silentPings).toBe(1);
  expect(healthyPings).toBeGreaterThanOrEqual(1);
  expect(Object.keys(stats.routes)).toEqual(expect.arrayContaining(['/short', '/idle']));

  const short = stats.routes['/short']!;
  expect(Object.keys(short).sort()).toEqual(['connections', 'detection', 'pingsSent', 'pongsReceived', 'rtt', 'terminations']);
  expect(short.connections).toBe(0);
  expect(short.pingsSent).toBe(healthyPings + silentPings);
  expect(short.pongsReceived).toBe(healthyPings);
  expect(short.terminations).toEqual(ONE_TIMEOUT);
  expectSummary(short.rtt, healthyPings);
  expect(short.rtt.max!).toBeLessThanOrEqual(SLOP); // loopback
  // One detection: every percentile is that one sample, inside the liveness bound.
  expectSummary(short.detection, 1);
  const detected = short.detection.max!;
  expect(detected).toBeGreaterThanOrEqual(DETECTION_BOUND - EPSILON);
  expect(detected).toBeLessThanOrEqual(DETECTION_BOUND + SLOP);
  expect(short.detection).toMatchObject({ p50: detected, p90: detected, p99: detected, sum: detected });

  const idle = stats.routes['/idle']!;
  expect(idle).toMatchObject({ connections: 1, pingsSent: 0, pongsReceived: 0, terminations: NO_TERMINATIONS });
  expectSummary(idle.rtt, 0);
  expectSummary(idle.detection, 0);

  expect(stats.connections).toBe(1);
  expect(stats.pingsSent).toBe(healthyPings + silentPings);
  expect(stats.pongsReceived).toBe(healthyPings);
  expect(stats.terminations).toEqual(ONE_TIMEOUT);

  expect(Object.keys(stats.tick).sort()).toEqual(['lastLateMs', 'maxLateMs', 'ms', 'recentLateMs']);
  expect(stats.tick.ms).toBe(TICK_MS);
  for (const late of [stats.tick.lastLateMs, stats.tick.recentLateMs]) {
    expect(late).toBeGreaterThanOrEqual(0);
    expect(late).toBeLessThanOrEqual(stats.tick.maxLateMs);
  }
  expect(Object.keys(stats.eventLoop).sort()).toEqual(['maxMs', 'meanMs', 'p50Ms', 'p99Ms']);
  const { meanMs, p50Ms, p99Ms, maxMs } = stats.eventLoop;
  for (const value of [meanMs, p50Ms, p99Ms]) {
    expect(value).toBeGreaterThanOrEqual(0);
    expect(value).toBeLessThanOrEqual(maxMs);
  }
  expect(p50Ms).toBeLessThanOrEqual(p99Ms);
  // The scenario's threshold is CALM_THRESHOLD: nothing in it delays the loop that long.
  expect(stats.overloadThreshold).toBe(overloadThreshold);
  expect(Math.max(maxMs, stats.tick.recentLateMs)).toBeLessThanOrEqual(overloadThreshold);
  expect(stats.overloaded).toBe(false);
}

/** `GET /stats` after {@link driveTraffic}: JSON, every figure as {@link expectStatsAfterTraffic} says, and the engine's stats() as it is. */
export async function expectStatsAnswer(app: ObservedApp, traffic: Traffic, overloadThreshold: number): Promise<void> {
  const answer = await request(app.server).get('/stats');
  expect(answer.status).toBe(200);
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  expectStatsAfterTraffic(answer.body as HeartbeatStats, traffic, overloadThreshold);
  expect(answer.body).toEqual(JSON.parse(JSON.stringify(app.heartbeat.stats())) as unknown);
}

// ---- /metrics --------------------------------------------------------------------------------

export { parseExposition, samplesOf, valueOf, type Exposition, type Sample } from './prometheus';

export const METRIC_TYPES: Record<string, string> = {
  ws_heartbeat_connections: 'gauge',
  ws_heartbeat_pings_total: 'counter',
  ws_heartbeat_pongs_total: 'counter',
  ws_heartbeat_terminations_total: 'counter',
  ws_heartbeat_rtt_seconds: 'histogram',
  ws_heartbeat_detection_seconds: 'histogram',
  ws_heartbeat_event_loop_delay_seconds: 'gauge',
  ws_heartbeat_tick_lateness_seconds: 'gauge',
  ws_heartbeat_overloaded: 'gauge',
};

/** A histogram of one route: buckets cumulative and ascending, ending in `+Inf`, which equals `_count`. */
function expectHistogram(exposition: Exposition, name: string, route: string, count: number): void {
  const buckets = samplesOf(exposition, `${name}_bucket`, { route });
  expect(buckets.length).toBeGreaterThan(1);
  expect(buckets.at(-1)!.labels.le).toBe('+Inf');
  for (let i = 1; i < buckets.length; i++) {
    expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    if (i < buckets.length - 1) expect(Number(buckets[i]!.labels.le)).toBeGreaterThan(Number(buckets[i - 1]!.labels.le));
  }
  expect(buckets.at(-1)!.value).toBe(valueOf(exposition, `${name}_count`, { route }));
  expect(valueOf(exposition, `${name}_count`, { route })).toBe(count);
}

/** What `/metrics` says after {@link driveTraffic} (on an app with CALM_THRESHOLD): every line parses, and each figure is `stats()`'s. */
export function expectMetricsAfterTraffic(text: string, stats: HeartbeatStats, traffic: Traffic): Exposition {
  const exposition = parseExposition(text);
  for (const [name, type] of Object.entries(METRIC_TYPES)) {
    expect({ name, type: exposition.types.get(name) }).toEqual({ name, type });
    expect(exposition.help.get(name)).toEqual(expect.any(String));
  }
  // Every ws_heartbeat_ sample belongs to one of these metrics.
  const families = Object.keys(METRIC_TYPES);
  for (const sample of exposition.samples.filter((s) => s.name.startsWith('ws_heartbeat_'))) {
    expect(families.some((f) => sample.name === f || /^_(bucket|sum|count)$/.test(sample.name.slice(f.length)))).toBe(true);
  }

  const routes = samplesOf(exposition, 'ws_heartbeat_connections').map((s) => s.labels.route);
  expect(routes).toEqual(expect.arrayContaining(['/short', '/idle']));
  expect(valueOf(exposition, 'ws_heartbeat_connections', { route: '/short' })).toBe(0);
  expect(valueOf(exposition, 'ws_heartbeat_connections', { route: '/idle' })).toBe(1);
  expect(valueOf(exposition, 'ws_heartbeat_pings_total', { route: '/short' })).toBe(traffic.healthyPings + traffic.silentPings);
  expect(valueOf(exposition, 'ws_heartbeat_pongs_total', { route: '/short' })).toBe(traffic.healthyPings);
  expect(valueOf(exposition, 'ws_heartbeat_pings_total', { route: '/idle' })).toBe(0);
  for (const reason of REASONS) {
    expect({ reason, value: valueOf(exposition, 'ws_heartbeat_terminations_total', { route: '/short', reason }) }).toEqual({ reason, value: reason === 'timeout' ? 1 : 0 });
    expect(valueOf(exposition, 'ws_heartbeat_terminations_total', { route: '/idle', reason })).toBe(0);
  }

  expectHistogram(exposition, 'ws_heartbeat_rtt_seconds', '/short', traffic.healthyPings);
  expectHistogram(exposition, 'ws_heartbeat_rtt_seconds', '/idle', 0);
  expectHistogram(exposition, 'ws_heartbeat_detection_seconds', '/short', 1);
  expectHistogram(exposition, 'ws_heartbeat_detection_seconds', '/idle', 0);
  // Seconds, not milliseconds: the one detection is interval + timeout.
  const detectedSeconds = valueOf(exposition, 'ws_heartbeat_detection_seconds_sum', { route: '/short' });
  expect(detectedSeconds).toBeCloseTo(stats.routes['/short']!.detection.sum / 1000, 6);
  expect(detectedSeconds).toBeGreaterThanOrEqual((DETECTION_BOUND - EPSILON) / 1000);
  expect(detectedSeconds).toBeLessThanOrEqual((DETECTION_BOUND + SLOP) / 1000);
  // Its bucket: the first bound at or above it counts it, the one below does not.
  for (const bucket of samplesOf(exposition, 'ws_heartbeat_detection_seconds_bucket', { route: '/short' })) {
    const le = bucket.labels.le === '+Inf' ? Infinity : Number(bucket.labels.le);
    expect({ le, value: bucket.value }).toEqual({ le, value: le >= detectedSeconds ? 1 : 0 });
  }

  // In seconds, and below the threshold (CALM_THRESHOLD) the scenario never reaches: not overloaded.
  for (const name of ['ws_heartbeat_event_loop_delay_seconds', 'ws_heartbeat_tick_lateness_seconds']) {
    expect(valueOf(exposition, name)).toBeGreaterThanOrEqual(0);
    expect(valueOf(exposition, name)).toBeLessThanOrEqual(stats.overloadThreshold / 1000);
  }
  expect(valueOf(exposition, 'ws_heartbeat_overloaded')).toBe(0);
  return exposition;
}

/** A registry that already holds a metric of the app's, `app_requests_total` at 3: {@link expectMetricsAnswer} expects it served with the engine's. */
export function registryWithAppMetric(): Registry {
  const registry = new Registry();
  new Counter({ name: 'app_requests_total', help: 'Requests the app served.', registers: [registry] }).inc(3);
  return registry;
}

/**
 * `GET /metrics` after {@link driveTraffic}, served from `registry` (one of {@link registryWithAppMetric}):
 * the registry's content type, every figure as {@link expectMetricsAfterTraffic} says (against
 * `GET /stats`), and the app's own counter beside the engine's metrics.
 */
export async function expectMetricsAnswer(app: ObservedApp, traffic: Traffic, registry: Registry): Promise<void> {
  const answer = await request(app.server).get('/metrics').buffer(true);
  expect(answer.status).toBe(200);
  expect(answer.headers['content-type']).toBe(registry.contentType);
  expect(answer.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  const stats = (await request(app.server).get('/stats')).body as HeartbeatStats;
  const exposition = expectMetricsAfterTraffic(answer.text, stats, traffic);
  expect(exposition.types.get('app_requests_total')).toBe('counter');
  expect(valueOf(exposition, 'app_requests_total')).toBe(3);
}

/** The names of the engine's metrics that `registry` holds. */
export function heartbeatMetricNames(registry: Registry): string[] {
  return registry
    .getMetricsAsArray()
    .map((m) => m.name)
    .filter((name) => name.startsWith('ws_heartbeat_'));
}

// ---- logs ------------------------------------------------------------------------------------

/** One JSON line a pino logger wrote, parsed, with the time it was written. */
export interface LogLine {
  level: number;
  msg: string;
  at: number;
  [key: string]: unknown;
}

/** A pino destination that keeps every line it is given. */
export function captureLines(): { stream: { write(line: string): void }; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    stream: {
      write(line: string) {
        for (const part of line.split('\n')) if (part !== '') lines.push({ ...(JSON.parse(part) as LogLine), at: now() });
      },
    },
  };
}

export const LEVEL = { debug: 20, info: 30, warn: 40 } as const;

/** The lines of the engine whose message is `msg`. */
export function linesOf(lines: LogLine[], msg: string): LogLine[] {
  return lines.filter((line) => line.msg === msg);
}

/**
 * The engine's lines after {@link driveTraffic}: a debug line per ping and per pong of `/short`
 * (`withDebug`) or none at all, and the termination at info with its reason, route, address, age
 * and silence.
 */
export function expectLogsAfterTraffic(lines: LogLine[], stats: HeartbeatStats, withDebug: boolean): void {
  const short = stats.routes['/short']!;
  const pings = linesOf(lines, 'ws-heartbeat: ping');
  const pongs = linesOf(lines, 'ws-heartbeat: pong');
  if (withDebug) {
    expect(pings).toHaveLength(short.pingsSent);
    expect(pongs).toHaveLength(short.pongsReceived);
    for (const line of pings) expect(line).toMatchObject({ level: LEVEL.debug, route: '/short' });
    for (const line of pongs) {
      expect(line).toMatchObject({ level: LEVEL.debug, route: '/short', rttMs: expect.any(Number) });
      expect(line.rttMs as number).toBeGreaterThanOrEqual(0);
      expect(line.rttMs as number).toBeLessThanOrEqual(SLOP);
    }
  } else {
    expect(pings).toEqual([]);
    expect(pongs).toEqual([]);
  }
  const terminations = lines.filter((line) => line.msg.startsWith('ws-heartbeat: terminated'));
  expect(terminations).toHaveLength(1);
  const [line] = terminations as [LogLine];
  expect(line).toMatchObject({
    level: LEVEL.info,
    msg: 'ws-heartbeat: terminated a connection (timeout)',
    reason: 'timeout',
    route: '/short',
    remoteAddress: '127.0.0.1',
    ageMs: expect.any(Number),
    silentMs: expect.any(Number),
  });
  const silentMs = line.silentMs as number;
  // Rounded to whole ms by the engine.
  expect(silentMs).toBeGreaterThanOrEqual(DETECTION_BOUND - EPSILON);
  expect(silentMs).toBeLessThanOrEqual(DETECTION_BOUND + SLOP);
  expect(line.ageMs as number).toBeGreaterThanOrEqual(silentMs);
  expect(line.ageMs as number).toBeLessThanOrEqual(silentMs + EPSILON);
}

// ---- overload ----------------------------------------------------------------------------------

/** How long {@link blockEventLoop} holds the event loop. */
export const BLOCK = ms(300);

/** Blocks the event loop for BLOCK; returns when the block ended. */
export function blockEventLoop(): number {
  busyWait(BLOCK);
  return now();
}

/**
 * With `overloadThreshold` below BLOCK: a client on `/idle` is tracked, and the event loop is
 * blocked once (see {@link blockEventLoop}); a warn line follows within a window, and `/stats`
 * (read right then) says `overloaded: true`; a window later, an info line says it ended.
 */
export async function expectOverloadLogged(app: ObservedApp, lines: LogLine[], threshold: number): Promise<void> {
  const { heartbeat } = app;
  expect(BLOCK).toBeGreaterThan(threshold);
  await app.client(app.url('/idle'));
  await waitFor(() => heartbeat.size >= 1, ms(2000), 'the connection to be tracked');
  // Start from a calm window, so the warn below is this block's.
  await waitFor(() => !heartbeat.stats().overloaded, ms(5000), 'a window without overload');
  const before = lines.length;
  const warnings = () => linesOf(lines.slice(before), 'ws-heartbeat: event loop overloaded');
  const endings = () => linesOf(lines.slice(before), 'ws-heartbeat: event loop no longer overloaded');
  expect(warnings()).toEqual([]);
  // Node's delay monitor measures from its own first expiration, 10 ms after the engine started it.
  await sleep(ms(50));

  const blockEnd = blockEventLoop();
  await waitFor(() => warnings().length > 0, LOAD_WINDOW_MS + ms(1000), 'the overload warning');
  const stats = (await request(app.server).get('/stats')).body as HeartbeatStats;
  expect(stats.overloaded).toBe(true);
  expect(stats.overloadThreshold).toBe(threshold);
  const [warn] = warnings() as [LogLine];
  expect(warn).toMatchObject({ level: LEVEL.warn, thresholdMs: threshold, eventLoopDelayMs: expect.any(Number), tickLateMs: expect.any(Number) });
  const worst = Math.max(warn.eventLoopDelayMs as number, warn.tickLateMs as number);
  expect(worst).toBeGreaterThan(threshold);
  expect(worst).toBeGreaterThanOrEqual(BLOCK / 2);
  // Judged once the block is over: within a window of its end.
  expect(warn.at).toBeGreaterThanOrEqual(blockEnd);
  expect(warn.at - blockEnd).toBeLessThanOrEqual(LOAD_WINDOW_MS + SLOP);

  await waitFor(() => endings().length > 0, LOAD_WINDOW_MS + ms(2000), 'the end of the overload');
  const [ended] = endings() as [LogLine];
  expect(ended).toMatchObject({ level: LEVEL.info, thresholdMs: threshold });
  // A window later at the earliest (SLOP: the warn line is timed when written, after the window began).
  expect(ended.at - warn.at).toBeGreaterThanOrEqual(LOAD_WINDOW_MS - SLOP);
  expect(warnings()).toHaveLength(1);
  expect(heartbeat.stats().overloaded).toBe(false);
}

// ---- a child process that exits by itself ------------------------------------------------------

/** What an observability child fixture is told, as JSON in `argv[2]`: its peers and its heartbeat. */
export interface ObservabilityChildConfig extends PeerMix {
  interval: number;
  timeout: number;
  closeTimeout: number;
}

/** What an observability child fixture reports over IPC: the scrape before it closes, then what closing left; `Closed`: the adapter's own figures. */
export type ObservabilityChildMessage<Closed = Record<never, never>> =
  | { type: 'closing'; metricsStatus: number; metricsHaveTimeout: boolean; statsTimeouts: number }
  | ({ type: 'closed'; closeMs: number; size: number; registeredMetrics: string[]; logLines: number } & Closed);

/** The child's config (from `argv[2]`) and the engine options it runs with: its heartbeat, and a low `overloadThreshold`. */
export function childConfig(): { config: ObservabilityChildConfig; heartbeat: HeartbeatEngineOptions } {
  const config = JSON.parse(process.argv[2] ?? '') as ObservabilityChildConfig;
  const { interval, timeout, closeTimeout } = config;
  return { config, heartbeat: { interval, timeout, closeTimeout, overloadThreshold: 20 } };
}

/** Sends `message` to the parent over IPC (nothing when there is no parent). */
export function tellParent<Closed>(message: ObservabilityChildMessage<Closed>): void {
  process.send?.(message);
}

export interface ObservabilityScene {
  heartbeat: Heartbeat;
  /** Where the app listens on 127.0.0.1; it serves `GET /stats` and `GET /metrics`. */
  port: number;
  /** The WebSocket route the peers open. */
  route: string;
  config: ObservabilityChildConfig;
}

/**
 * What an observability child does between listening and closing: opens the config's peers on
 * `route`, waits until the silent ones are terminated (after interval + timeout; the others stay),
 * scrapes `/metrics` and `/stats`, and tells the parent `{ type: 'closing', ... }`.
 */
export async function observabilityScene({ heartbeat, port, route, config }: ObservabilityScene): Promise<void> {
  const base = `http://127.0.0.1:${port}`;
  await openPeerMix(port, route, config, () => heartbeat.size);
  await waitFor(() => heartbeat.stats().terminations.timeout >= config.silent, ms(10_000), 'the silent peers to be terminated');
  const metrics = await fetch(`${base}/metrics`);
  const text = await metrics.text();
  const stats = (await (await fetch(`${base}/stats`)).json()) as { terminations: { timeout: number } };
  tellParent({
    type: 'closing',
    metricsStatus: metrics.status,
    metricsHaveTimeout: text.includes(`ws_heartbeat_terminations_total{route="${route}",reason="timeout"} ${config.silent}`),
    statsTimeouts: stats.terminations.timeout,
  });
}

/**
 * Runs the observability child `fixture` with 3 healthy and 2 silent peers on the INTERVAL /
 * TIMEOUT heartbeat (no ignoring peers: they never answer a ping, so they would be timed out too)
 * and expects: the scrape before closing saw both timeouts; the process exits by itself (see
 * child.ts's expectExitByItself); and its 'closed' report says no connection is tracked, its
 * registry is empty, lines were logged, and whatever else `closed` names.
 */
export async function expectChildExitsByItself(cleanup: Cleanup, fixture: string, closed: Record<string, unknown> = {}): Promise<void> {
  const config: ObservabilityChildConfig = { healthy: 3, silent: 2, ignoring: 0, interval: INTERVAL, timeout: TIMEOUT, closeTimeout: CLOSE_TIMEOUT };
  const messages = await expectExitByItself<ObservabilityChildMessage>(cleanup, fixture, config);
  expect(messages.closing).toEqual({ type: 'closing', metricsStatus: 200, metricsHaveTimeout: true, statsTimeouts: 2 });
  expect(messages.closed).toMatchObject({ type: 'closed', size: 0, registeredMetrics: [], ...closed });
  expect(messages.closed.logLines).toBeGreaterThan(0);
}
