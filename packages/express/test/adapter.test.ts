/**
 * @ws-heartbeat/express on real sockets: real Express 5 applications listening on 127.0.0.1
 * port 0 (through `app.listen()` or `http.createServer(app)`), real `ws` clients, raw `http`
 * upgrade requests for the refusal paths, supertest for plain HTTP, and child processes for
 * peers that must not share the test's event loop (a SIGSTOPped client process) and for an
 * application that must exit by itself.
 *
 * Path matching is checked against Express itself: each WebSocket route has an HTTP twin on the
 * same path in the same app, and a path must reach the same route with the same params and
 * query over both (or be refused by both).
 *
 * Every bound is written with `ms()`, so WSH_TIME_SCALE widens them on a slow machine.
 */
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import express, { type Express } from 'express';
import request from 'supertest';
import { WebSocket, WebSocketServer, type ClientOptions } from 'ws';
import { Heartbeat, type TerminateReason } from '@ws-heartbeat/core';
import { WebSocketRoutes, type WebSocketRoutesOptions } from '@ws-heartbeat/express';
import { openClientFor, openClientsFor, type TestClient } from '../../../test/helpers/clients';
import { childMessage, expectExitByItself, forkChild, HELD_CLIENTS } from '../../../test/helpers/child';
import { useCleanup } from '../../../test/helpers/cleanup';
import { CLOSE_TIMEOUT, EPSILON, NEVER, SLOP, TIMEOUT, ms, now, sleep, waitFor } from '../../../test/helpers/time';
import { closeServer, expectRoutesKeepTheirOwnHeartbeat, firstMessage, listening, within } from '../../../test/helpers/harness';
import { requestUpgrade, type UpgradeResult } from '../../../test/helpers/upgrade';
import type { AppChildConfig, AppChildMessage } from './fixtures/app-child';

const FIXTURES = path.join(__dirname, 'fixtures');

const cleanup = useCleanup();

// ---- applications and clients ----------------------------------------------------------

type RouterError = { error: unknown; route: string; phase: string };

interface TestApp {
  app: Express;
  server: http.Server;
  sockets: WebSocketRoutes;
  port: number;
  /** `ws://127.0.0.1:<port><path>` */
  url(path: string): string;
  /** What the adapter's `onError` received (unless the test passed its own `onError`). */
  errors: RouterError[];
  /** The server's 'upgrade' listener count right before `sockets.mount(server)`. */
  baseline: number;
  /** The function `mount()` returned: it removes this server's listener. */
  unmount: () => void;
}

interface StartOptions {
  /** How the server is made from the app. @default 'listen' */
  via?: 'listen' | 'createServer';
  /** Runs on the listening server before the adapter is mounted (e.g. a foreign 'upgrade' listener). */
  beforeMount?: (server: http.Server) => void;
}

/**
 * An Express application, WebSocket routes declared by `declare` (which may add HTTP routes to
 * the app too), listening on 127.0.0.1 port 0 with the routes mounted. Closed after the test
 * (after its clients): the routes first, then the server.
 */
async function startApp(
  options: WebSocketRoutesOptions,
  declare: (sockets: WebSocketRoutes, app: Express) => void,
  { via = 'listen', beforeMount }: StartOptions = {},
): Promise<TestApp> {
  const errors: RouterError[] = [];
  const sockets = new WebSocketRoutes({ onError: (error, info) => errors.push({ error, ...info }), ...options });
  const app = express();
  declare(sockets, app);
  let server: http.Server;
  if (via === 'listen') {
    server = app.listen(0, '127.0.0.1');
  } else {
    server = http.createServer(app);
    server.listen(0, '127.0.0.1');
  }
  cleanup.defer(() => closeServer(server));
  await listening(server);
  beforeMount?.(server);
  const baseline = server.listenerCount('upgrade');
  const unmount = sockets.mount(server);
  cleanup.defer(() => sockets.close());
  const { port } = server.address() as AddressInfo;
  return { app, server, sockets, port, url: (p) => `ws://127.0.0.1:${port}${p}`, errors, baseline, unmount };
}

/** An open `ws` client, terminated after the test. */
function client(url: string, options?: ClientOptions): Promise<TestClient> {
  return openClientFor(cleanup, url, options);
}



