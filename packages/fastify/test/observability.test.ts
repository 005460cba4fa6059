/**
 * What the Fastify plugin lets an operator see: `/stats`, `/metrics` (Prometheus text from a
 * prom-client registry) and the engine's lines in Fastify's own logger, each after real traffic
 * on 127.0.0.1 port 0 whose figures are known exactly (see test/helpers/observability.ts).
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
import wsHeartbeat, { type WsHeartbeatOptions } from '@ws-heartbeat/fastify';
import { useCleanup } from '../../../test/helpers/cleanup';
import { openClientFor, type TestClient } from '../../../test/helpers/clients';
import { INTERVAL, NEVER, TIMEOUT, ms, waitFor } from '../../../test/helpers/time';
import {
  CALM_THRESHOLD,
  captureLines,
  driveTraffic,
  expectChildExitsByItself,
  expectLogsAfterTraffic,
  expectMetricsAnswer,
  expectOverloadLogged,
  expectStatsAnswer,
  heartbeatMetricNames,
  parseExposition,
  registryWithAppMetric,
  valueOf,
  type LogLine,
  type ObservedApp,
} from '../../../test/helpers/observability';

const cleanup = useCleanup();

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
  cleanup.defer(() => app.close());
  await app.register(wsHeartbeat, options);
  app.get('/short', { websocket: true, heartbeat: { interval: INTERVAL, timeout: TIMEOUT } }, () => {});
  app.get('/idle', { websocket: true, heartbeat: { interval: NEVER, timeout: NEVER } }, () => {});
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return { app, url: (p) => `ws://127.0.0.1:${port}${p}`, client: (url, o) => openClientFor(cleanup, url, o), lines };
}

function observed(t: TestApp): ObservedApp {
  return { heartbeat: t.app.heartbeat, server: t.app.server, url: t.url, client: t.client };
}

function engineLines(lines: LogLine[]): LogLine[] {
  return lines.filter((line) => typeof line.msg === 'string' && line.msg.startsWith('ws-heartbeat:'));
}

describe('@ws-heartbeat/fastify observability', () => {
  test('statsRoute answers every figure of the traffic exactly: routes, counters, rtt and detection summaries, tick, event loop, overload', async () => {
    const t = await startApp({ statsRoute: '/stats', heartbeat: { overloadThreshold: CALM_THRESHOLD } });
    const traffic = await driveTraffic(observed(t));
    await expectStatsAnswer(observed(t), traffic, CALM_THRESHOLD);
  });

  test("metricsRoute answers the registry's Prometheus text with its content type: every line parses, each figure is stats()'s, the app's own metrics are there too", async () => {
    const registry = registryWithAppMetric();
    const t = await startApp({ statsRoute: '/stats', metricsRoute: '/metrics', metricsRegistry: registry, heartbeat: { overloadThreshold: CALM_THRESHOLD } });
    const traffic = await driveTraffic(observed(t));
    await expectMetricsAnswer(observed(t), traffic, registry);
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
    cleanup.defer(() => second.close());
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
    const t = await startApp({ statsRoute: '/stats', heartbeat: { overloadThreshold: threshold } });
    await expectOverloadLogged(observed(t), t.lines, threshold);
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
      cleanup.defer(() => app.close());
      await expect(app.register(wsHeartbeat, options)).rejects.toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(message) }));
    }
    // metricsRoute: false is the default, and valid with or without a registry.
    const app = Fastify();
    cleanup.defer(() => app.close());
    await app.register(wsHeartbeat, { metricsRoute: false });
    await app.ready();
  });

  test('a process with the logger, stats, metrics and overload monitor on exits by itself after app.close(), and its registry is empty', async () => {
    await expectChildExitsByItself(cleanup, path.join(__dirname, 'fixtures/observability-child.ts'));
  });
});
