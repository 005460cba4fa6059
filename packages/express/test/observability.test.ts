/**
 * What the Express adapter lets an operator see: `statsHandler`, `metricsHandler` (Prometheus
 * text from a prom-client registry) and the engine's lines in a pino logger of the app's, each
 * after real traffic on 127.0.0.1 port 0 whose figures are known exactly (the checks are shared
 * with the Fastify suite, in test/helpers/observability.ts).
 *
 * Every bound is written with `ms()`, so WSH_TIME_SCALE widens them on a slow machine.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express, { type Express } from 'express';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import request from 'supertest';
import type { ClientOptions } from 'ws';
import { WebSocketRoutes, type WebSocketRoutesOptions } from '@ws-heartbeat/express';
import { useCleanup } from '../../../test/helpers/cleanup';
import { openClientFor, type TestClient } from '../../../test/helpers/clients';
import { INTERVAL, NEVER, TIMEOUT, ms, waitFor } from '../../../test/helpers/time';
import { closeServer, listening } from '../../../test/helpers/harness';
import {
  LOAD_WINDOW_MS,
  CALM_THRESHOLD,
  blockEventLoop,
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
  type ObservedApp,
} from '../../../test/helpers/observability';

const cleanup = useCleanup();

interface TestApp {
  app: Express;
  server: http.Server;
  sockets: WebSocketRoutes;
  url(path: string): string;
  client(url: string, options?: ClientOptions): Promise<TestClient>;
}

/**
 * An Express application with the scenario's routes — `/short` (a heartbeat of 200/100 ms) and
 * `/idle` (one that never acts) — `GET /stats` from `statsHandler`, and `GET /metrics` from
 * `metricsHandler(registry)` when a registry is given; listening on 127.0.0.1 port 0 with the
 * routes mounted. Closed after the test (after its clients): the routes first, then the server.
 */
async function startApp(options: WebSocketRoutesOptions, registry?: Registry): Promise<TestApp> {
  const sockets = new WebSocketRoutes(options);
  sockets.route('/short', { heartbeat: { interval: INTERVAL, timeout: TIMEOUT } }, () => {});
  sockets.route('/idle', { heartbeat: { interval: NEVER, timeout: NEVER } }, () => {});
  const app = express();
  app.get('/stats', sockets.statsHandler);
  if (registry) app.get('/metrics', sockets.metricsHandler(registry));
  const server = app.listen(0, '127.0.0.1');
  cleanup.defer(() => closeServer(server));
  await listening(server);
  sockets.mount(server);
  cleanup.defer(() => sockets.close());
  const { port } = server.address() as AddressInfo;
  return { app, server, sockets, url: (p) => `ws://127.0.0.1:${port}${p}`, client: (url, o) => openClientFor(cleanup, url, o) };
}

function observed(t: TestApp): ObservedApp {
  return { heartbeat: t.sockets.heartbeat, server: t.server, url: t.url, client: t.client };
}

/** A plain node:http server answering `GET /metrics` with `handler`; closed after the test. */
async function plainServer(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics') handler(req, res);
    else res.writeHead(404).end();
  });
  cleanup.defer(() => closeServer(server));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

