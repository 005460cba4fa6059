/**
 * @ws-heartbeat/fastify on real sockets: a real Fastify application listening on 127.0.0.1
 * port 0, real `ws` clients, raw `http` upgrade requests for the refusal paths, supertest for
 * plain HTTP, and child processes for peers that must not share the test's event loop (a
 * SIGSTOPped client process) and for an application that must exit by itself.
 *
 * Every bound is written with `ms()`, so WSH_TIME_SCALE widens them on a slow machine.
 */
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import request from 'supertest';
import { WebSocket, WebSocketServer, type ClientOptions } from 'ws';
import { Heartbeat, type TerminateReason } from '@ws-heartbeat/core';
import wsHeartbeat, { wsHeartbeat as namedExport, type WsHeartbeatOptions } from '@ws-heartbeat/fastify';
import { openClientFor, openClientsFor, rawUpgrade, type TestClient } from '../../../test/helpers/clients';
import { childMessage, expectExitByItself, forkChild, HELD_CLIENTS } from '../../../test/helpers/child';
import { useCleanup } from '../../../test/helpers/cleanup';
import { CLOSE_TIMEOUT, EPSILON, NEVER, SLOP, TIMEOUT, ms, now, sleep, waitFor } from '../../../test/helpers/time';
import { expectRoutesKeepTheirOwnHeartbeat, firstMessage, within } from '../../../test/helpers/harness';
import { requestUpgrade } from '../../../test/helpers/upgrade';
import type { AppChildConfig, AppChildMessage } from './fixtures/app-child';

const FIXTURES = path.join(__dirname, 'fixtures');

const cleanup = useCleanup();

// ---- applications and clients ----------------------------------------------------------

interface TestApp {
  app: FastifyInstance;
  port: number;
  /** `ws://127.0.0.1:<port><path>` */
  url(path: string): string;
  /** Every line the application logged (level error and above), as written. */
  logs: string[];
}

/**
 * A Fastify application with the plugin registered (`options`), its routes declared by
 * `declare`, listening on 127.0.0.1 port 0. Closed after the test (after its clients).
 */
