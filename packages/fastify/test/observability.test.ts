/**
 * What the Fastify plugin lets an operator see: `/stats`, `/metrics` (Prometheus text from a
 * prom-client registry) and the engine's lines in Fastify's own logger, each after real traffic
 * on 127.0.0.1 port 0 whose figures are known exactly (see observability-checks.ts).
 *
 * Every bound is written with `ms()`, so WSH_TIME_SCALE widens them on a slow machine.
 */
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import request from 'supertest';
import type { ClientOptions } from 'ws';
import type { HeartbeatStats } from '@ws-heartbeat/core';
import wsHeartbeat, { type WsHeartbeatOptions } from '@ws-heartbeat/fastify';
import type { TestClient } from '../../../test/helpers/clients';
import { NEVER, ms, waitFor } from '../../../test/helpers/time';
import { REGISTER_TS, childMessage, forkChild, openClientFor, useTeardown } from '../../../test/helpers/harness';
import {
  BLOCK,
  SHORT_INTERVAL,
  SHORT_TIMEOUT,
  captureLines,
  driveTraffic,
  expectLogsAfterTraffic,
  expectMetricsAfterTraffic,
  expectOverloadLogged,
  expectStatsAfterTraffic,
  parseExposition,
  valueOf,
  type LogLine,
} from './observability-checks';
import type { ObservabilityChildConfig, ObservabilityChildMessage } from './fixtures/observability-child';

const FIXTURES = path.join(__dirname, 'fixtures');
const CLOSE_TIMEOUT = ms(300);

const teardown = useTeardown();

interface TestApp {
  app: FastifyInstance;
  url(path: string): string;
  client(url: string, options?: ClientOptions): Promise<TestClient>;
  /** Every line app.log wrote, parsed. */
  lines: LogLine[];
}

/**
 * A Fastify application whose logger writes JSON lines at `level` to `lines`, with the plugin
 * (`options`) and the two routes of the scenario: `/short` (a heartbeat of 200/100 ms) and
 * `/idle` (one that never acts). Closed after the test, after its clients.
 */
async function startApp(options: WsHeartbeatOptions, level = 'debug', fastifyOptions: FastifyServerOptions = {}): Promise<TestApp> {
  const { stream, lines } = captureLines();
  const app = Fastify({ ...fastifyOptions, logger: { level, stream } });
  teardown.push(() => app.close());
  await app.register(wsHeartbeat, options);
  app.get('/short', { websocket: true, heartbeat: { interval: SHORT_INTERVAL, timeout: SHORT_TIMEOUT } }, () => {});
  app.get('/idle', { websocket: true, heartbeat: { interval: NEVER, timeout: NEVER } }, () => {});
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return { app, url: (p) => `ws://127.0.0.1:${port}${p}`, client: (url, o) => openClientFor(teardown, url, o), lines };
}

function observed(t: TestApp) {
  return { heartbeat: t.app.heartbeat, url: t.url, client: t.client };
}

function engineLines(lines: LogLine[]): LogLine[] {
  return lines.filter((line) => typeof line.msg === 'string' && line.msg.startsWith('ws-heartbeat:'));
}

/** The names of the engine's metrics that `registry` holds. */
function heartbeatMetricNames(registry: Registry): string[] {
  return registry
    .getMetricsAsArray()
    .map((m) => m.name)
    .filter((name) => name.startsWith('ws_heartbeat_'));
}

