import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type ClientOptions } from 'ws';
import { Heartbeat, UpgradeRouter, type RouteOptions, type UpgradeRouterOptions } from '@ws-heartbeat/core';
import { abortHandshake } from '../src/http';
import { useCleanup } from '../../../test/helpers/cleanup';
import { ms, sleep, waitFor } from '../../../test/helpers/time';
import { requestUpgrade, type UpgradeResult } from '../../../test/helpers/upgrade';

const cleanup = useCleanup();

interface Harness {
  server: Server;
  router: UpgradeRouter;
  /** Errors the router reported through `onError`. */
  errors: { error: unknown; route: string; phase: string }[];
  /** The server side of every open connection. */
  sockets: Set<Socket>;
}

async function listen(): Promise<{ server: Server; sockets: Set<Socket> }> {
  const server = createServer((req, res) => {
    res.writeHead(426, { Connection: 'close' });
    res.end();
  });
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanup.defer(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { server, sockets };
}

/** A listening server with a router attached (unless `attach` is false). */
async function start(options: UpgradeRouterOptions = {}, attach = true): Promise<Harness> {
  const { server, sockets } = await listen();
  const errors: Harness['errors'] = [];
  const router = new UpgradeRouter({
    onError: (error, info) => errors.push({ error, ...info }),
    ...options,
  });
  // Runs before the server's teardown: sockets are destroyed first, so close() has nothing to wait for.
  cleanup.defer(() => router.close());
  if (attach) router.attach(server);
  return { server, router, errors, sockets };
}

function url(server: Server, path: string): string {
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
}

/** A `ws` client that is open, or the reason it is not. */
function connect(server: Server, path: string, options?: ClientOptions): Promise<WebSocket> {
  const ws = new WebSocket(url(server, path), options);
  cleanup.defer(() => ws.terminate());
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Connects and resolves with the first message the server sends (listened for before 'open'). */
function firstMessage(server: Server, path: string): Promise<string> {
  const ws = new WebSocket(url(server, path));
  cleanup.defer(() => ws.terminate());
  return new Promise((resolve, reject) => {
    ws.once('message', (data) => resolve(String(data)));
    ws.once('error', reject);
  });
}

function closeEvent(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once('message', (data) => resolve(String(data))));
}

function echo(ws: WebSocket): void {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
}

/** A raw upgrade request that must be refused: the status, no 101 ever, and the server closed the socket. */
async function expectRefused(server: Server, path: string, status: number, options?: Parameters<typeof requestUpgrade>[2]): Promise<UpgradeResult> {
  const result = await requestUpgrade(server, path, options);
  expect(result.status).toBe(status);
  expect(result.upgraded).toBe(false);
  expect(result.raw).not.toMatch(/HTTP\/1\.1 101/);
  expect(result.closedByServer).toBe(true);
  return result;
}

/** A promise with its resolve function, for an `authenticate` the test answers when it wants. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets pending promise callbacks and I/O callbacks run. */
async function settle(): Promise<void> {
  await sleep(ms(50));
  await new Promise((resolve) => setImmediate(resolve));
}

describe('UpgradeRouter: accepted upgrades', () => {
  it('hands the connection to the route handler with decoded params, tracked by the heartbeat', async () => {
    const { server, router } = await start();
    const calls: { params: Record<string, string>; url: string | undefined }[] = [];
    router.route('/rooms/:id', {
      handler: (ws, req, params) => {
        calls.push({ params, url: req.url });
        echo(ws);
      },
    });
    const routes: string[] = [];
    router.heartbeat.on('connection', (ws, route) => routes.push(route));

    const client = await connect(server, '/rooms/a%20b?x=1');
    client.send('hello');
    expect(await nextMessage(client)).toBe('hello');
    expect(calls).toEqual([{ params: { id: 'a b' }, url: '/rooms/a%20b?x=1' }]);
    expect(routes).toEqual(['/rooms/:id']);
    expect(router.heartbeat.size).toBe(1);
  });

  it('prefers a literal segment over a parameter, whatever the order of the routes', async () => {
    const { server, router } = await start();
    const hits: string[] = [];
    router.route('/rooms/:id', {
      handler: (ws, req, { id }) => {
        hits.push(`param:${id!}`);
      },
    });
    router.route('/rooms/lobby', {
      handler: () => {
        hits.push('lobby');
      },
    });
    await connect(server, '/rooms/lobby');
    await connect(server, '/rooms/kitchen');
    await waitFor(() => hits.length === 2, ms(2000), 'two handler calls');
    expect(hits).toEqual(['lobby', 'param:kitchen']);
  });

  it('defines a heartbeat route per pattern with its overrides, and uses a Heartbeat it is given', async () => {
    const heartbeat = new Heartbeat({ interval: 20_000 });
    const { router } = await start({ heartbeat });
    expect(router.heartbeat).toBe(heartbeat);
    router.route('/fast', { handler: () => {}, heartbeat: { interval: 1_000, timeout: 500, closeTimeout: 700 } });
    router.route('/slow', { handler: () => {} });
    expect(heartbeat.settings('/fast')).toMatchObject({ interval: 1_000, timeout: 500, closeTimeout: 700 });
    expect(heartbeat.settings('/slow').interval).toBe(20_000);
  });

  it('applies each route its own ws options (maxPayload)', async () => {
    const { server, router } = await start();
    router.route('/small', { handler: echo, ws: { maxPayload: 16 } });
    router.route('/big', { handler: echo, ws: { maxPayload: 1024 } });
    const payload = 'x'.repeat(100);

    const big = await connect(server, '/big');
    big.send(payload);
    expect(await nextMessage(big)).toBe(payload);

    const small = await connect(server, '/small');
    const closed = closeEvent(small);
    small.send(payload);
    expect((await closed).code).toBe(1009); // Message Too Big
    big.send('still here'); // the other route is unaffected
    expect(await nextMessage(big)).toBe('still here');
  });
});

describe('UpgradeRouter: limits by default', () => {
  const MiB = 1024 * 1024;

  it('accepts messages up to 1 MiB by default and closes a larger one with 1009', async () => {
    const { server, router } = await start();
    router.route('/default', { handler: echo });
    const client = await connect(server, '/default');
    const full = 'x'.repeat(MiB);
    client.send(full);
    expect(await nextMessage(client)).toBe(full);
    const closed = closeEvent(client);
    client.send(`${full}x`);
    expect((await closed).code).toBe(1009); // Message Too Big
  });

  it('lets a route queue 64 MiB to a slow reader, or twice its maxPayload where that is more, unless its options say otherwise', async () => {
    const router = new UpgradeRouter();
    cleanup.defer(() => router.close());
    router.route('/default', { handler: echo });
    router.route('/big', { handler: echo, ws: { maxPayload: 100 * MiB } });
    router.route('/set', { handler: echo, ws: { maxPayload: 100 * MiB }, heartbeat: { maxBufferedAmount: 8 * MiB } });
    router.route('/unbounded', { handler: echo, ws: { maxPayload: 0 } }); // ws: no limit
    expect(router.heartbeat.settings('/default').maxBufferedAmount).toBe(64 * MiB);
    expect(router.heartbeat.settings('/big').maxBufferedAmount).toBe(200 * MiB);
    expect(router.heartbeat.settings('/set').maxBufferedAmount).toBe(8 * MiB);
    expect(router.heartbeat.settings('/unbounded').maxBufferedAmount).toBe(64 * MiB);

    // The engine's own options come before the route's scaled default.
    const off = new UpgradeRouter({ heartbeat: { maxBufferedAmount: false } });
    cleanup.defer(() => off.close());
    off.route('/big', { handler: echo, ws: { maxPayload: 100 * MiB } });
    expect(off.heartbeat.settings('/big').maxBufferedAmount).toBe(false);

    for (const maxPayload of [-1, 1.5, '1024', Infinity]) {
      expect(() => router.route('/bad', { handler: echo, ws: { maxPayload } as RouteOptions['ws'] })).toThrow(/"ws.maxPayload" option must be a whole number of bytes \(0 for no limit\): got/);
    }
  });
});

describe('UpgradeRouter: paths no route matches', () => {
  it('answers 404 and closes the socket when no other upgrade listener is on the server', async () => {
    const { server, router } = await start();
    const handler = jest.fn();
    router.route('/ws', { handler });
    const result = await expectRefused(server, '/nowhere', 404);
    expect(result.headers.connection).toBe('close');
    expect(result.body).toBe('Not Found');
    await expectRefused(server, '/ws/', 404);
    await expectRefused(server, '/ws/../ws', 404);
    expect(handler).not.toHaveBeenCalled();
  });

  it.each([
    ['before', true],
    ['after', false],
  ])('leaves them to another upgrade listener registered %s the router, and both work', async (_when, otherFirst) => {
    const { server, sockets } = await listen();
    const router = new UpgradeRouter();
    cleanup.defer(() => router.close());
    const other = new WebSocketServer({ noServer: true });
    cleanup.defer(() => new Promise((resolve) => other.close(resolve)));
    other.on('connection', (ws) => ws.send('from other'));
    const otherOnUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      if (req.url === '/other') other.handleUpgrade(req, socket, head, (ws) => other.emit('connection', ws, req));
    };
    if (otherFirst) server.on('upgrade', otherOnUpgrade);
    router.attach(server);
    if (!otherFirst) server.on('upgrade', otherOnUpgrade);
    const handler = jest.fn((ws: WebSocket) => ws.send('from router'));
    router.route('/ws', { handler });

    expect(await firstMessage(server, '/other')).toBe('from other');
    expect(await firstMessage(server, '/ws')).toBe('from router');
    expect(handler).toHaveBeenCalledTimes(1);
    expect(router.heartbeat.size).toBe(1);

    // A path neither listener handles is left alone by the router: no 404, the socket stays open.
    await expect(requestUpgrade(server, '/nowhere', { timeout: ms(300) })).rejects.toThrow(/no answer/);
    for (const socket of sockets) socket.destroy();
  });

  it('handleUpgrade() returns false without answering, for the caller to decide', async () => {
    const { server, router } = await start({}, false);
    router.route('/ws', { handler: echo });
    const taken: boolean[] = [];
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const took = router.handleUpgrade(req, socket, head);
      taken.push(took);
      if (!took) abortHandshake(socket, 418);
    });
    await expectRefused(server, '/nowhere', 418);
    const client = await connect(server, '/ws');
    client.send('ok');
    expect(await nextMessage(client)).toBe('ok');
    expect(taken).toEqual([false, true]);
  });
});

