/**
 * Pieces shared by the adapter suites (packages/fastify/test, packages/express/test): bounded
 * waits, http servers that start and stop, and the per-route heartbeat check both adapters
 * must pass.
 */
import type { Server } from 'node:http';
import { WebSocket, type ClientOptions } from 'ws';
import type { Heartbeat, TerminateReason } from '@ws-heartbeat/core';
import type { TestClient } from './clients';
import { ms, now, sleep, waitFor } from './time';

/** Resolves once `server` listens; rejects with its 'error' (a port in use, say). */
export function listening(server: Server): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
}

/** Closes an http server that may still hold keep-alive connections; a closed one is left alone. */
export async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** `promise`, or a rejection naming `what` once `timeout` ms passed without it settling. */
export async function within<T>(promise: Promise<T>, timeout: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms waiting for ${what}`)), timeout);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** The first message a client receives, as text. */
export async function firstMessage(c: TestClient): Promise<string> {
  await waitFor(() => c.messages.length > 0 || c.closeInfo !== null, ms(2000), 'a message from the server');
  const first = c.messages[0];
  if (first === undefined) throw new Error(`closed with ${c.closeInfo?.code} before any message`);
  return first.data.toString();
}

/** What {@link expectRoutesKeepTheirOwnHeartbeat} needs from an adapter's test application. */
export interface TwoRouteApp {
  /** The adapter's engine. */
  heartbeat: Heartbeat;
  /** `ws://…` of a path. */
  url: (path: string) => string;
  /** Opens a client that the suite closes after the test. */
  client: (url: string, options?: ClientOptions) => Promise<TestClient>;
  /** The intervals the app's `/fast` and `/slow` routes were declared with; both with `timeout`. */
  fastInterval: number;
  slowInterval: number;
  timeout: number;
  /** Bounds of the suite: clock granularity and one tick plus slop. */
  epsilon: number;
  slop: number;
}

/**
 * The check every adapter passes: on an app with routes `/fast` and `/slow` (adapter defaults
 * set far away, so ignored route settings would show), each route pings its healthy peer at its
 * own rate and terminates its silent peer inside its own bound.
 */
export async function expectRoutesKeepTheirOwnHeartbeat(app: TwoRouteApp): Promise<void> {
  const { heartbeat, url, client, fastInterval, slowInterval, timeout, epsilon, slop } = app;
  const terminations: Array<{ route: string; reason: TerminateReason }> = [];
  heartbeat.on('terminate', (_ws, reason, route) => terminations.push({ route, reason }));

  const [fast, slow, silentFast, silentSlow] = await Promise.all([
    client(url('/fast')),
    client(url('/slow')),
    client(url('/fast'), { autoPong: false }),
    client(url('/slow'), { autoPong: false }),
  ]);

  // A silent peer's last frame is its handshake: the engine's t0 lies between the client's start
  // and its open (which this process may see late, when its event loop was busy).
  for (const [silent, interval] of [
    [silentFast!, fastInterval],
    [silentSlow!, slowInterval],
  ] as const) {
    const bound = interval + timeout;
    const { code, at } = await within(silent.closed, bound + ms(1000), 'the silent peer to be terminated');
    expect(code).toBe(1006);
    expect(at - silent.startedAt).toBeGreaterThanOrEqual(bound - epsilon);
    expect(at - silent.openedAt).toBeLessThanOrEqual(bound + slop);
    expect(silent.pings).toBe(1);
  }
  expect(terminations).toEqual(
    expect.arrayContaining([
      { route: '/fast', reason: 'timeout' },
      { route: '/slow', reason: 'timeout' },
    ]),
  );

  // Healthy peers: pings counted over the same window from each one's open.
  const window = ms(2000);
  const openedLast = Math.max(fast!.openedAt, slow!.openedAt);
  await sleep(Math.max(0, openedLast + window - now()));
  const pingsIn = (c: TestClient) => c.pingTimes.filter((t) => t - c.openedAt <= window).length;
  const fastExpected = window / fastInterval;
  const slowExpected = window / slowInterval;
  expect(pingsIn(fast!)).toBeGreaterThanOrEqual(0.7 * fastExpected);
  expect(pingsIn(fast!)).toBeLessThanOrEqual(1.3 * fastExpected);
  expect(pingsIn(slow!)).toBeGreaterThanOrEqual(0.7 * slowExpected);
  expect(pingsIn(slow!)).toBeLessThanOrEqual(1.3 * slowExpected);
  expect(fast!.ws.readyState).toBe(WebSocket.OPEN);
  expect(slow!.ws.readyState).toBe(WebSocket.OPEN);
  expect(terminations).toHaveLength(2);
}