describe('@ws-heartbeat/fastify observability', () => {
  test('statsRoute answers every figure of the traffic exactly: routes, counters, rtt and detection summaries, tick, event loop, overload', async () => {
    const t = await startApp({ statsRoute: '/stats', heartbeat: { overloadThreshold: 250 } });
    const traffic = await driveTraffic(observed(t));

    const answer = await request(t.app.server).get('/stats');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toMatch(/^application\/json/);
    expectStatsAfterTraffic(answer.body as HeartbeatStats, traffic, 250);
    // The JSON is the engine's stats() as it is.
    expect(answer.body).toEqual(JSON.parse(JSON.stringify(t.app.heartbeat.stats())) as unknown);
  });

  test("metricsRoute answers the registry's Prometheus text with its content type: every line parses, each figure is stats()'s, the app's own metrics are there too", async () => {
    const registry = new Registry();
    const requests = new Counter({ name: 'app_requests_total', help: 'Requests the app served.', registers: [registry] });
    requests.inc(3);
    const t = await startApp({ statsRoute: '/stats', metricsRoute: '/metrics', metricsRegistry: registry });
    const traffic = await driveTraffic(observed(t));

    const answer = await request(t.app.server).get('/metrics').buffer(true);
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe(registry.contentType);
    expect(answer.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const stats = (await request(t.app.server).get('/stats')).body as HeartbeatStats;
    const exposition = expectMetricsAfterTraffic(answer.text, stats, traffic);
    expect(exposition.types.get('app_requests_total')).toBe('counter');
    expect(valueOf(exposition, 'app_requests_total')).toBe(3);
  });

  test('metricsRegistry alone adds the metrics (no route); they leave the registry at app.close(), the app\'s stay; a second engine on the same registry is refused; 1,000 register/close cycles work', async () => {
    const registry = new Registry();
    const appMetric = new Counter({ name: 'app_jobs_total', help: 'Jobs.', registers: [registry] });
    appMetric.inc();
    const first = await startApp({ metricsRegistry: registry });
    expect((await request(first.app.server).get('/metrics')).status).toBe(404);
    await first.client(first.url('/idle'));
    await waitFor(() => first.app.heartbeat.size === 1, ms(2000), 'the connection to be tracked');
    const exposition = parseExposition(await registry.metrics());
    expect(valueOf(exposition, 'ws_heartbeat_connections', { route: '/idle' })).toBe(1);
    expect(heartbeatMetricNames(registry)).toHaveLength(9);

    // One registry, one engine: a second registration while the first is open rejects.
    const second = Fastify({ pluginTimeout: ms(1000) });
    teardown.push(() => second.close());
    await expect(second.register(wsHeartbeat, { metricsRegistry: registry })).rejects.toThrow(/ws_heartbeat_connections.*already registered/);
    expect(valueOf(parseExposition(await registry.metrics()), 'ws_heartbeat_connections', { route: '/idle' })).toBe(1);

    await first.app.close();
    expect(heartbeatMetricNames(registry)).toEqual([]);
    expect(registry.getSingleMetric('app_jobs_total')).toBe(appMetric);

    for (let i = 0; i < 1000; i++) {
      const app = Fastify();
      await app.register(wsHeartbeat, { metricsRoute: '/metrics', metricsRegistry: registry });
      await app.ready();
      await app.close();
    }
    expect(heartbeatMetricNames(registry)).toEqual([]);
    expect(registry.getMetricsAsArray()).toHaveLength(1);
  });

  test("the engine logs through app.log at debug: a line per ping and pong with the route, the termination at info with reason, route, address, age and silence", async () => {
    const t = await startApp({});
    await driveTraffic(observed(t));
    expectLogsAfterTraffic(t.lines, t.app.heartbeat.stats(), true);
  });

  test('with app.log at info there are no ping and pong lines, and the termination is still logged', async () => {
    const t = await startApp({}, 'info');
    await driveTraffic(observed(t));
    expectLogsAfterTraffic(t.lines, t.app.heartbeat.stats(), false);
  });

  test("heartbeat.logger overrides app.log: false silences the engine, a logger of the user's gets its lines instead", async () => {
    const silenced = await startApp({ heartbeat: { logger: false } });
    await driveTraffic(observed(silenced));
    expect(silenced.app.heartbeat.stats().terminations.timeout).toBe(1);
    expect(engineLines(silenced.lines)).toEqual([]);

    const own = captureLines();
    const redirected = await startApp({ heartbeat: { logger: pino({ level: 'debug' }, own.stream) } });
    await driveTraffic(observed(redirected));
    expect(engineLines(redirected.lines)).toEqual([]);
    expectLogsAfterTraffic(own.lines, redirected.app.heartbeat.stats(), true);
  });

  test('a blocked event loop is logged at warn while /stats says overloaded, and its end at info a window later', async () => {
    const threshold = ms(50);
    expect(BLOCK).toBeGreaterThan(threshold);
    const t = await startApp({ statsRoute: '/stats', heartbeat: { overloadThreshold: threshold } });
    await t.client(t.url('/idle'));
    await waitFor(() => t.app.heartbeat.size === 1, ms(2000), 'the connection to be tracked');
    await expectOverloadLogged(t.app.heartbeat, t.lines, async () => (await request(t.app.server).get('/stats')).body as HeartbeatStats, threshold);
  });

  test('invalid metrics options make register() reject with a TypeError naming the option', async () => {
    const cases: Array<[WsHeartbeatOptions, RegExp]> = [
      [{ metricsRoute: '/metrics' }, /metricsRoute.*metricsRegistry/],
      [{ metricsRoute: 42 as unknown as string, metricsRegistry: new Registry() }, /metricsRoute.*42/],
      [{ metricsRoute: 'metrics', metricsRegistry: new Registry() }, /metricsRoute.*metrics/],
      [{ metricsRoute: true as unknown as string, metricsRegistry: new Registry() }, /metricsRoute.*true/],
      [{ metricsRegistry: {} as Registry }, /metricsRegistry/],
      [{ heartbeat: { overloadThreshold: 0 } }, /overloadThreshold.*0/],
      [{ heartbeat: { logger: 'stdout' as unknown as false } }, /logger.*stdout/],
    ];
    for (const [options, message] of cases) {
      const app = Fastify({ pluginTimeout: ms(1000) });
      teardown.push(() => app.close());
      await expect(app.register(wsHeartbeat, options)).rejects.toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(message) }));
    }
    // metricsRoute: false is the default, and valid with or without a registry.
    const app = Fastify();
    teardown.push(() => app.close());
    await app.register(wsHeartbeat, { metricsRoute: false });
    await app.ready();
  });

  test('a process with the logger, stats, metrics and overload monitor on exits by itself after app.close(), and its registry is empty', async () => {
    // No ignoring peers: they never answer a ping, so they would be timed out too.
    const config: ObservabilityChildConfig = { healthy: 3, silent: 2, ignoring: 0, interval: ms(200), timeout: ms(100), closeTimeout: CLOSE_TIMEOUT };
    const child = forkChild<ObservabilityChildMessage>(teardown, path.join(FIXTURES, 'observability-child.ts'), [JSON.stringify(config)], ['--require', REGISTER_TS]);
    const closing = await childMessage(child, 'closing', ms(20_000));
    expect(closing.message).toEqual({ type: 'closing', metricsStatus: 200, metricsHaveTimeout: true, statsTimeouts: 2 });
    const limit = CLOSE_TIMEOUT + ms(1000);

    await waitFor(() => child.exit !== null, limit + ms(2000), 'the child to exit by itself');

    expect(child.exit).toMatchObject({ code: 0, signal: null });
    expect(child.exit!.at - closing.at).toBeLessThanOrEqual(limit);
    const closed = (await childMessage(child, 'closed', ms(1000))).message;
    expect(closed).toMatchObject({ type: 'closed', size: 0, registeredMetrics: [] });
    if (closed.type === 'closed') expect(closed.logLines).toBeGreaterThan(0);
  });
});
