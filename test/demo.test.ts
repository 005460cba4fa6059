/**
 * The demo server that the README's first command starts (examples/server.mjs), run as users
 * run it: a child process on PORT=0, importing the built plugin from packages/fastify/dist (and
 * through it packages/core/dist).
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { HeartbeatStats } from '@ws-heartbeat/core';
import { ms, now, waitFor } from './helpers/time';

const ROOT = join(__dirname, '..');
const SERVER = join(ROOT, 'examples', 'server.mjs');
const URL_LINE = /http:\/\/127\.0\.0\.1:(\d+)/;

/** The /ws/fast route's settings, as examples/server.mjs declares them. */
const FAST = { interval: 1000, timeout: 500, closeTimeout: 1000 };

interface Demo {
  child: ChildProcessWithoutNullStreams;
  port: number;
  lines: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcessWithoutNullStreams>();
const clients = new Set<WebSocket>();
const sockets = new Set<net.Socket>();

/** Starts the demo with PORT=0 and the default HOST; resolves once it printed its URL line. */
function startDemo(): Promise<Demo> {
  for (const name of ['core', 'fastify']) {
    if (!existsSync(join(ROOT, 'packages', name, 'dist', 'index.js'))) {
      throw new Error(`packages/${name}/dist is missing: build the packages first (\`pnpm run build\`)`);
    }
  }
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0' };
  delete env.HOST;
  const child = spawn(process.execPath, [SERVER], { cwd: ROOT, env });
  children.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  const lines: string[] = [];
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        const match = URL_LINE.exec(line);
        if (match) resolve({ child, port: Number(match[1]), lines, exited });
      }
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`demo exited (code ${code}, signal ${signal}) before printing its URL:\n${stderr}`)),
    );
    setTimeout(() => reject(new Error(`demo printed no URL within ${ms(10_000)} ms:\n${lines.join('\n')}\n${stderr}`)), ms(10_000)).unref();
  });
}

function connect(port: number, path: string, options?: WebSocket.ClientOptions): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, options);
  clients.add(ws);
  ws.on('close', () => clients.delete(ws));
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

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
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
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

  beforeAll(async () => {
    demo = await startDemo();
  });

  afterEach(() => {
    for (const ws of clients) ws.terminate();
    for (const socket of sockets) socket.destroy();
  });

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await waitFor(() => children.size === 0, ms(5000), 'the demo processes to exit');
  });

  test('prints exactly one line with its URL, on the real port when PORT=0', () => {
    const urlLines = demo.lines.filter((line) => line.includes('http://'));
    expect(urlLines).toHaveLength(1);
    expect(urlLines[0]).toMatch(/http:\/\/127\.0\.0\.1:[1-9]\d*(\s|$)/);
    expect(demo.port).toBeGreaterThan(0);
  });

  test('GET / is a text page naming the routes; other paths are 404', async () => {
    const home = await get(demo.port, '/');
    expect(home.status).toBe(200);
    expect(home.type).toMatch(/^text\/plain/);
    for (const path of ['/ws/echo', '/ws/fast', '/stats']) expect(home.body).toContain(path);

    expect((await get(demo.port, '/nothing-here')).status).toBe(404);
  });

  test.each(['/ws/echo', '/ws/fast'])('%s echoes text as text and binary as binary', async (path) => {
    const ws = await connect(demo.port, path);

    const text = nextMessage(ws);
    ws.send('hello, ünïcode');
    expect(await text).toEqual({ data: Buffer.from('hello, ünïcode'), isBinary: false });

    const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff]);
    const binary = nextMessage(ws);
    ws.send(bytes);
    expect(await binary).toEqual({ data: bytes, isBinary: true });
  });

  test('GET /stats is the engine stats as JSON, with both routes in it', async () => {
    const echo = await connect(demo.port, '/ws/echo');
    const fast = await connect(demo.port, '/ws/fast');

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
    const silent = await connect(demo.port, '/ws/fast', { autoPong: false });
    const opened = now();
    const normal = await connect(demo.port, '/ws/fast');
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
    const own = await startDemo();
    const echo = await connect(own.port, '/ws/echo');
    const fast = await connect(own.port, '/ws/fast');
    await silentPeer(own.port, '/ws/fast');
    const echoClosed = closed(echo);
    const fastClosed = closed(fast);

    const signalled = now();
    own.child.kill('SIGTERM');
    const exit = await Promise.race([
      own.exited,
      new Promise<'still running'>((resolve) => setTimeout(resolve, FAST.closeTimeout + ms(1000), 'still running')),
    ]);

    expect(exit).toEqual({ code: 0, signal: null });
    expect(now() - signalled).toBeLessThanOrEqual(FAST.closeTimeout + ms(1000));
    expect((await echoClosed).code).toBe(1001);
    expect((await fastClosed).code).toBe(1001);
  });
});