/** A refusal as the raw bytes show it: that status, never a 101, and the server closed its socket. */
function expectRefused(answer: UpgradeResult, status: number): void {
  expect({ status: answer.status, upgraded: answer.upgraded, closedByServer: answer.closedByServer }).toEqual({
    status,
    upgraded: false,
    closedByServer: true,
  });
  expect(answer.raw).not.toContain('HTTP/1.1 101');
  expect(answer.raw.startsWith(`HTTP/1.1 ${status} `)).toBe(true);
  expect(answer.headers.connection).toBe('close');
}

/** What a route answered: the JSON its handler sends first, or the status that refused the upgrade. */
type Answer = { status: 200; body: unknown } | { status: number };

/** Opens a WebSocket to `url` and reads its first message (101) or its refusal status. */
function wsAnswer(url: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('message', (data) => {
      resolve({ status: 200, body: JSON.parse(String(data)) as unknown });
      ws.terminate();
    });
    ws.once('unexpected-response', (req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      req.destroy();
    });
    ws.on('error', (error) => {
      if (ws.readyState !== WebSocket.CLOSED) reject(error);
    });
  });
}

/** The same path over plain HTTP, through Express's router. */
async function httpAnswer(server: http.Server, target: string): Promise<Answer> {
  const res = await request(server).get(target);
  return res.status === 200 ? { status: 200, body: res.body as unknown } : { status: res.status };
}

/** Declares `paths` in order as WebSocket routes and as HTTP twins; both answer route, params and query as JSON. */
function declareTwins(sockets: WebSocketRoutes, app: Express, paths: string[]): void {
  for (const route of paths) {
    sockets.route(route, (ws, req) => {
      ws.send(JSON.stringify({ route, params: req.params, query: req.query }));
    });
    app.get(route, (req, res) => {
      res.json({ route, params: req.params, query: req.query });
    });
  }
}

// ---- child processes -------------------------------------------------------------------


// ---- tests -------------------------------------------------------------------------------

