/**
 * The demo server that the README's first command starts (examples/server.mjs), run as users
 * run it: a child process on PORT=0 (test/helpers/demo.ts). Its dashboard page is driven in a
 * browser by dashboard.test.ts; here are its routes, its feed and its shutdown.
 */
import http from 'node:http';
import net from 'node:net';
import WebSocket from 'ws';
import type { HeartbeatStats } from '@ws-heartbeat/core';
import { useCleanup } from './helpers/cleanup';
import { type Demo, EXIT_BOUND, FAST, SNAPSHOT_PERIOD_MS, connectToDemo, openEvents, startDemo, terminateDemo } from './helpers/demo';
import { EPSILON, ms, now, waitFor } from './helpers/time';

/** What each test opens: its connections, requests and demos. */
const cleanup = useCleanup();

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: Buffer, isBinary) => resolve({ data, isBinary })));
}

function closed(ws: WebSocket): Promise<{ code: number; at: number }> {
  return new Promise((resolve) => ws.once('close', (code) => resolve({ code, at: now() })));
}

/** One HTTP GET on a connection of its own, closed afterwards. */
function get(port: number, path: string): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
      })
      .on('error', reject);
  });
}

/**
 * A peer that completes the WebSocket handshake on `path` and then reads nothing and answers
 * nothing, not even a close frame: only the server's closeTimeout can get rid of it.
 */
function silentPeer(port: number, path: string): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  cleanup.defer(() => socket.destroy());
  socket.on('error', () => {});
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  );
  return new Promise((resolve, reject) => {
    socket.once('data', (chunk) => {
      socket.pause();
      if (chunk.toString('latin1').startsWith('HTTP/1.1 101')) resolve(socket);
      else reject(new Error(`no 101 answer: ${chunk.toString('latin1')}`));
    });
    socket.once('close', () => reject(new Error('closed before the handshake')));
  });
}

