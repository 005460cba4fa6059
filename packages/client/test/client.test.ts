/**
 * The client against a real server engine (UpgradeRouter with appHeartbeat), with `ws` as its
 * WebSocket. Servers that must vanish (SIGSTOP) or die (SIGKILL), and the client that must sleep,
 * run in child processes (fixtures/). Every bound goes through ms(), widened by WSH_TIME_SCALE.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { UpgradeRouter } from '@ws-heartbeat/core';
import { HeartbeatClient, backoffDelay, retryHint, type ClientEventMap, type ClientEventType } from '@ws-heartbeat/client';
import { childMessage, forkChild, type Child } from '../../../test/helpers/child';
import { useCleanup } from '../../../test/helpers/cleanup';
import { EPSILON, NEVER, SLOP, ms, now, sleep, waitFor } from '../../../test/helpers/time';

const FIXTURES = path.join(__dirname, 'fixtures');

const cleanup = useCleanup();

type ServerMessage = { type: 'ready'; port: number };
type SleeperMessage = { type: 'event'; event: ClientEventType; detail: unknown; at: number };

/** A server process on `port` (0: any); resolves with it and its port once it listens. */
async function startServer(port = 0): Promise<{ child: Child<ServerMessage>; port: number }> {
  const child = forkChild<ServerMessage>(cleanup, path.join(FIXTURES, 'server.ts'), { args: [String(port)] });
  const ready = await childMessage(child, 'ready', ms(20_000));
  return { child, port: ready.message.port };
}

/** A client whose every event is recorded with the time it arrived. */
function record(client: HeartbeatClient): Array<{ type: ClientEventType; event: ClientEventMap[ClientEventType]; at: number }> {
  const events: Array<{ type: ClientEventType; event: ClientEventMap[ClientEventType]; at: number }> = [];
  for (const type of ['open', 'message', 'close', 'heartbeat', 'dead', 'reconnecting', 'error'] as const) {
    client.on(type, (event) => events.push({ type, event, at: now() }));
  }
  return events;
}

function newClient(url: string, options: ConstructorParameters<typeof HeartbeatClient>[1] = {}): HeartbeatClient {
  const client = new HeartbeatClient(url, { WebSocket: WebSocket as never, ...options });
  cleanup.defer(() => client.close());
  return client;
}

/** The process state letter in /proc/<pid>/stat: 'T' once it is stopped. */
function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