describe('@ws-heartbeat/express', () => {
  test('each route pings at its own interval and terminates a silent peer inside its own bound', async () => {
    const fastInterval = ms(100);
    const slowInterval = ms(400);
    // Defaults that would show if a route's own settings were ignored.
    const { sockets, url } = await startApp({ heartbeat: { interval: NEVER, timeout: NEVER } }, (s) => {
      s.route('/fast', { heartbeat: { interval: fastInterval, timeout: TIMEOUT } }, () => {});
      s.route('/slow', { heartbeat: { interval: slowInterval, timeout: TIMEOUT } }, () => {});
    });
    await expectRoutesKeepTheirOwnHeartbeat({ heartbeat: sockets.heartbeat, url, client, fastInterval, slowInterval, timeout: TIMEOUT, epsilon: EPSILON, slop: SLOP });

    const { routes } = sockets.heartbeat.stats();
    expect(routes['/fast']).toMatchObject({ connections: 1, terminations: { timeout: 1 } });
    expect(routes['/slow']).toMatchObject({ connections: 1, terminations: { timeout: 1 } });
  });

  test('params and query reach the handler as Express 5 gives them; Express 5 path syntax; trailing slash and case as Express routes them; first declared route wins', async () => {
    const routes = ['/rooms/:id', '/files/*rest', '/docs{/:lang}', '/users/:id', '/users/me'];
    const loose = await startApp({}, (s, app) => declareTwins(s, app, routes));

    // What the handler receives, spelled out.
    const expected: Record<string, Answer> = {
      '/rooms/a%20b?x=1&x=2': { status: 200, body: { route: '/rooms/:id', params: { id: 'a b' }, query: { x: ['1', '2'] } } },
      '/rooms/a%2Fb?nick=ann': { status: 200, body: { route: '/rooms/:id', params: { id: 'a/b' }, query: { nick: 'ann' } } },
      '/files/a%2Fb/c.txt': { status: 200, body: { route: '/files/*rest', params: { rest: ['a/b', 'c.txt'] }, query: {} } },
      '/docs': { status: 200, body: { route: '/docs{/:lang}', params: {}, query: {} } },
      '/docs/fr': { status: 200, body: { route: '/docs{/:lang}', params: { lang: 'fr' }, query: {} } },
      // Trailing slash and case are ignored without `strict` and `caseSensitive`.
      '/rooms/a/': { status: 200, body: { route: '/rooms/:id', params: { id: 'a' }, query: {} } },
      '/ROOMS/a': { status: 200, body: { route: '/rooms/:id', params: { id: 'a' }, query: {} } },
      // Declared first, so '/users/:id' answers '/users/me'.
      '/users/me': { status: 200, body: { route: '/users/:id', params: { id: 'me' }, query: {} } },
      '/files': { status: 404 },
      '/rooms/a//': { status: 404 },
      '/rooms/%E0%A4%A': { status: 400 },
    };
    for (const [target, answer] of Object.entries(expected)) {
      const overWs = await wsAnswer(loose.url(target));
      expect({ target, ...overWs }).toEqual({ target, ...answer });
      // Express answers the same path the same way.
      expect({ target, ...(await httpAnswer(loose.server, target)) }).toEqual({ target, ...overWs });
    }

    // strict and caseSensitive, as Express's 'strict routing' and 'case sensitive routing'; declared the other way round.
    const reversed = [...routes].reverse();
    const strict = await startApp({ strict: true, caseSensitive: true }, (s, app) => {
      app.set('strict routing', true);
      app.set('case sensitive routing', true);
      declareTwins(s, app, reversed);
    });
    const strictExpected: Record<string, Answer> = {
      '/rooms/a': { status: 200, body: { route: '/rooms/:id', params: { id: 'a' }, query: {} } },
      '/rooms/a/': { status: 404 },
      '/ROOMS/a': { status: 404 },
      '/docs/': { status: 404 },
      '/users/me': { status: 200, body: { route: '/users/me', params: {}, query: {} } },
    };
    for (const [target, answer] of Object.entries(strictExpected)) {
      const overWs = await wsAnswer(strict.url(target));
      expect({ target, ...overWs }).toEqual({ target, ...answer });
      expect({ target, ...(await httpAnswer(strict.server, target)) }).toEqual({ target, ...overWs });
    }
    expect(loose.errors).toEqual([]);
    expect(strict.errors).toEqual([]);
  });

  test('401 from a sync or async authenticate, its own status, 403 for a refused origin, 404 for an unknown path: never a 101, socket closed by the server', async () => {
    const handled: string[] = [];
    const authenticated: Array<{ params: unknown; query: unknown }> = [];
    const { server, sockets } = await startApp({}, (s) => {
      const handler = (_ws: WebSocket, req: IncomingMessage) => {
        handled.push(req.url ?? '');
      };
      s.route('/sync', { authenticate: () => false }, handler);
      s.route(
        '/async',
        {
          authenticate: async (req) => {
            await sleep(ms(20));
            return req.headers['x-token'] === 'good';
          },
        },
        handler,
      );
      s.route(
        '/custom/:who',
        {
          authenticate: (req) => {
            authenticated.push({ params: { ...req.params }, query: { ...req.query } });
            return req.params.who === 'ann' ? true : 451;
          },
        },
        handler,
      );
      s.route('/origin', { origins: ['https://good.example'] }, handler);
    });

    expectRefused(await requestUpgrade(server, '/sync'), 401);
    expectRefused(await requestUpgrade(server, '/async'), 401);
    expectRefused(await requestUpgrade(server, '/async', { headers: { 'X-Token': 'bad' } }), 401);
    expectRefused(await requestUpgrade(server, '/custom/bob?via=test'), 451);
    expectRefused(await requestUpgrade(server, '/origin', { origin: 'https://evil.example' }), 403);
    expectRefused(await requestUpgrade(server, '/nowhere'), 404);
    expect(handled).toEqual([]);
    expect(sockets.heartbeat.stats().connections).toBe(0);
    // authenticate saw the route's params and query.
    expect(authenticated).toEqual([{ params: { who: 'bob' }, query: { via: 'test' } }]);

    // The same routes do upgrade when their checks pass.
    const passing = [
      await requestUpgrade(server, '/async', { headers: { 'X-Token': 'good' } }),
      await requestUpgrade(server, '/custom/ann'),
      await requestUpgrade(server, '/origin', { origin: 'https://good.example' }),
    ];
    for (const answer of passing) {
      answer.socket?.destroy();
      expect(answer.status).toBe(101);
    }
    expect(handled).toEqual(['/async', '/custom/ann', '/origin']);
  });

  test('a throwing or too slow authenticate, connection limits and a malformed handshake are refused before any 101', async () => {
    const { server, url, errors, sockets } = await startApp({ maxConnectionsPerClient: 3, authTimeout: ms(150) }, (s) => {
      s.route(
        '/throws',
        {
          authenticate: () => {
            throw new Error('auth-broke');
          },
        },
        () => {},
      );
      s.route('/slow', { authenticate: () => new Promise<boolean>(() => {}) }, () => {});
      s.route('/one', { maxConnections: 1 }, () => {});
      s.route('/many', () => {});
    });

    expectRefused(await requestUpgrade(server, '/throws'), 500);
    expect(errors.map(({ route, phase, error }) => ({ route, phase, message: (error as Error).message }))).toEqual([
      { route: '/throws', phase: 'authenticate', message: 'auth-broke' },
    ]);
    const started = now();
    expectRefused(await requestUpgrade(server, '/slow'), 503);
    expect(now() - started).toBeGreaterThanOrEqual(ms(150) - EPSILON);
    expectRefused(await requestUpgrade(server, '/many', { key: null }), 400);

    await client(url('/one'));
    expectRefused(await requestUpgrade(server, '/one'), 503);
    await client(url('/many'));
    await client(url('/many'));
    // Three connections from 127.0.0.1 now: the fourth is one too many for this client.
    expectRefused(await requestUpgrade(server, '/many'), 429);
    expect(sockets.heartbeat.size).toBe(3);
  });

  test('statsHandler answers the engine stats as JSON through an Express route', async () => {
    const { server, url } = await startApp({}, (s, app) => {
      s.route('/live', () => {});
      s.route('/rooms/:id', () => {});
      app.get('/ws-stats', s.statsHandler);
    });
    await client(url('/live'));
    await client(url('/rooms/1'));
    await client(url('/rooms/2'));

    const answer = await request(server).get('/ws-stats');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toMatch(/^application\/json/);
    expect(answer.body.connections).toBe(3);
    expect(Object.keys(answer.body.routes)).toEqual(expect.arrayContaining(['/live', '/rooms/:id']));
    expect(answer.body.routes['/live'].connections).toBe(1);
    expect(answer.body.routes['/rooms/:id'].connections).toBe(2);
    expect(answer.body.terminations).toEqual({ timeout: 0, 'close-timeout': 0, backpressure: 0, shutdown: 0 });
  });

  test('close() with 30 connections, 5 held by a stopped process: 1001 to the others, stragglers destroyed, listener removed, server.close() completes within closeTimeout + 1 s', async () => {
    // A foreign 'upgrade' listener (for another path) that close() must leave in place.
    const foreign = (): void => {};
    const { server, sockets, url, baseline } = await startApp(
      { heartbeat: { interval: NEVER, timeout: NEVER, closeTimeout: CLOSE_TIMEOUT } },
      (s) => {
        s.route('/ws', () => {});
      },
      { beforeMount: (srv) => srv.on('upgrade', foreign) },
    );
    expect(baseline).toBe(1);
    expect(server.listenerCount('upgrade')).toBe(2);
    const terminations: TerminateReason[] = [];
    sockets.heartbeat.on('terminate', (_ws, reason) => terminations.push(reason));

    const held = forkChild<{ type: 'ready' } | { type: 'error'; message: string }>(cleanup, HELD_CLIENTS, { args: [url('/ws'), '5'] });
    const ready = await childMessage(held, 'ready', ms(10_000)).catch((error: unknown) => {
      throw new Error(`${String(error)}; child said ${JSON.stringify(held.messages)}`);
    });
    expect(ready.message.type).toBe('ready');
    held.process.kill('SIGSTOP');
    const clients = await openClientsFor(cleanup, url('/ws'), 25);
    await waitFor(() => sockets.heartbeat.size === 30, ms(5000), '30 tracked connections');

    const started = now();
    const closing = sockets.close();
    // While the stopped peers hold the shutdown open, a new upgrade is answered 503, never upgraded.
    expectRefused(await requestUpgrade(server, '/ws'), 503);
    await within(closing, CLOSE_TIMEOUT + ms(3000), 'sockets.close()');
    const serverClosed = new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    await within(serverClosed, CLOSE_TIMEOUT + ms(3000), 'server.close()');
    const closeMs = now() - started;

    // The stopped peers never answer our close frame: they are destroyed after closeTimeout.
    expect(closeMs).toBeGreaterThanOrEqual(CLOSE_TIMEOUT - EPSILON);
    expect(closeMs).toBeLessThanOrEqual(CLOSE_TIMEOUT + ms(1000));
    const closes = await within(Promise.all(clients.map((c) => c.closed)), ms(2000), 'the clients to close');
    expect(closes.map((c) => c.code)).toEqual(Array(25).fill(1001));
    expect(sockets.heartbeat.stats().terminations.shutdown).toBe(5);
    expect(terminations).toEqual(Array(5).fill('shutdown'));
    expect(sockets.heartbeat.size).toBe(0);
    expect(server.listenerCount('upgrade')).toBe(baseline);
    expect(server.listeners('upgrade')).toEqual([foreign]);
    // Safe to call again.
    await within(sockets.close(), ms(1000), 'a second sockets.close()');
  });

  test('close({ retryWithin }) closes every connection with 1012 and the retry hint the client package reads; an invalid one throws', async () => {
    const { sockets, url } = await startApp({ heartbeat: { interval: NEVER, timeout: NEVER } }, (routes) => {
      routes.route('/ws', () => {});
    });
    const peers = await Promise.all([client(url('/ws')), client(url('/ws'))]);
    await waitFor(() => sockets.heartbeat.size === 2, ms(2000), 'the connections to be tracked');
    expect(() => new WebSocketRoutes().close({ retryWithin: -5 })).toThrow(/"retryWithin" option .* got -5/);
    await sockets.close({ retryWithin: 750 });
    for (const peer of peers) {
      expect(await peer.closed).toMatchObject({ code: 1012, reason: 'Server restarting, retry within 750 ms' });
    }
  });

  test('a process running an Express app exits by itself within closeTimeout + 1 s of sockets.close()', async () => {
    const config: AppChildConfig = { healthy: 5, silent: 2, ignoring: 2, closeTimeout: CLOSE_TIMEOUT };
    const { closed } = await expectExitByItself<AppChildMessage>(cleanup, path.join(FIXTURES, 'app-child.ts'), config);
    expect(closed).toMatchObject({ type: 'closed', size: 0, upgradeListeners: 0, terminations: { shutdown: 2 } });
    // The ignoring peers hold the shutdown for closeTimeout; server.close() completes right after.
    expect(closed.closeMs).toBeGreaterThanOrEqual(CLOSE_TIMEOUT - EPSILON);
    expect(closed.serverCloseMs).toBeLessThanOrEqual(CLOSE_TIMEOUT + ms(1000));
  });

  test.each(['first', 'second'] as const)(
    "another ws server's 'upgrade' listener (added %s) keeps its own paths and sockets; neither touches the other's",
    async (order) => {
      const other = new WebSocketServer({ noServer: true });
      other.on('connection', (ws) => ws.on('message', (data) => ws.send(`other: ${String(data)}`)));
      const otherSaw: string[] = [];
      // The other listener owns the paths under /other: it upgrades /other and refuses the rest
      // with its own marker; everything else it leaves alone.
      const otherOnUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
        const { pathname } = new URL(req.url ?? '/', 'http://localhost');
        if (!pathname.startsWith('/other')) return;
        otherSaw.push(pathname);
        if (pathname === '/other') {
          other.handleUpgrade(req, socket, head, (ws) => other.emit('connection', ws, req));
          return;
        }
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 12\r\n\r\nother-404-xx', () => socket.destroy());
      };
      const interval = ms(50);
      const { server, sockets, url } = await startApp(
        { heartbeat: { interval, timeout: NEVER } },
        (s) => {
          s.route('/ours', (ws) => {
            ws.on('message', (data) => ws.send(`ours: ${String(data)}`));
          });
        },
        { beforeMount: order === 'first' ? (srv) => srv.on('upgrade', otherOnUpgrade) : undefined },
      );
      if (order === 'second') server.on('upgrade', otherOnUpgrade);
      cleanup.defer(() => {
        server.removeListener('upgrade', otherOnUpgrade);
        for (const ws of other.clients) ws.terminate();
        return new Promise<void>((resolve) => other.close(() => resolve()));
      });

      const theirs = await client(url('/other'));
      const ours = await client(url('/ours'));
      theirs.ws.send('a');
      ours.ws.send('b');
      expect(await firstMessage(theirs)).toBe('other: a');
      expect(await firstMessage(ours)).toBe('ours: b');

      // A path neither side knows, but under /other: only the other listener answers it.
      const unknown = await requestUpgrade(server, '/other-missing');
      expect(unknown.status).toBe(404);
      expect(unknown.body).toBe('other-404-xx');
      expect(unknown.raw.match(/HTTP\/1\.1 /g)).toHaveLength(1);
      expect(otherSaw).toEqual(['/other', '/other-missing']);

      // Our engine pings only our connection and tracks nothing of theirs.
      await sleep(interval * 4);
      expect(ours.pings).toBeGreaterThanOrEqual(1);
      expect(theirs.pings).toBe(0);
      const stats = sockets.heartbeat.stats();
      expect(stats.connections).toBe(1);
      expect(Object.keys(stats.routes)).not.toContain('/other');
      expect(Object.keys(stats.routes)).not.toContain('/other-missing');

      // Closing our routes closes our connection only; theirs carries on, and their listener stays.
      await within(sockets.close(), ms(2000), 'sockets.close()');
      expect((await ours.closed).code).toBe(1001);
      expect(theirs.ws.readyState).toBe(WebSocket.OPEN);
      theirs.ws.send('c');
      await waitFor(() => theirs.messages.length === 2, ms(2000), 'a second answer from the other server');
      expect(theirs.messages[1]!.data.toString()).toBe('other: c');
      expect(server.listeners('upgrade')).toEqual([otherOnUpgrade]);
    },
  );

  test("mounts onto http.createServer(app) as onto app.listen(), and one instance serves both; mount() returns the removal of that server's listener, close() removes both", async () => {
    const sockets = new WebSocketRoutes();
    sockets.route('/echo/:name', (ws, req) => {
      ws.on('message', (data) => ws.send(`${String(req.params.name)}: ${String(data)}`));
    });
    const app = express();
    app.get('/plain', (_req, res) => {
      res.send('plain answer');
    });

    const listened = app.listen(0, '127.0.0.1');
    const created = http.createServer(app);
    created.listen(0, '127.0.0.1');
    cleanup.defer(() => closeServer(listened));
    cleanup.defer(() => closeServer(created));
    await Promise.all([listened, created].map((srv) => new Promise((resolve) => srv.once('listening', resolve))));
    const unmount = sockets.mount(listened);
    const unmountCreated = sockets.mount(created);
    expect(unmountCreated).not.toBe(unmount);
    cleanup.defer(() => sockets.close());
    expect(listened.listenerCount('upgrade')).toBe(1);
    expect(created.listenerCount('upgrade')).toBe(1);
    // Mounting the same server twice adds no second listener, and returns the same function.
    expect(sockets.mount(created)).toBe(unmountCreated);
    expect(created.listenerCount('upgrade')).toBe(1);

    const clients: TestClient[] = [];
    for (const [name, srv] of [
      ['listened', listened],
      ['created', created],
    ] as const) {
      const { port } = srv.address() as AddressInfo;
      const c = await client(`ws://127.0.0.1:${port}/echo/${name}`);
      c.ws.send('hi');
      expect(await firstMessage(c)).toBe(`${name}: hi`);
      clients.push(c);
      expect((await request(srv).get('/plain')).text).toBe('plain answer');
      expectRefused(await requestUpgrade(srv, '/nowhere'), 404);
    }
    expect(sockets.heartbeat.size).toBe(2);

    // Unmounting one server removes its listener only: the connections stay, the other server serves on.
    unmount();
    expect(listened.listenerCount('upgrade')).toBe(0);
    expect(created.listenerCount('upgrade')).toBe(1);
    expect(sockets.heartbeat.size).toBe(2);
    expect(clients.map((c) => c.closeInfo)).toEqual([null, null]);
    const { port: createdPort } = created.address() as AddressInfo;
    clients.push(await client(`ws://127.0.0.1:${createdPort}/echo/again`));

    await within(sockets.close(), ms(2000), 'close()');
    expect(clients.map((c) => c.closeInfo?.code)).toEqual([1001, 1001, 1001]);
    expect(listened.listenerCount('upgrade')).toBe(0);
    expect(created.listenerCount('upgrade')).toBe(0);
    await within(
      Promise.all([listened, created].map((srv) => new Promise<void>((resolve) => srv.close(() => resolve())))),
      ms(2000),
      'both servers to close',
    );
  });

  test('a handler that throws or rejects closes only its connection with 1011 and is reported; the app carries on', async () => {
    const { url, errors } = await startApp({}, (s) => {
      s.route('/boom', () => {
        throw new Error('boom-sync');
      });
      s.route('/reject', async () => {
        await sleep(1);
        throw new Error('boom-async');
      });
      s.route('/ok', (ws) => ws.send('ok'));
    });

    const ok = await client(url('/ok'));
    expect(await firstMessage(ok)).toBe('ok');
    const thrown = await client(url('/boom'));
    const rejected = await client(url('/reject'));
    expect((await within(thrown.closed, ms(2000), 'the /boom client to close')).code).toBe(1011);
    expect((await within(rejected.closed, ms(2000), 'the /reject client to close')).code).toBe(1011);
    expect(errors.map(({ route, phase, error }) => ({ route, phase, message: (error as Error).message }))).toEqual([
      { route: '/boom', phase: 'connection', message: 'boom-sync' },
      { route: '/reject', phase: 'connection', message: 'boom-async' },
    ]);

    // The process and the other connection carry on; new clients still connect.
    expect(ok.ws.readyState).toBe(WebSocket.OPEN);
    const again = await client(url('/ok'));
    expect(await firstMessage(again)).toBe('ok');
    expect((await within((await client(url('/boom'))).closed, ms(2000), 'a second /boom client to close')).code).toBe(1011);
  });

  test('without onError, a throwing handler is reported as a process warning, not a crash', async () => {
    // The sandbox's `process` is the one the adapter (loaded in the same sandbox) reports to.
    const warnings: string[] = [];
    const emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation((warning: string | Error) => {
      warnings.push(String(warning));
    });
    cleanup.defer(() => emitWarning.mockRestore());
    const sockets = new WebSocketRoutes();
    sockets.route('/boom', () => {
      throw new Error('boom-default');
    });
    sockets.route('/ok', (ws) => ws.send('ok'));
    const server = express().listen(0, '127.0.0.1');
    cleanup.defer(() => closeServer(server));
    await new Promise((resolve) => server.once('listening', resolve));
    sockets.mount(server);
    cleanup.defer(() => sockets.close());
    const { port } = server.address() as AddressInfo;

    const thrown = await client(`ws://127.0.0.1:${port}/boom`);
    expect((await within(thrown.closed, ms(2000), 'the /boom client to close')).code).toBe(1011);
    await waitFor(() => warnings.some((w) => w.includes('boom-default')), ms(2000), 'the warning');
    expect(await firstMessage(await client(`ws://127.0.0.1:${port}/ok`))).toBe('ok');
  });

  test('with proxyIdleTimeout, a route whose interval is not safely below it throws when it is declared, naming both values and the largest safe interval', () => {
    const sockets = new WebSocketRoutes({ heartbeat: { interval: 1_000, proxyIdleTimeout: 2_000 } });
    cleanup.defer(() => sockets.close());
    sockets.route('/ok', () => {});
    expect(() => sockets.route('/slow', { heartbeat: { interval: 3_000 } }, () => {})).toThrow(
      /"interval" option \(3000 ms\) is not safely below "proxyIdleTimeout" \(2000 ms\).*largest safe interval is 1595 ms/,
    );
  });

  test('sockets.heartbeat is the engine, shared by every route', async () => {
    const connections: string[] = [];
    const { sockets, url } = await startApp({}, (s) => {
      s.route('/a', () => {}).route('/b/:x', () => {});
    });
    expect(sockets.heartbeat).toBeInstanceOf(Heartbeat);
    sockets.heartbeat.on('connection', (_ws, route) => connections.push(route));
    await client(url('/a'));
    await client(url('/b/1'));
    await waitFor(() => connections.length === 2, ms(2000), "the engine's connection events");
    expect(connections).toEqual(['/a', '/b/:x']);
  });
});