async function startApp(
  options: WsHeartbeatOptions,
  declare: (app: FastifyInstance) => void | Promise<void>,
  fastifyOptions: FastifyServerOptions = {},
): Promise<TestApp> {
  const logs: string[] = [];
  const app = Fastify({ ...fastifyOptions, logger: { level: 'error', stream: { write: (line: string) => logs.push(line) } } });
  cleanup.defer(() => app.close());
  await app.register(wsHeartbeat, options);
  await declare(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return { app, port, url: (p) => `ws://127.0.0.1:${port}${p}`, logs };
}

/** An open `ws` client, terminated after the test. */
function client(url: string, options?: ClientOptions): Promise<TestClient> {
  return openClientFor(cleanup, url, options);
}



/** A request as a hook decorated it (`app.decorateRequest('user', null)`). */
type UserRequest = FastifyRequest & { user: string | null };

// ---- child processes -------------------------------------------------------------------


// ---- tests -------------------------------------------------------------------------------

describe('@ws-heartbeat/fastify', () => {
  test('each route pings at its own interval and terminates a silent peer inside its own bound', async () => {
    const fastInterval = ms(100);
    const slowInterval = ms(400);
    // Plugin defaults that would show if a route's own settings were ignored.
    const { app, url } = await startApp({ heartbeat: { interval: NEVER, timeout: NEVER } }, (a) => {
      a.get('/fast', { websocket: true, heartbeat: { interval: fastInterval, timeout: TIMEOUT } }, () => {});
      a.get('/slow', { websocket: true, heartbeat: { interval: slowInterval, timeout: TIMEOUT } }, () => {});
    });
    await expectRoutesKeepTheirOwnHeartbeat({ heartbeat: app.heartbeat, url, client, fastInterval, slowInterval, timeout: TIMEOUT, epsilon: EPSILON, slop: SLOP });

    const { routes } = app.heartbeat.stats();
    expect(Object.keys(routes)).toEqual(expect.arrayContaining(['/fast', '/slow']));
    expect(routes['/fast']?.connections).toBe(1);
    expect(routes['/slow']?.connections).toBe(1);
    expect(routes['/fast']?.terminations.timeout).toBe(1);
    expect(routes['/slow']?.terminations.timeout).toBe(1);
  });

  test("the route's hooks run before any 101: a refusing onRequest or preValidation answers with its status, a passing hook's decoration reaches the handler", async () => {
    let refusedHandlerRuns = 0;
    const { app, url } = await startApp({}, (a) => {
      a.decorateRequest('user', null);
      // An earlier, instance-wide hook decorates every request.
      a.addHook('onRequest', async (req) => {
        const header = req.headers['x-user'];
        (req as UserRequest).user = typeof header === 'string' ? header : null;
      });
      a.get(
        '/me',
        {
          websocket: true,
          onRequest: async (req, reply) => {
            if ((req as UserRequest).user === null) return reply.code(401).send({ error: 'who are you?' });
          },
          preValidation: async (req, reply) => {
            if ((req as UserRequest).user === 'mallory') return reply.code(403).send({ error: 'not you' });
          },
        },
        (socket, req) => {
          if ((req as UserRequest).user !== 'ann') refusedHandlerRuns += 1;
          socket.send(`hello ${(req as UserRequest).user}`);
        },
      );
    });
    const server = app.server;

    const anonymous = await requestUpgrade(server, '/me');
    expect(anonymous.status).toBe(401);
    expect(anonymous.upgraded).toBe(false);
    expect(anonymous.raw).not.toContain('HTTP/1.1 101');
    expect(anonymous.body).toContain('who are you?');
    expect(anonymous.headers.connection).toBe('close');
    expect(anonymous.closedByServer).toBe(true);

    const mallory = await requestUpgrade(server, '/me', { headers: { 'X-User': 'mallory' } });
    expect(mallory.status).toBe(403);
    expect(mallory.upgraded).toBe(false);
    expect(mallory.raw).not.toContain('HTTP/1.1 101');
    expect(mallory.body).toContain('not you');
    expect(mallory.closedByServer).toBe(true);

    const ann = await client(url('/me'), { headers: { 'X-User': 'ann' } });
    expect(await firstMessage(ann)).toBe('hello ann');
    expect(refusedHandlerRuns).toBe(0);
  });

  test('a route inside a prefixed, encapsulated plugin answers at the prefixed path with its params and query', async () => {
    const connections: string[] = [];
    const { app, url } = await startApp({}, async (a) => {
      await a.register(
        async (child) => {
          child.decorate('area', 'rooms');
          child.get<{ Params: { id: string }; Querystring: { nick?: string } }>('/rooms/:id', { websocket: true }, function (socket, req) {
            // `this` is the instance the route was declared in: it sees that instance's decorators.
            socket.send(JSON.stringify({ id: req.params.id, nick: req.query.nick, area: this.hasDecorator('area') }));
          });
        },
        { prefix: '/api' },
      );
    });
    app.heartbeat.on('connection', (_ws, route) => connections.push(route));

    const c = await client(url('/api/rooms/42?nick=ann'));
    expect(JSON.parse(await firstMessage(c))).toEqual({ id: '42', nick: 'ann', area: true });
    expect(app.hasDecorator('area')).toBe(false);

    expect(app.printRoutes({ commonPrefix: false })).toContain('/api/rooms/:id (GET');
    expect(connections).toEqual(['/api/rooms/:id']);
    expect(Object.keys(app.heartbeat.stats().routes)).toContain('/api/rooms/:id');
    expect(app.heartbeat.stats().routes['/api/rooms/:id']?.connections).toBe(1);

    // The unprefixed path is not a route.
    const unprefixed = await requestUpgrade(app.server, '/rooms/42');
    expect(unprefixed.status).toBe(404);
  });

  test("an unknown path and an HTTP-only route get Fastify's 404 and a destroyed socket; a plain GET of a WebSocket route gets 426", async () => {
    let plainRuns = 0;
    let liveRuns = 0;
    const { app, url } = await startApp({}, (a) => {
      a.setNotFoundHandler((_req, reply) => reply.code(404).send('custom-404-marker'));
      a.get('/plain', async () => {
        plainRuns += 1;
        return 'plain answer';
      });
      a.get('/live', { websocket: true }, () => {
        liveRuns += 1;
      });
      a.route({
        method: 'GET',
        url: '/feed',
        websocket: true,
        wsHandler: (socket) => socket.send('ws feed'),
        handler: async () => 'http feed',
      });
    });

    for (const path of ['/nowhere', '/plain']) {
      const answer = await requestUpgrade(app.server, path);
      expect(answer.status).toBe(404);
      expect(answer.upgraded).toBe(false);
      expect(answer.raw).not.toContain('HTTP/1.1 101');
      expect(answer.body).toContain('custom-404-marker');
      expect(answer.closedByServer).toBe(true);
    }
    expect(plainRuns).toBe(0);

    const plainGet = await request(app.server).get('/live');
    expect(plainGet.status).toBe(426);
    expect(plainGet.headers.upgrade).toBe('websocket');
    expect(liveRuns).toBe(0);

    // The HTTP route itself still works, and so does the full form with both handlers.
    expect((await request(app.server).get('/plain')).text).toBe('plain answer');
    expect(plainRuns).toBe(1);
    expect((await request(app.server).get('/feed')).text).toBe('http feed');
    expect(await firstMessage(await client(url('/feed')))).toBe('ws feed');
    // HEAD follows GET: the shorthand WebSocket route answers 426, the full form its HTTP handler.
    expect((await request(app.server).head('/live')).status).toBe(426);
    expect((await request(app.server).head('/feed')).status).toBe(200);
  });

  test("another ws server on the same app.server keeps its own path; the plugin never touches its sockets", async () => {
    const { app, url } = await startApp({}, (a) => {
      a.get('/ours', { websocket: true }, (socket) => {
        socket.on('message', (data) => socket.send(`ours: ${String(data)}`));
      });
    });
    const other = new WebSocketServer({ noServer: true });
    other.on('connection', (ws) => ws.on('message', (data) => ws.send(`other: ${String(data)}`)));
    const serverOnUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      if (new URL(req.url ?? '/', 'http://localhost').pathname !== '/other') return;
      other.handleUpgrade(req, socket, head, (ws) => other.emit('connection', ws, req));
    };
    app.server.on('upgrade', serverOnUpgrade);
    cleanup.defer(() => {
      app.server.removeListener('upgrade', serverOnUpgrade);
      for (const ws of other.clients) ws.terminate();
      return new Promise<void>((resolve) => other.close(() => resolve()));
    });

    const theirs = await client(url('/other'));
    const ours = await client(url('/ours'));
    theirs.ws.send('a');
    ours.ws.send('b');
    expect(await firstMessage(theirs)).toBe('other: a');
    expect(await firstMessage(ours)).toBe('ours: b');

    // Another upgrade on the other path, raw: a 101 from the other server, not a 404 from us.
    const raw = await requestUpgrade(app.server, '/other');
    raw.socket?.destroy();
    expect(raw.status).toBe(101);
    expect(raw.raw).not.toContain('404');

    expect(other.clients.size).toBeGreaterThanOrEqual(1);
    const stats = app.heartbeat.stats();
    expect(stats.connections).toBe(1);
    expect(Object.keys(stats.routes)).not.toContain('/other');
  });

  test('app.close() with 30 connections, 5 held by a stopped process, sends 1001 and finishes within closeTimeout + 1 s', async () => {
    const { app, url } = await startApp({ heartbeat: { interval: NEVER, timeout: NEVER, closeTimeout: CLOSE_TIMEOUT } }, (a) => {
      a.get('/ws', { websocket: true }, () => {});
    });
    const terminations: TerminateReason[] = [];
    app.heartbeat.on('terminate', (_ws, reason) => terminations.push(reason));

    const held = forkChild<{ type: 'ready' } | { type: 'error'; message: string }>(cleanup, HELD_CLIENTS, { args: [url('/ws'), '5'] });
    const ready = await childMessage(held, 'ready', ms(10_000)).catch(async (error: unknown) => {
      throw new Error(`${String(error)}; child said ${JSON.stringify(held.messages)}`);
    });
    expect(ready.message.type).toBe('ready');
    held.process.kill('SIGSTOP');
    const clients = await openClientsFor(cleanup, url('/ws'), 25);
    await waitFor(() => app.heartbeat.size === 30, ms(5000), '30 tracked connections');

    const started = now();
    const closing = app.close();
    // While the stopped peers hold the shutdown open, a new upgrade is answered 503, never upgraded.
    const late = await requestUpgrade(app.server, '/ws');
    expect(late.status).toBe(503);
    expect(late.upgraded).toBe(false);
    expect(late.closedByServer).toBe(true);
    await within(closing, CLOSE_TIMEOUT + ms(3000), 'app.close()');
    const closeMs = now() - started;

    // The stopped peers never answer our close frame: they are destroyed after closeTimeout.
    expect(closeMs).toBeGreaterThanOrEqual(CLOSE_TIMEOUT - EPSILON);
    expect(closeMs).toBeLessThanOrEqual(CLOSE_TIMEOUT + ms(1000));
    const closes = await within(Promise.all(clients.map((c) => c.closed)), ms(2000), 'the clients to close');
    expect(closes.map((c) => c.code)).toEqual(Array(25).fill(1001));
    expect(app.heartbeat.stats().terminations.shutdown).toBe(5);
    expect(terminations).toEqual(Array(5).fill('shutdown'));
    expect(app.heartbeat.size).toBe(0);
    expect(app.server.listenerCount('upgrade')).toBe(0);
  });

  test('an upgrade that arrives during app.close() gets 503 even with return503OnClosing off', async () => {
    const { app, port } = await startApp(
      { heartbeat: { interval: NEVER, timeout: NEVER, closeTimeout: CLOSE_TIMEOUT } },
      (a) => {
        a.get('/ws', { websocket: true }, () => {});
      },
      { return503OnClosing: false },
    );
    // A raw peer that never answers our close frame holds the shutdown open for closeTimeout.
    const held = await rawUpgrade(port, '/ws');
    cleanup.defer(() => held.socket.destroy());
    await waitFor(() => app.heartbeat.size === 1, ms(2000), 'the connection to be tracked');
    const closing = app.close();
    const late = await requestUpgrade(app.server, '/ws');
    expect(late.status).toBe(503);
    expect(late.upgraded).toBe(false);
    await within(closing, CLOSE_TIMEOUT + ms(3000), 'app.close()');
  });

  test('retryWithin: app.close() closes every connection with 1012 and the retry hint the client package reads', async () => {
    const { app, url } = await startApp({ retryWithin: 1500, heartbeat: { interval: NEVER, timeout: NEVER } }, (a) => {
      a.get('/ws', { websocket: true }, () => {});
    });
    const peers = await Promise.all([client(url('/ws')), client(url('/ws'))]);
    await waitFor(() => app.heartbeat.size === 2, ms(2000), 'the connections to be tracked');
    await app.close();
    for (const peer of peers) {
      expect(await peer.closed).toMatchObject({ code: 1012, reason: 'Server restarting, retry within 1500 ms' });
    }
  });

  test('a process running the app exits by itself within closeTimeout + 1 s of app.close()', async () => {
    const config: AppChildConfig = { healthy: 5, silent: 2, ignoring: 2, closeTimeout: CLOSE_TIMEOUT };
    const { closed } = await expectExitByItself<AppChildMessage>(cleanup, path.join(FIXTURES, 'app-child.ts'), config);
    expect(closed).toMatchObject({ type: 'closed', size: 0, terminations: { shutdown: 2 } });
    expect(closed.closeMs).toBeGreaterThanOrEqual(CLOSE_TIMEOUT - EPSILON);
  });

  test('the opt-in stats route answers the engine stats as JSON; without the option the path is 404', async () => {
    const withStats = await startApp({ statsRoute: '/ws-stats' }, (a) => {
      a.get('/live', { websocket: true }, () => {});
    });
    await client(withStats.url('/live'));
    await waitFor(() => withStats.app.heartbeat.size === 1, ms(2000), 'the connection to be tracked');

    const answer = await request(withStats.app.server).get('/ws-stats');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toMatch(/^application\/json/);
    expect(answer.body.connections).toBe(1);
    expect(Object.keys(answer.body.routes)).toContain('/live');
    expect(answer.body.routes['/live'].connections).toBe(1);

    const without = await startApp({}, (a) => {
      a.get('/live', { websocket: true }, () => {});
    });
    expect((await request(without.app.server).get('/ws-stats')).status).toBe(404);
  });

  test('a handler that throws or rejects closes only its connection with 1011 and is logged; the app carries on', async () => {
    const { url, logs } = await startApp({}, (a) => {
      a.get('/boom', { websocket: true }, () => {
        throw new Error('boom-sync');
      });
      a.get('/reject', { websocket: true }, async () => {
        await sleep(1);
        throw new Error('boom-async');
      });
      a.get('/ok', { websocket: true }, (socket) => socket.send('ok'));
    });

    const thrown = await client(url('/boom'));
    const rejected = await client(url('/reject'));
    expect((await thrown.closed).code).toBe(1011);
    expect((await rejected.closed).code).toBe(1011);

    const errorLines = logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50);
    expect(errorLines.some((line) => line.includes('boom-sync'))).toBe(true);
    expect(errorLines.some((line) => line.includes('boom-async'))).toBe(true);

    const ok = await client(url('/ok'));
    expect(await firstMessage(ok)).toBe('ok');
    const again = await client(url('/boom'));
    expect((await again.closed).code).toBe(1011);
    expect(ok.ws.readyState).toBe(WebSocket.OPEN);
  });

  test('app.heartbeat is the engine and reports connections by route name; the plugin registers once per instance', async () => {
    expect(namedExport).toBe(wsHeartbeat);
    const connections: string[] = [];
    const { app, url } = await startApp({}, (a) => {
      a.get('/feed', { websocket: true }, () => {});
    });
    expect(app.heartbeat).toBeInstanceOf(Heartbeat);
    app.heartbeat.on('connection', (_ws, route) => connections.push(route));
    await client(url('/feed'));
    await waitFor(() => connections.length === 1, ms(2000), "the engine's connection event");
    expect(connections).toEqual(['/feed']);
    expect(app.heartbeat.stats().routes['/feed']?.connections).toBe(1);

    // A second registration in the same instance is refused: the decorator is already there.
    // (pluginTimeout: a registration that neither finishes nor fails must not hold the file for 10 s.)
    const twice = Fastify({ pluginTimeout: ms(1000) });
    cleanup.defer(() => twice.close());
    await twice.register(wsHeartbeat);
    const engine = twice.heartbeat;
    await expect(twice.register(wsHeartbeat).then(() => twice.ready())).rejects.toMatchObject({
      code: 'FST_ERR_DEC_ALREADY_PRESENT',
    });
    expect(twice.heartbeat).toBe(engine);
  });

  test('invalid plugin options make register() reject with a TypeError naming the option', async () => {
    const app = Fastify({ pluginTimeout: ms(1000) });
    cleanup.defer(() => app.close());
    await expect(app.register(wsHeartbeat, { heartbeat: { interval: -1 } })).rejects.toThrow(
      expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/interval.*-1/) }),
    );
    const other = Fastify({ pluginTimeout: ms(1000) });
    cleanup.defer(() => other.close());
    await expect(other.register(wsHeartbeat, { authTimeout: 0 })).rejects.toThrow(
      expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/authTimeout.*0/) }),
    );
    const third = Fastify({ pluginTimeout: ms(1000) });
    cleanup.defer(() => third.close());
    await expect(third.register(wsHeartbeat, { retryWithin: 2.5 })).rejects.toThrow(
      expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/retryWithin.*2\.5/) }),
    );
  });

  test('with proxyIdleTimeout, a route whose interval is not safely below it throws when it is declared, naming both values and the largest safe interval', async () => {
    const app = Fastify();
    cleanup.defer(() => app.close());
    await app.register(wsHeartbeat, { heartbeat: { interval: 1_000, proxyIdleTimeout: 2_000 } });
    app.get('/ok', { websocket: true }, () => {});
    expect(() => app.get('/slow', { websocket: true, heartbeat: { interval: 3_000 } }, () => {})).toThrow(
      /"interval" option \(3000 ms\) is not safely below "proxyIdleTimeout" \(2000 ms\).*largest safe interval is 1595 ms/,
    );
  });
});