describe('examples/server.mjs', () => {
  let demo: Demo;

  /** The demo the tests share. */
  const suite = useCleanup('all');

  beforeAll(async () => {
    demo = await startDemo(suite);
  });

  test('prints exactly one line with its URL, on the real port when PORT=0', () => {
    const urlLines = demo.lines.filter((line) => line.includes('http://'));
    expect(urlLines).toHaveLength(1);
    expect(urlLines[0]).toMatch(/http:\/\/127\.0\.0\.1:[1-9]\d*(\s|$)/);
    expect(demo.port).toBeGreaterThan(0);
  });

  test('GET / is the dashboard, an HTML page naming the routes; its script is served too; other paths are 404', async () => {
    const home = await get(demo.port, '/');
    expect(home.status).toBe(200);
    expect(home.type).toMatch(/^text\/html/);
    expect(home.body).toMatch(/^<!doctype html>/i);
    for (const path of ['/ws/echo', '/ws/fast', '/stats', '/metrics']) expect(home.body).toContain(path);
    const src = /<script src="([^"]+)"/.exec(home.body)?.[1];
    expect(src).toBeDefined();
    const script = await get(demo.port, src!);
    expect(script.status).toBe(200);
    expect(script.type).toMatch(/^text\/javascript/);
    expect(script.body).toContain("new EventSource('/events')");

    expect((await get(demo.port, '/nothing-here')).status).toBe(404);
  });

  test('GET /metrics is Prometheus text with the engine metrics labelled by route', async () => {
    const fast = await connectToDemo(cleanup, demo.port, '/ws/fast');
    const metrics = await get(demo.port, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(metrics.body).toMatch(/^# HELP ws_heartbeat_/m);
    expect(metrics.body).toMatch(/^# TYPE ws_heartbeat_\w+ (counter|gauge|histogram)$/m);
    const open = /^ws_heartbeat_connections\{route="\/ws\/fast"\} (\d+)$/m.exec(metrics.body);
    expect(Number(open?.[1])).toBeGreaterThanOrEqual(1);
    expect(metrics.body).toContain('route="/ws/echo"');
    fast.terminate();
  });

  test('GET /events is an event stream: the history and route bounds on connect, then a stats snapshot every 500 ms', async () => {
    const fast = await connectToDemo(cleanup, demo.port, '/ws/fast');
    const stream = await openEvents(cleanup, demo.port);
    expect(stream.status).toBe(200);
    expect(stream.type).toMatch(/^text\/event-stream/);

    const hello = JSON.parse((await stream.next('hello')).data) as {
      routes: Record<string, { interval: number; timeout: number; closeTimeout: number }>;
      snapshotPeriodMs: number;
      history: { at: number; connections: Record<string, number>; terminations: Record<string, number> }[];
    };
    expect(hello.routes).toEqual({ '/ws/echo': { interval: 30_000, timeout: 10_000, closeTimeout: 5000 }, '/ws/fast': FAST });
    expect(hello.snapshotPeriodMs).toBe(SNAPSHOT_PERIOD_MS);
    expect(Array.isArray(hello.history)).toBe(true);

    const first = JSON.parse((await stream.next('stats')).data) as { at: number; stats: HeartbeatStats };
    expect(first.stats.routes['/ws/fast']?.connections).toBeGreaterThanOrEqual(1);
    expect(first.stats.terminations).toEqual(expect.objectContaining({ timeout: expect.any(Number) }));
    const second = JSON.parse((await stream.next('stats')).data) as { at: number; stats: HeartbeatStats };
    const third = JSON.parse((await stream.next('stats')).data) as { at: number; stats: HeartbeatStats };
    // The first comes at once; after it, one every period (by the server's clock; a timer is never
    // early, and may be late on a busy machine, but by far less than a period).
    expect(third.at - second.at).toBeGreaterThanOrEqual(SNAPSHOT_PERIOD_MS - EPSILON);
    expect(third.at - second.at).toBeLessThanOrEqual(SNAPSHOT_PERIOD_MS + ms(250));
    fast.terminate();
  });

  test.each(['/ws/echo', '/ws/fast'])('%s echoes text as text and binary as binary', async (path) => {
    const ws = await connectToDemo(cleanup, demo.port, path);

    const text = nextMessage(ws);
    ws.send('hello, ünïcode');
    expect(await text).toEqual({ data: Buffer.from('hello, ünïcode'), isBinary: false });

    const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff]);
    const binary = nextMessage(ws);
    ws.send(bytes);
    expect(await binary).toEqual({ data: bytes, isBinary: true });
  });

  test('GET /stats is the engine stats as JSON, with both routes in it', async () => {
    const echo = await connectToDemo(cleanup, demo.port, '/ws/echo');
    const fast = await connectToDemo(cleanup, demo.port, '/ws/fast');

    const stats = await get(demo.port, '/stats');
    expect(stats.status).toBe(200);
    expect(stats.type).toMatch(/^application\/json/);
    const body = JSON.parse(stats.body) as HeartbeatStats;
    expect(Object.keys(body.routes)).toEqual(expect.arrayContaining(['/ws/echo', '/ws/fast']));
    expect(body.routes['/ws/echo']?.connections).toBeGreaterThanOrEqual(1);
    expect(body.routes['/ws/fast']?.connections).toBeGreaterThanOrEqual(1);

    echo.terminate();
    fast.terminate();
  });

  test('/ws/fast terminates a peer that never answers pings within interval + timeout, and keeps a normal one', async () => {
    const silent = await connectToDemo(cleanup, demo.port, '/ws/fast', { autoPong: false });
    const opened = now();
    const normal = await connectToDemo(cleanup, demo.port, '/ws/fast');
    let silentPinged = 0;
    let normalPinged = 0;
    silent.on('ping', () => silentPinged++);
    normal.on('ping', () => normalPinged++);
    let normalClosed = false;
    normal.on('close', () => (normalClosed = true));

    const { code, at } = await closed(silent);
    expect(code).toBe(1006);
    expect(silentPinged).toBeGreaterThanOrEqual(1);
    expect(at - opened).toBeLessThanOrEqual(FAST.interval + FAST.timeout + ms(250));
    const stats = JSON.parse((await get(demo.port, '/stats')).body) as HeartbeatStats;
    expect(stats.routes['/ws/fast']?.terminations.timeout).toBeGreaterThanOrEqual(1);

    // The normal client answers its pings (ws does it by itself) and outlives two more judgements.
    const until = opened + 2 * FAST.interval + FAST.timeout + ms(250);
    await waitFor(() => now() >= until || normalClosed, until - now() + ms(1000), 'time to pass');
    expect(normalClosed).toBe(false);
    expect(normal.readyState).toBe(WebSocket.OPEN);
    expect(normalPinged).toBeGreaterThanOrEqual(2);
  });

  test('SIGTERM closes every connection with 1001 and the process exits by itself with code 0', async () => {
    const own = await startDemo(cleanup);
    const echo = await connectToDemo(cleanup, own.port, '/ws/echo');
    const fast = await connectToDemo(cleanup, own.port, '/ws/fast');
    await silentPeer(own.port, '/ws/fast');
    const echoClosed = closed(echo);
    const fastClosed = closed(fast);

    const signalled = now();
    const exit = await terminateDemo(own);

    expect(exit).toEqual({ code: 0, signal: null });
    expect(now() - signalled).toBeLessThanOrEqual(EXIT_BOUND);
    expect((await echoClosed).code).toBe(1001);
    expect((await fastClosed).code).toBe(1001);
  });

  test('SIGTERM with an /events stream open: the stream ends and the process still exits by itself with code 0', async () => {
    const own = await startDemo(cleanup);
    const stream = await openEvents(cleanup, own.port);
    await stream.next('stats');
    const fast = await connectToDemo(cleanup, own.port, '/ws/fast');

    const signalled = now();
    const exit = await terminateDemo(own);

    expect(exit).toEqual({ code: 0, signal: null });
    expect(now() - signalled).toBeLessThanOrEqual(EXIT_BOUND);
    await waitFor(() => stream.ended, ms(1000), 'the event stream to end');
    expect(fast.readyState).toBe(WebSocket.CLOSED);
  });
});