describe('HeartbeatClient against the server engine', () => {
  test('a server that vanishes (SIGSTOP) is declared dead within pingInterval + pongTimeout; the client reconnects to the server that comes back, and delivers its queue in order', async () => {
    const PING = ms(300);
    const PONG = ms(200);
    const first = await startServer();
    const client = newClient(`ws://127.0.0.1:${first.port}/ws`, {
      pingInterval: PING,
      pongTimeout: PONG,
      queueSize: 10,
      reconnect: { minDelay: ms(50), maxDelay: ms(200) },
    });
    const events = record(client);
    await waitFor(() => events.filter((e) => e.type === 'heartbeat').length >= 2, 4 * PING + PONG, 'two heartbeats');
    for (const { event } of events.filter((e) => e.type === 'heartbeat')) {
      expect((event as ClientEventMap['heartbeat']).server).toEqual({ interval: 30_000, timeout: 10_000 });
    }
    expect(events.some((e) => e.type === 'message')).toBe(false); // the answers are not application messages

    first.child.process.kill('SIGSTOP');
    const lastAnswer = Math.max(...events.filter((e) => e.type === 'heartbeat' || e.type === 'open').map((e) => e.at));
    await waitFor(() => events.some((e) => e.type === 'dead'), PING + PONG + ms(1000), 'dead');
    const dead = events.find((e) => e.type === 'dead')!;
    expect((dead.event as ClientEventMap['dead']).reason).toBe('timeout');
    // Silent since its last answer, then pinged after PING of silence and judged PONG later.
    expect(dead.at - lastAnswer).toBeGreaterThanOrEqual(PING + PONG - EPSILON);
    expect(dead.at - lastAnswer).toBeLessThanOrEqual(PING + PONG + SLOP);
    await waitFor(() => events.some((e) => e.type === 'reconnecting'), ms(500), 'reconnecting');
    const closeEvent = events.find((e) => e.type === 'close')!.event as ClientEventMap['close'];
    expect(closeEvent).toMatchObject({ code: 1006, wasClean: false, final: false });

    // While it is away, messages wait in the queue.
    for (const text of ['one', 'two', 'three']) expect(client.send(text)).toBe(true);
    expect(client.queued).toBe(3);

    first.child.process.kill('SIGKILL');
    await first.child.exited;
    await startServer(first.port);
    await waitFor(() => events.filter((e) => e.type === 'open').length >= 2, ms(5000), 'the second open');
    await waitFor(() => events.filter((e) => e.type === 'message').length >= 3, ms(2000), 'the echoes of the queue');
    const echoes = events.filter((e) => e.type === 'message').map((e) => String((e.event as ClientEventMap['message']).data));
    expect(echoes).toEqual(['one', 'two', 'three']);
    expect(client.queued).toBe(0);
    expect(client.readyState).toBe(WebSocket.OPEN);
  });

  test('a server process that dies is a lost connection: dead at once, then reconnecting with backoff while it is down', async () => {
    const server = await startServer();
    const client = newClient(`ws://127.0.0.1:${server.port}/ws`, { reconnect: { minDelay: ms(100), maxDelay: ms(400) } });
    const events = record(client);
    await waitFor(() => events.some((e) => e.type === 'open'), ms(2000), 'open');

    const killed = now();
    server.child.process.kill('SIGKILL');
    await waitFor(() => events.filter((e) => e.type === 'reconnecting').length >= 3, ms(3000), 'three reconnect attempts');
    const dead = events.find((e) => e.type === 'dead')!;
    expect((dead.event as ClientEventMap['dead']).reason).toBe('connection-lost');
    expect(dead.at - killed).toBeLessThanOrEqual(SLOP);
    // More attempts may have come while this test looked: the first three are checked.
    const reconnecting = events.filter((e) => e.type === 'reconnecting').slice(0, 3);
    const attempts = reconnecting.map((e) => e.event as ClientEventMap['reconnecting']);
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    // Full jitter: each delay lies in [0, min(maxDelay, minDelay × 2^(attempt-1))].
    attempts.forEach((a, i) => {
      expect(a.hinted).toBe(false);
      expect(a.delay).toBeLessThanOrEqual(Math.min(ms(400), ms(100) * 2 ** i));
    });
    // Each attempt waits out its delay: the next attempt (refused at once) is announced no sooner.
    for (let i = 0; i < 2; i++) {
      expect(reconnecting[i + 1]!.at - reconnecting[i]!.at).toBeGreaterThanOrEqual(attempts[i]!.delay - EPSILON);
    }
    expect(client.readyState).toBe(WebSocket.CONNECTING);
  });

  test('close() ends for good: no reconnect, a final close event, and nothing left running', async () => {
    const server = await startServer();
    const client = newClient(`ws://127.0.0.1:${server.port}/ws`, { queueSize: 5 });
    const events = record(client);
    await waitFor(() => events.some((e) => e.type === 'open'), ms(2000), 'open');
    client.close();
    await waitFor(() => events.some((e) => e.type === 'close'), ms(2000), 'close');
    expect(events.find((e) => e.type === 'close')!.event).toMatchObject({ code: 1000, wasClean: true, final: true });
    await sleep(ms(300));
    expect(events.filter((e) => e.type === 'reconnecting' || e.type === 'dead')).toEqual([]);
    expect(client.readyState).toBe(WebSocket.CLOSED);
    expect(client.send('late')).toBe(false);
  });

  test('server-guided reconnect: 200 clients told "retry within 2000 ms" come back spread over that window, no 100 ms holding more than 15%', async () => {
    const WINDOW = 2000;
    const N = 200;
    const handler = (ws: WebSocket): void => void ws.on('message', (data) => ws.send(data));
    let router = new UpgradeRouter({ heartbeat: { appHeartbeat: true } });
    router.route('/ws', { handler });
    let server = http.createServer();
    router.attach(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    // Whichever router and server are up at the end (the clients, opened later, close first).
    cleanup.defer(async () => {
      await router.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    const opens: number[][] = [];
    const hints: ClientEventMap['reconnecting'][] = [];
    for (let i = 0; i < N; i++) {
      const times: number[] = [];
      opens.push(times);
      // Backoff steps far longer than the window: a client that came back early would stand out.
      const client = newClient(`ws://127.0.0.1:${port}/ws`, { reconnect: { minDelay: 10_000, maxDelay: 10_000 } });
      client.on('open', () => times.push(now()));
      client.on('reconnecting', (event) => hints.push(event));
    }
    await waitFor(() => opens.every((t) => t.length === 1), ms(10_000), 'every client to open');

    // The restart: close with the hint, and the same port serves again at once.
    const closedAt = now();
    await router.close({ retryWithin: WINDOW });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    router = new UpgradeRouter({ heartbeat: { appHeartbeat: true } });
    router.route('/ws', { handler });
    server = http.createServer();
    router.attach(server);
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const backAt = now();

    await waitFor(() => opens.every((t) => t.length === 2), WINDOW + ms(3000), 'every client to come back');
    expect(hints).toHaveLength(N);
    for (const hint of hints) {
      expect(hint.hinted).toBe(true);
      expect(hint.delay).toBeLessThanOrEqual(WINDOW);
    }
    const back = opens.map((t) => t[1]! - closedAt);
    expect(Math.max(...back)).toBeLessThanOrEqual(WINDOW + (backAt - closedAt) + SLOP);
    const perSlot = new Map<number, number>();
    for (const t of back) perSlot.set(Math.floor(t / 100), (perSlot.get(Math.floor(t / 100)) ?? 0) + 1);
    expect(Math.max(...perSlot.values())).toBeLessThanOrEqual(0.15 * N);
    // And they did spread: the window's second half got its share too.
    expect(back.filter((t) => t > WINDOW / 2).length).toBeGreaterThanOrEqual(N / 4);
  });

  test('a client whose timer fires late after a sleep (SIGSTOP with a probe out) does not declare a healthy server dead', async () => {
    const PING = ms(200);
    const PONG = ms(400);
    const server = await startServer();
    const sleeper = forkChild<SleeperMessage>(cleanup, path.join(FIXTURES, 'sleeper.ts'), {
      args: [`ws://127.0.0.1:${server.port}/ws`, String(PING), String(PONG), String(server.child.process.pid)],
    });
    const events: Array<{ event: ClientEventType; at: number }> = [];
    sleeper.process.on('message', (message: SleeperMessage) => {
      if (message.type === 'event') events.push({ event: message.event, at: message.at });
    });
    await waitFor(
      () => processState(sleeper.process.pid!) === 'T' && processState(server.child.process.pid!) === 'T',
      ms(5000),
      'the client to stop itself and the server with its second probe out',
    );
    expect(events.filter((e) => e.event === 'heartbeat')).toHaveLength(1);
    await sleep(ms(1500)); // far beyond pingInterval + pongTimeout
    sleeper.process.kill('SIGCONT');
    await sleep(ms(100));
    server.child.process.kill('SIGCONT');

    await waitFor(() => events.filter((e) => e.event === 'heartbeat').length >= 4, 4 * (PING + PONG) + ms(2000), 'heartbeats after waking');
    expect(events.filter((e) => e.event === 'dead' || e.event === 'close')).toEqual([]);
    expect(events.filter((e) => e.event === 'open')).toHaveLength(1);
  });
});

describe('HeartbeatClient settings, queue and retries', () => {
  /** An in-process server with appHeartbeat on the given interval and timeout; closed after the test. */
  async function localServer(heartbeat: { interval: number; timeout: number }, port = 0): Promise<{ port: number; close: () => Promise<void> }> {
    const router = new UpgradeRouter({ heartbeat: { ...heartbeat, appHeartbeat: true } });
    router.route('/ws', { handler: (ws) => void ws.on('message', (data) => ws.send(String(data))) });
    const server = http.createServer();
    router.attach(server);
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    let closed: Promise<void> | undefined;
    const close = (): Promise<void> =>
      (closed ??= Promise.all([router.close(), new Promise<void>((resolve) => server.close(() => resolve()))]).then(() => undefined));
    cleanup.defer(close);
    return { port: (server.address() as AddressInfo).port, close };
  }

  /** A port nothing listens on (it was free a moment ago). */
  async function freePort(): Promise<number> {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }

  test("without pingInterval and pongTimeout, the client asks at once and works to the server's interval and timeout", async () => {
    const INTERVAL = ms(300);
    const TIMEOUT = ms(200);
    const server = await localServer({ interval: INTERVAL, timeout: TIMEOUT });
    const client = newClient(`ws://127.0.0.1:${server.port}/ws`);
    const events = record(client);
    expect(client.settings).toEqual({ pingInterval: 30_000, pongTimeout: 10_000 });
    await waitFor(() => events.some((e) => e.type === 'heartbeat'), ms(2000), 'the first heartbeat');
    const opened = events.find((e) => e.type === 'open')!.at;
    const first = events.find((e) => e.type === 'heartbeat')!;
    expect(first.at - opened).toBeLessThanOrEqual(SLOP);
    expect((first.event as ClientEventMap['heartbeat']).server).toEqual({ interval: INTERVAL, timeout: TIMEOUT });
    expect(client.settings).toEqual({ pingInterval: INTERVAL, pongTimeout: TIMEOUT });
    // The next heartbeat goes out an interval of silence later, as the server's setting says.
    await waitFor(() => events.filter((e) => e.type === 'heartbeat').length >= 2, INTERVAL + ms(1000), 'the second heartbeat');
    const second = events.filter((e) => e.type === 'heartbeat')[1]!;
    expect(second.at - first.at).toBeGreaterThanOrEqual(INTERVAL - EPSILON);
    expect(second.at - first.at).toBeLessThanOrEqual(INTERVAL + SLOP);
  });

  test("the server's settings apply even when an application message answers the first heartbeat before the server's pong does", async () => {
    const INTERVAL = ms(300);
    const TIMEOUT = ms(200);
    const server = await localServer({ interval: INTERVAL, timeout: TIMEOUT });
    const client = newClient(`ws://127.0.0.1:${server.port}/ws`);
    const events = record(client);
    // Sent from 'open', before the first heartbeat: its echo is the first message back.
    client.on('open', () => client.send('first'));
    await waitFor(() => client.settings.pingInterval === INTERVAL, ms(2000), "the server's settings");
    const learnt = now();
    expect(events.filter((e) => e.type === 'message').map((e) => (e.event as ClientEventMap['message']).data)).toEqual(['first']);
    // The next heartbeat goes out an interval of silence later, not 30 s (the default) later.
    await waitFor(() => events.some((e) => e.type === 'heartbeat'), INTERVAL + ms(1000), 'a heartbeat at the server interval');
    expect(events.find((e) => e.type === 'heartbeat')!.at - learnt).toBeLessThanOrEqual(INTERVAL + SLOP);
  });

  test('the queue holds queueSize messages while no server listens, refuses the next, and delivers them in order once one does', async () => {
    const port = await freePort();
    const client = newClient(`ws://127.0.0.1:${port}/ws`, { queueSize: 2, reconnect: { minDelay: ms(50), maxDelay: ms(100) } });
    const events = record(client);
    expect(client.send('first')).toBe(true);
    expect(client.send('second')).toBe(true);
    expect(client.send('third')).toBe(false);
    expect(client.queued).toBe(2);
    await waitFor(() => events.some((e) => e.type === 'reconnecting'), ms(2000), 'a failed attempt');
    await localServer({ interval: NEVER, timeout: NEVER }, port);
    await waitFor(() => events.filter((e) => e.type === 'message').length >= 2, ms(3000), 'the queue to be echoed');
    expect(events.filter((e) => e.type === 'message').map((e) => (e.event as ClientEventMap['message']).data)).toEqual(['first', 'second']);
  });

  test('after maxRetries failed retries the client gives up: a final close, readyState CLOSED, no more attempts', async () => {
    const port = await freePort();
    const client = newClient(`ws://127.0.0.1:${port}/ws`, { reconnect: { minDelay: ms(20), maxDelay: ms(40), maxRetries: 2 } });
    const events = record(client);
    await waitFor(() => events.some((e) => e.type === 'close' && (e.event as ClientEventMap['close']).final), ms(3000), 'the final close');
    expect(events.filter((e) => e.type === 'reconnecting').map((e) => (e.event as ClientEventMap['reconnecting']).attempt)).toEqual([1, 2]);
    expect(events.filter((e) => e.type === 'close').map((e) => (e.event as ClientEventMap['close']).final)).toEqual([false, false, true]);
    expect(client.readyState).toBe(WebSocket.CLOSED);
    await sleep(ms(200));
    expect(events.filter((e) => e.type === 'reconnecting')).toHaveLength(2);
  });

  test('a server that accepts TCP but never answers the upgrade (hung, or behind a proxy): each attempt is given up after connectTimeout, closed, and retried with backoff; the client opens once a server answers', async () => {
    const CONNECT_TIMEOUT = ms(200);
    const accepted: Array<{ at: number; closedAt: number }> = [];
    const hung = net.createServer((socket) => {
      const entry = { at: now(), closedAt: Number.NaN };
      accepted.push(entry);
      socket.on('error', () => {});
      socket.on('close', () => (entry.closedAt = now()));
      socket.resume(); // reads the upgrade request (and so sees the client's FIN), answers nothing
    });
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    const { port } = hung.address() as AddressInfo;
    cleanup.defer(() => new Promise<void>((resolve) => hung.close(() => resolve())));
    const client = newClient(`ws://127.0.0.1:${port}/ws`, { connectTimeout: CONNECT_TIMEOUT, reconnect: { minDelay: ms(20), maxDelay: ms(40) } });
    const events = record(client);
    await waitFor(() => events.filter((e) => e.type === 'reconnecting').length >= 3, ms(3000), 'three attempts given up');

    const closes = events.filter((e) => e.type === 'close').map((e) => e.event as ClientEventMap['close']);
    expect(closes.slice(0, 3).map((c) => [c.code, c.reason, c.final])).toEqual(Array(3).fill([1006, 'connect timeout', false]));
    expect(events.filter((e) => e.type === 'reconnecting').map((e) => (e.event as ClientEventMap['reconnecting']).attempt).slice(0, 3)).toEqual([1, 2, 3]);
    expect(String((events.find((e) => e.type === 'error')!.event as ClientEventMap['error']).error)).toMatch(/did not open within \d+ ms \(connectTimeout\)/);
    // Each attempt was given up after connectTimeout, not before, and its socket closed by the client.
    await waitFor(() => accepted.slice(0, 3).every((a) => !Number.isNaN(a.closedAt)), ms(1000), 'the given-up sockets closed');
    for (const { at, closedAt } of accepted.slice(0, 3)) {
      expect(closedAt - at).toBeGreaterThanOrEqual(CONNECT_TIMEOUT - ms(20)); // the TCP connect itself comes first
      expect(closedAt - at).toBeLessThanOrEqual(CONNECT_TIMEOUT + SLOP);
    }

    await new Promise<void>((resolve) => hung.close(() => resolve())); // once the attempt it holds is given up too
    await localServer({ interval: NEVER, timeout: NEVER }, port);
    await waitFor(() => events.some((e) => e.type === 'open'), ms(3000), 'open once a server answers');
  });

  test('a connection that stays open for resetAfter resets the backoff: the next loss starts again at attempt 1', async () => {
    const port = await freePort();
    const client = newClient(`ws://127.0.0.1:${port}/ws`, { pingInterval: NEVER, pongTimeout: NEVER, reconnect: { minDelay: ms(20), maxDelay: ms(40), resetAfter: ms(300) } });
    const events = record(client);
    const attempts = (): number[] => events.filter((e) => e.type === 'reconnecting').map((e) => (e.event as ClientEventMap['reconnecting']).attempt);
    await waitFor(() => attempts().length >= 3, ms(3000), 'three failed attempts');
    let server = await localServer({ interval: NEVER, timeout: NEVER }, port);
    await waitFor(() => events.some((e) => e.type === 'open'), ms(2000), 'open');

    // Lost before resetAfter: the backoff goes on counting.
    const before = attempts().length;
    await server.close();
    await waitFor(() => attempts().length > before, ms(2000), 'the next attempt');
    expect(attempts()[before]).toBe(before + 1);

    server = await localServer({ interval: NEVER, timeout: NEVER }, port);
    await waitFor(() => events.filter((e) => e.type === 'open').length >= 2, ms(2000), 'the second open');
    await sleep(ms(400));
    const after = attempts().length;
    await server.close();
    await waitFor(() => attempts().length > after, ms(2000), 'the attempt after a long connection');
    expect(attempts()[after]).toBe(1);
  });
});

describe('pure parts', () => {
  test('backoffDelay: full jitter from 0 to min(maxDelay, minDelay × factor^(attempt-1))', () => {
    const options = { minDelay: 100, maxDelay: 1000, factor: 3, maxRetries: Infinity, resetAfter: 1 };
    expect(backoffDelay(1, options, () => 0.999999)).toBeCloseTo(100, 3);
    expect(backoffDelay(2, options, () => 0.5)).toBe(150);
    expect(backoffDelay(3, options, () => 1)).toBe(900);
    expect(backoffDelay(9, options, () => 1)).toBe(1000);
    expect(backoffDelay(4, options, () => 0)).toBe(0);
  });

  test('retryHint: read from 1001 and 1012 closes whose reason names a window, else nothing', () => {
    expect(retryHint(1012, 'Server restarting, retry within 2000 ms')).toBe(2000);
    expect(retryHint(1001, 'retry within 15 ms')).toBe(15);
    expect(retryHint(1000, 'Server restarting, retry within 2000 ms')).toBeUndefined();
    expect(retryHint(1012, 'Server restarting')).toBeUndefined();
  });

  test('options are checked: a TypeError names the option and the value', () => {
    const WS = WebSocket as never;
    expect(() => new HeartbeatClient('ws://127.0.0.1:1/', { WebSocket: WS, pingInterval: -1 })).toThrow('The "pingInterval" option must be a positive number: got -1');
    expect(() => new HeartbeatClient('ws://127.0.0.1:1/', { WebSocket: WS, reconnect: { factor: 0.5 } })).toThrow('"reconnect.factor"');
    expect(() => new HeartbeatClient('ws://127.0.0.1:1/', { WebSocket: WS, queueSize: 1.5 })).toThrow('"queueSize"');
    expect(() => new HeartbeatClient('ws://127.0.0.1:1/', { WebSocket: WS, connectTimeout: 0 })).toThrow('The "connectTimeout" option must be a positive number: got 0');
    expect(() => new HeartbeatClient('ws://127.0.0.1:1/', { WebSocket: undefined })).toThrow('No WebSocket constructor');
  });
});