describe('UpgradeRouter: refusals', () => {
  it('answers 403 to an origin not in the list, and accepts listed origins and clients without one', async () => {
    const { server, router } = await start();
    const handler = jest.fn();
    router.route('/ws', { handler, origins: ['https://good.example', 'http://localhost:8080'] });
    await expectRefused(server, '/ws', 403, { origin: 'https://evil.example' });
    await expectRefused(server, '/ws', 403, { origin: 'https://good.example.evil.example' });
    await expectRefused(server, '/ws', 403, { origin: 'null' });
    expect(handler).not.toHaveBeenCalled();

    await connect(server, '/ws', { origin: 'https://good.example' });
    await connect(server, '/ws', { origin: 'http://localhost:8080' });
    await connect(server, '/ws');
    await waitFor(() => handler.mock.calls.length === 3, ms(2000), 'three connections');
  });

  it('asks an origin function, which sees undefined for a missing header', async () => {
    const { server, router } = await start();
    const seen: (string | undefined)[] = [];
    router.route('/ws', {
      handler: () => {},
      origins: (origin) => {
        seen.push(origin);
        return origin === 'https://good.example';
      },
    });
    await expectRefused(server, '/ws', 403);
    await expectRefused(server, '/ws', 403, { origin: 'https://evil.example' });
    await connect(server, '/ws', { origin: 'https://good.example' });
    expect(seen).toEqual([undefined, 'https://evil.example', 'https://good.example']);
  });

  it('answers 401 when authenticate returns false, sync or async, and creates no WebSocket', async () => {
    const { server, router } = await start();
    const handler = jest.fn();
    router.route('/sync', { handler, authenticate: () => false });
    router.route('/async', { handler, authenticate: async () => false });
    const result = await expectRefused(server, '/sync', 401);
    expect(result.body).toBe('Unauthorized');
    await expectRefused(server, '/async', 401);
    expect(handler).not.toHaveBeenCalled();
    expect(router.heartbeat.size).toBe(0);
  });

  it('does not count refused upgrades against the limits', async () => {
    const { server, router } = await start({ maxConnections: 1, maxConnectionsPerClient: 1 });
    const handler = jest.fn();
    router.route('/ws', {
      handler,
      maxConnections: 1,
      authenticate: (req) => {
        const token = req.headers['x-token'];
        if (token === 'throw') throw new Error('auth bug');
        return token === 'good' || (token === 'async' ? Promise.resolve(false) : false);
      },
    });
    await expectRefused(server, '/ws', 401);
    await expectRefused(server, '/ws', 401, { headers: { 'x-token': 'async' } });
    await expectRefused(server, '/ws', 500, { headers: { 'x-token': 'throw' } });
    await connect(server, '/ws', { headers: { 'x-token': 'good' } });
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it('answers the status authenticate returns, and 500 for a status outside 400-599', async () => {
    const { server, router, errors } = await start();
    const handler = jest.fn();
    router.route('/teapot', { handler, authenticate: () => 418 });
    router.route('/legal', { handler, authenticate: () => Promise.resolve(451) });
    router.route('/ok-status', { handler, authenticate: () => 200 });
    await expectRefused(server, '/teapot', 418);
    await expectRefused(server, '/legal', 451);
    await expectRefused(server, '/ok-status', 500);
    expect(handler).not.toHaveBeenCalled();
    expect(errors).toEqual([{ error: expect.any(TypeError), route: '/ok-status', phase: 'authenticate' }]);
  });

  it('answers 500 when authenticate throws or rejects, and reports the error', async () => {
    const { server, router, errors } = await start();
    const handler = jest.fn();
    const boom = new Error('boom');
    router.route('/throws', {
      handler,
      authenticate: () => {
        throw boom;
      },
    });
    router.route('/rejects', { handler, authenticate: () => Promise.reject(boom) });
    await expectRefused(server, '/throws', 500);
    await expectRefused(server, '/rejects', 500);
    expect(handler).not.toHaveBeenCalled();
    expect(errors).toEqual([
      { error: boom, route: '/throws', phase: 'authenticate' },
      { error: boom, route: '/rejects', phase: 'authenticate' },
    ]);
  });

  it('answers 503 when authenticate takes longer than authTimeout, and ignores its late answer', async () => {
    const { server, router } = await start({ authTimeout: ms(100) });
    const handler = jest.fn();
    const auth = deferred<boolean>();
    let calls = 0;
    router.route('/ws', { handler, maxConnections: 1, authenticate: () => (calls++ === 0 ? auth.promise : true) });
    await expectRefused(server, '/ws', 503);
    auth.resolve(true);
    await settle();
    expect(handler).not.toHaveBeenCalled();
    expect(router.heartbeat.size).toBe(0);
    // The timed-out upgrade no longer counts against the route's limit of 1.
    await connect(server, '/ws');
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it('creates nothing when the client disconnects during async authentication, and frees its slot', async () => {
    const { server, router, errors, sockets } = await start();
    const handler = jest.fn();
    const auth = deferred<boolean>();
    const started = deferred<void>();
    let calls = 0;
    router.route('/ws', {
      handler,
      maxConnections: 1,
      authenticate: () => {
        calls += 1;
        if (calls > 1) return true;
        started.resolve();
        return auth.promise;
      },
    });

    const controller = new AbortController();
    const request = requestUpgrade(server, '/ws', { signal: controller.signal });
    const rejected = expect(request).rejects.toThrow(/abort/i);
    await started.promise;
    const [serverSide] = [...sockets];
    controller.abort();
    await rejected;
    await waitFor(() => serverSide!.destroyed, ms(2000), 'the router to destroy the abandoned socket');

    auth.resolve(true);
    await settle();
    expect(handler).not.toHaveBeenCalled();
    expect(router.heartbeat.size).toBe(0);
    expect(errors).toEqual([]);

    // The abandoned upgrade no longer counts against the route's limit of 1.
    await connect(server, '/ws');
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it('answers 400 to a malformed handshake (as ws does), counts it no longer, and keeps serving', async () => {
    const { server, router } = await start();
    const handler = jest.fn(echo);
    router.route('/ws', { handler, maxConnections: 1 });
    await expectRefused(server, '/ws', 400, { key: null });
    const badVersion = await expectRefused(server, '/ws', 400, { headers: { 'Sec-WebSocket-Version': '12' } });
    expect(badVersion.headers['sec-websocket-version']).toBe('13, 8');
    expect(handler).not.toHaveBeenCalled();
    const client = await connect(server, '/ws');
    client.send('alive');
    expect(await nextMessage(client)).toBe('alive');
  });
});

describe('UpgradeRouter: connection limits', () => {
  it('answers 503 beyond the route limit, and frees a slot when a connection closes', async () => {
    const { server, router } = await start();
    router.route('/ws', { handler: () => {}, maxConnections: 2 });
    router.route('/free', { handler: () => {} });
    const first = await connect(server, '/ws');
    await connect(server, '/ws');
    await expectRefused(server, '/ws', 503);
    await connect(server, '/free'); // another route has its own count

    first.close();
    await waitFor(() => router.heartbeat.size === 2, ms(2000), 'the closed connection to be forgotten');
    await connect(server, '/ws');
  });

  it('answers 503 beyond the global limit, over all routes', async () => {
    const { server, router } = await start({ maxConnections: 2 });
    router.route('/a', { handler: () => {} });
    router.route('/b', { handler: () => {} });
    await connect(server, '/a');
    await connect(server, '/b');
    await expectRefused(server, '/a', 503);
    await expectRefused(server, '/b', 503);
  });

  it('answers 429 beyond the per-client limit', async () => {
    const { server, router } = await start({ maxConnectionsPerClient: 2 });
    router.route('/ws', { handler: () => {} });
    const first = await connect(server, '/ws');
    await connect(server, '/ws');
    const result = await expectRefused(server, '/ws', 429);
    expect(result.body).toBe('Too Many Requests');

    first.terminate();
    await waitFor(() => router.heartbeat.size === 1, ms(2000), 'the closed connection to be forgotten');
    await connect(server, '/ws');
  });

  it('counts an upgrade that is still authenticating, so a burst cannot exceed the limit', async () => {
    const { server, router } = await start();
    const auth = deferred<boolean>();
    const started = deferred<void>();
    const handler = jest.fn();
    router.route('/ws', {
      handler,
      maxConnections: 1,
      authenticate: () => {
        started.resolve();
        return auth.promise;
      },
    });
    const pending = connect(server, '/ws');
    await started.promise;
    await expectRefused(server, '/ws', 503);
    auth.resolve(true);
    await pending;
    expect(handler).toHaveBeenCalledTimes(1);
  });
});

describe('UpgradeRouter: handlers that fail', () => {
  it('closes the connection of a throwing handler with 1011, reports it, and keeps serving', async () => {
    const { server, router, errors } = await start();
    const boom = new Error('handler bug');
    router.route('/throws', {
      handler: () => {
        throw boom;
      },
    });
    router.route('/rejects', { handler: () => Promise.reject(boom) });
    router.route('/ws', { handler: echo });

    const thrown = await connect(server, '/throws');
    expect((await closeEvent(thrown)).code).toBe(1011);
    const rejected = await connect(server, '/rejects');
    expect((await closeEvent(rejected)).code).toBe(1011);
    expect(errors).toEqual([
      { error: boom, route: '/throws', phase: 'connection' },
      { error: boom, route: '/rejects', phase: 'connection' },
    ]);

    const client = await connect(server, '/ws');
    client.send('still serving');
    expect(await nextMessage(client)).toBe('still serving');
  });
});

describe('UpgradeRouter: close()', () => {
  it('answers 503 to new and authenticating upgrades while it closes connections with 1001, once, and detaches when they are gone', async () => {
    const { server, router } = await start();
    // A second server whose adapter-style listener keeps calling handleUpgrade() after close().
    const { server: adapted } = await listen();
    adapted.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!router.handleUpgrade(req, socket, head)) socket.destroy();
    });
    const auth = deferred<boolean>();
    const started = deferred<void>();
    const handler = jest.fn();
    router.route('/ws', { handler: () => {} });
    // A peer that reads nothing keeps its connection (and the close) going until closeTimeout.
    router.route('/held', { handler: () => {}, heartbeat: { closeTimeout: ms(1_500) } });
    router.route('/auth', {
      handler,
      authenticate: () => {
        started.resolve();
        return auth.promise;
      },
    });
    expect(server.listenerCount('upgrade')).toBe(1);

    const open = await connect(server, '/ws');
    const openClosed = closeEvent(open);
    await connect(adapted, '/ws');
    const held = await connect(server, '/held');
    (held as unknown as { _socket: Duplex })._socket.pause();
    const authenticating = requestUpgrade(server, '/auth');
    await started.promise;

    const closing = router.close();
    expect(router.close()).toBe(closing);
    const refused = await authenticating;
    expect(refused.status).toBe(503);
    expect(refused.raw).not.toMatch(/HTTP\/1\.1 101/);
    expect(refused.closedByServer).toBe(true);
    await expectRefused(adapted, '/ws', 503);
    await expectRefused(adapted, '/nowhere', 503);
    expect((await openClosed).code).toBe(1001);
    // Still closing (the held peer): the router's own listener answers every upgrade 503.
    expect(router.heartbeat.size).toBe(1);
    expect(server.listenerCount('upgrade')).toBe(1);
    await expectRefused(server, '/ws', 503);
    await expectRefused(server, '/nowhere', 503);
    await closing;
    expect(server.listenerCount('upgrade')).toBe(0);
    expect(router.heartbeat.stats().terminations.shutdown).toBe(1);
    expect(router.heartbeat.closing).toBe(true);
    expect(router.heartbeat.size).toBe(0);

    auth.resolve(true);
    await settle();
    expect(handler).not.toHaveBeenCalled();
    expect(() => router.route('/late', { handler: () => {} })).toThrow(/closed/);
    expect(() => router.attach(server)).toThrow(/closed/);
  });
});

describe('UpgradeRouter: options', () => {
  const handler = (): void => {};

  it('rejects invalid route options with a TypeError naming the option and the value', () => {
    const router = new UpgradeRouter();
    cleanup.defer(() => router.close());
    router.route('/rooms/:id', { handler });
    expect(() => router.route('/rooms/:id', { handler })).toThrow(/Duplicate route "\/rooms\/:id"/);
    expect(() => router.route('/rooms/:name', { handler })).toThrow(/Duplicate route "\/rooms\/:name": "\/rooms\/:id"/);
    expect(() => router.route('/a', { handler: 'nope' } as unknown as RouteOptions)).toThrow(/"handler" option must be a function: got "nope"/);
    expect(() => router.route('/a', {} as RouteOptions)).toThrow(/"handler" option must be a function: got undefined/);
    expect(() => router.route('/a', { handler, maxConnections: 0 })).toThrow(/"maxConnections" option must be a positive integer or Infinity: got 0/);
    expect(() => router.route('/a', { handler, maxConnections: 1.5 })).toThrow(/got 1.5/);
    expect(() => router.route('/a', { handler, maxConnections: Number.NaN })).toThrow(/got NaN/);
    expect(() => router.route('/a', { handler, authenticate: true } as unknown as RouteOptions)).toThrow(/"authenticate" option must be a function: got true/);
    expect(() => router.route('/a', { handler, origins: 'https://a.example' } as unknown as RouteOptions)).toThrow(/"origins" option/);
    expect(() => router.route('/a', { handler, origins: ['https://a.example/path'] })).toThrow(/"origins" option .*: got "https:\/\/a.example\/path"/);
    expect(() => router.route('/a', { handler, origins: ['a.example'] })).toThrow(/got "a.example"/);
    expect(() => router.route('/a', { handler, ws: { port: 80 } as RouteOptions['ws'] })).toThrow(/"ws.port" option is set by the router/);
    expect(() => router.route('/a', { handler, ws: { closeTimeout: 1 } as RouteOptions['ws'] })).toThrow(/heartbeat.closeTimeout/);
    expect(() => router.route('/a', { handler, heartbeat: { interval: -1 } })).toThrow(/"interval" option .*: got -1/);
    expect(() => router.route('/a', { handler, maxConnection: 3 } as unknown as RouteOptions)).toThrow(/Unknown route option "maxConnection"/);
    expect(() => router.route('a', { handler })).toThrow(/must start with "\/"/);
    for (const call of [
      () => router.route('/a', { handler, maxConnections: -1 }),
      () => router.route('/rooms/:id', { handler }),
      () => router.route('/a//b', { handler }),
    ]) {
      expect(call).toThrow(TypeError);
    }
    // None of the failed calls registered anything.
    expect(() => router.route('/a', { handler })).not.toThrow();
  });

  it('rejects invalid router options with a TypeError naming the option and the value', () => {
    expect(() => new UpgradeRouter({ authTimeout: 0 })).toThrow(/"authTimeout" option must be .*: got 0/);
    expect(() => new UpgradeRouter({ authTimeout: Infinity })).toThrow(/got Infinity/);
    expect(() => new UpgradeRouter({ maxConnections: -5 })).toThrow(/"maxConnections" option .*: got -5/);
    expect(() => new UpgradeRouter({ maxConnectionsPerClient: 0 })).toThrow(/"maxConnectionsPerClient" option .*: got 0/);
    expect(() => new UpgradeRouter({ heartbeat: { timeout: 'soon' } as unknown as UpgradeRouterOptions['heartbeat'] })).toThrow(/"timeout" option .*: got "soon"/);
    expect(() => new UpgradeRouter({ authtimeout: 5 } as unknown as UpgradeRouterOptions)).toThrow(/Unknown UpgradeRouter option "authtimeout"/);
  });
});

describe('UpgradeRouter: routes matched by the caller (define / accept)', () => {
  /** A server whose own 'upgrade' listener matches `/game/<id>` itself and hands it to the router. */
  async function adapterLike(options: RouteOptions): Promise<Harness> {
    const harness = await start({}, false);
    harness.router.define('game route', options);
    harness.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const match = /^\/game\/([^/?]+)/.exec(req.url ?? '');
      if (match) harness.router.accept('game route', req, socket, head, { id: match[1]! });
      else abortHandshake(socket, 404);
    });
    return harness;
  }

  it('upgrades with the params the caller matched, tracked on the named heartbeat route', async () => {
    const seen: string[] = [];
    const { server, router } = await adapterLike({
      handler: (ws, _req, params) => {
        seen.push(params.id!);
        ws.send('hi');
      },
      heartbeat: { interval: 1_234 },
    });
    expect(await firstMessage(server, '/game/42')).toBe('hi');
    expect(seen).toEqual(['42']);
    expect(router.heartbeat.size).toBe(1);
    expect(router.heartbeat.settings('game route').interval).toBe(1_234);
    expect(router.heartbeat.stats().routes['game route']!.connections).toBe(1);
  });

  it('applies the route checks through accept(): origin 403, authenticate 401, and 503 after close()', async () => {
    const { server, router } = await adapterLike({
      handler: echo,
      origins: ['https://good.example'],
      authenticate: (req) => req.headers.authorization === 'Bearer yes',
    });
    await expectRefused(server, '/game/1', 403, { origin: 'https://evil.example', headers: { authorization: 'Bearer yes' } });
    await expectRefused(server, '/game/1', 401, { origin: 'https://good.example' });
    await connect(server, '/game/1', { headers: { authorization: 'Bearer yes' } });
    void router.close();
    await expectRefused(server, '/game/1', 503, { headers: { authorization: 'Bearer yes' } });
  });

  it('refuses an unknown or duplicate route name with a TypeError', async () => {
    const { router } = await start({}, false);
    router.define('a', { handler: echo });
    router.route('/b', { handler: echo });
    expect(() => router.define('a', { handler: echo })).toThrow(/Duplicate route "a"/);
    expect(() => router.define('/b', { handler: echo })).toThrow(/Duplicate route "\/b"/);
    expect(() => router.define('', { handler: echo })).toThrow(TypeError);
    const { server } = await listen();
    const refused = new Promise<unknown>((resolve) =>
      server.once('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        try {
          router.accept('nowhere', req, socket, head);
        } catch (error) {
          socket.destroy();
          resolve(error);
        }
      }),
    );
    void requestUpgrade(server, '/x').catch(() => undefined);
    expect(await refused).toBeInstanceOf(TypeError);
  });
});