describe('@ws-heartbeat/express observability', () => {
  test('statsHandler answers every figure of the traffic exactly: routes, counters, rtt and detection summaries, tick, event loop, overload', async () => {
    const t = await startApp({ heartbeat: { overloadThreshold: CALM_THRESHOLD } });
    const traffic = await driveTraffic(observed(t));
    await expectStatsAnswer(observed(t), traffic, CALM_THRESHOLD);
  });

  test("metricsHandler on an Express route answers the registry's Prometheus text with its content type: every line parses, each figure is stats()'s, the app's own metrics are there too", async () => {
    const registry = registryWithAppMetric();
    const t = await startApp({ heartbeat: { overloadThreshold: CALM_THRESHOLD } }, registry);
    const traffic = await driveTraffic(observed(t));
    await expectMetricsAnswer(observed(t), traffic, registry);
  });

  test('metricsHandler serves plain node:http too; one registry is collected once (same handler), another gets its own; close() takes the metrics out of both', async () => {
    const registry = new Registry();
    const appMetric = new Counter({ name: 'app_jobs_total', help: 'Jobs.', registers: [registry] });
    const other = new Registry();
    const t = await startApp({});
    const handler = t.sockets.metricsHandler(registry);
    expect(t.sockets.metricsHandler(registry)).toBe(handler);
    expect(heartbeatMetricNames(registry)).toHaveLength(9);
    const otherHandler = t.sockets.metricsHandler(other);
    expect(otherHandler).not.toBe(handler);
    expect(heartbeatMetricNames(other)).toHaveLength(9);

    await t.client(t.url('/idle'));
    await waitFor(() => t.sockets.heartbeat.size === 1, ms(2000), 'the connection to be tracked');
    for (const [h, r] of [
      [handler, registry],
      [otherHandler, other],
    ] as const) {
      const answer = await request(await plainServer(h)).get('/metrics').buffer(true);
      expect(answer.status).toBe(200);
      expect(answer.headers['content-type']).toBe(r.contentType);
      expect(Number(answer.headers['content-length'])).toBe(Buffer.byteLength(answer.text));
      expect(valueOf(parseExposition(answer.text), 'ws_heartbeat_connections', { route: '/idle' })).toBe(1);
    }

    await t.sockets.close();
    expect(heartbeatMetricNames(registry)).toEqual([]);
    expect(heartbeatMetricNames(other)).toEqual([]);
    expect(registry.getSingleMetric('app_jobs_total')).toBe(appMetric);
    expect(() => t.sockets.metricsHandler(new Registry())).toThrow(/closed/);
    // The registry is free for another engine.
    const next = new WebSocketRoutes();
    cleanup.defer(() => next.close());
    next.metricsHandler(registry);
    expect(heartbeatMetricNames(registry)).toHaveLength(9);
    const another = new WebSocketRoutes();
    cleanup.defer(() => another.close());
    expect(() => another.metricsHandler(registry)).toThrow(/already registered/);
  });

  test('a registry whose metrics() rejects or throws gets a 500 with a short text body, the logger hears of it, and no rejection goes unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    cleanup.defer(() => process.off('unhandledRejection', onUnhandled));
    const { stream, lines } = captureLines();
    const t = await startApp({ logger: pino({ level: 'info' }, stream) });
    const rejecting = new Registry();
    rejecting.metrics = () => Promise.reject(new Error('scrape failed'));
    const throwing = new Registry();
    throwing.metrics = () => {
      throw new Error('scrape threw');
    };
    for (const registry of [rejecting, throwing]) {
      const answer = await request(await plainServer(t.sockets.metricsHandler(registry))).get('/metrics');
      expect(answer.status).toBe(500);
      expect(answer.headers['content-type']).toMatch(/^text\/plain/);
      expect(answer.text).toBe('Metrics unavailable\n');
    }
    expect(lines.filter((line) => line.msg === 'ws-heartbeat: metrics failed').map((line) => (line.err as { message: string }).message)).toEqual([
      'scrape failed',
      'scrape threw',
    ]);
    expect(() => t.sockets.metricsHandler({} as Registry)).toThrow(TypeError);
    await new Promise((resolve) => setImmediate(resolve));
    expect(unhandled).toEqual([]);
  });

  test('with a pino logger at debug: a line per ping and pong with the route, the termination at info with reason, route, address, age and silence', async () => {
    const { stream, lines } = captureLines();
    const t = await startApp({ logger: pino({ level: 'debug' }, stream) });
    await driveTraffic(observed(t));
    expectLogsAfterTraffic(lines, t.sockets.heartbeat.stats(), true);
  });

  test('with the logger at info there are no ping and pong lines, and the termination is still logged; heartbeat.logger works as well', async () => {
    const info = captureLines();
    const t = await startApp({ logger: pino({ level: 'info' }, info.stream) });
    await driveTraffic(observed(t));
    expectLogsAfterTraffic(info.lines, t.sockets.heartbeat.stats(), false);

    const nested = captureLines();
    const n = await startApp({ heartbeat: { logger: pino({ level: 'debug' }, nested.stream) } });
    await driveTraffic(observed(n));
    expectLogsAfterTraffic(nested.lines, n.sockets.heartbeat.stats(), true);
  });

  test('without a logger nothing is written anywhere: no console call, no stdout, stderr or fd write, no process warning, through pings, a termination and an overload', async () => {
    const consoleCalls: string[] = [];
    for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const) {
      const spy = jest.spyOn(console, method).mockImplementation((...args: unknown[]) => void consoleCalls.push(`${method}: ${args.map(String).join(' ')}`));
      cleanup.defer(() => spy.mockRestore());
    }
    const written: string[] = [];
    for (const stream of [process.stdout, process.stderr]) {
      const original = stream.write.bind(stream);
      const spy = jest.spyOn(stream, 'write').mockImplementation(((chunk: unknown, ...rest: unknown[]) => {
        if (String(chunk).includes('ws-heartbeat')) written.push(String(chunk));
        return (original as (...args: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof stream.write);
      cleanup.defer(() => spy.mockRestore());
    }
    // pino's own destination writes to the file descriptor, past process.stdout.
    for (const method of ['write', 'writeSync'] as const) {
      const original = fs[method] as (...args: unknown[]) => unknown;
      const spy = jest.spyOn(fs, method).mockImplementation(((...args: unknown[]) => {
        if (String(args[1]).includes('ws-heartbeat')) written.push(String(args[1]));
        return original(...args);
      }) as never);
      cleanup.defer(() => spy.mockRestore());
    }
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    cleanup.defer(() => process.off('warning', onWarning));

    const t = await startApp({ heartbeat: { overloadThreshold: ms(50) } });
    const overloads: boolean[] = [];
    t.sockets.heartbeat.on('overload', (overloaded) => overloads.push(overloaded));
    await driveTraffic(observed(t));
    blockEventLoop();
    await waitFor(() => overloads.length >= 2, 2 * LOAD_WINDOW_MS + ms(2000), 'an overload and its end');

    const stats = t.sockets.heartbeat.stats();
    // It all happened; none of it was written.
    expect(stats.terminations.timeout).toBe(1);
    expect(stats.pongsReceived).toBeGreaterThanOrEqual(1);
    expect(overloads.slice(0, 2)).toEqual([true, false]);
    expect(consoleCalls).toEqual([]);
    expect(written).toEqual([]);
    expect(warnings).toEqual([]);
  });

  test('a blocked event loop is logged at warn while /stats says overloaded, and its end at info a window later', async () => {
    const threshold = ms(50);
    const { stream, lines } = captureLines();
    const t = await startApp({ heartbeat: { overloadThreshold: threshold }, logger: pino({ level: 'info' }, stream) });
    await expectOverloadLogged(observed(t), lines, threshold);
  });

  test('invalid logger options are a TypeError naming the option', () => {
    const logger = pino({ level: 'silent' });
    expect(() => new WebSocketRoutes({ logger, heartbeat: { logger } })).toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/logger.*heartbeat\.logger/) }));
    expect(() => new WebSocketRoutes({ logger: 'stdout' as unknown as false })).toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/logger.*stdout/) }));
    expect(() => new WebSocketRoutes({ heartbeat: { overloadThreshold: -1 } })).toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/overloadThreshold.*-1/) }));
    // false is the default, and explicit false is accepted.
    void new WebSocketRoutes({ logger: false }).close();
  });

  test('a process with the logger, stats, metrics and overload monitor on exits by itself after sockets.close() and server.close(), and its registry is empty', async () => {
    await expectChildExitsByItself(cleanup, path.join(__dirname, 'fixtures/observability-child.ts'), { upgradeListeners: 0 });
  });
});
