/**
 * The wire protocol, and the proof that both sides speak it: a real server engine (UpgradeRouter
 * with appHeartbeat, on 127.0.0.1) and a real HeartbeatClient (with `ws`), each using
 * @ws-heartbeat/protocol, agree on every message it defines.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { UpgradeRouter } from '@ws-heartbeat/core';
import { HeartbeatClient, retryHint, type ClientEventMap } from '@ws-heartbeat/client';
import {
  APP_PING,
  CLOSE_GOING_AWAY,
  CLOSE_INTERNAL_ERROR,
  CLOSE_SERVICE_RESTART,
  SHUTDOWN_REASON,
  formatAppPong,
  formatRetryHint,
  parseAppPong,
  parseRetryHint,
  shutdownClose,
} from '@ws-heartbeat/protocol';
import { useCleanup } from '../../../test/helpers/cleanup';
import { NEVER, ms, waitFor } from '../../../test/helpers/time';

const cleanup = useCleanup();

describe('the protocol on its own', () => {
  test('a pong it formats parses back to the same settings; other messages are not pongs', () => {
    for (const settings of [
      { interval: 30_000, timeout: 10_000 },
      { interval: 1.5, timeout: 2 ** 31 - 1 },
    ]) {
      expect(parseAppPong(formatAppPong(settings))).toEqual(settings);
      expect(JSON.parse(formatAppPong(settings))).toEqual({ type: 'pong', ...settings });
    }
    expect(parseAppPong('{"type":"pong"}')).toBeUndefined();
    for (const other of [APP_PING, '{"type":"pong"', '{"type":"pongs"}', '{"kind":"pong","interval":1,"timeout":2}', 'hello', 42, Buffer.from(formatAppPong({ interval: 1, timeout: 2 }))]) {
      expect(parseAppPong(other)).toBe(false);
    }
  });

  test('a retry hint it formats parses back on 1001 and 1012 only; a plain shutdown carries none', () => {
    expect(shutdownClose(2_500)).toEqual({ code: CLOSE_SERVICE_RESTART, reason: formatRetryHint(2_500) });
    expect(parseRetryHint(CLOSE_SERVICE_RESTART, formatRetryHint(2_500))).toBe(2_500);
    expect(parseRetryHint(CLOSE_GOING_AWAY, formatRetryHint(7))).toBe(7);
    expect(parseRetryHint(1000, formatRetryHint(7))).toBeUndefined();
    expect(parseRetryHint(CLOSE_INTERNAL_ERROR, formatRetryHint(7))).toBeUndefined();
    expect(shutdownClose()).toEqual({ code: CLOSE_GOING_AWAY, reason: SHUTDOWN_REASON });
    expect(parseRetryHint(CLOSE_GOING_AWAY, SHUTDOWN_REASON)).toBeUndefined();
    expect(retryHint(CLOSE_SERVICE_RESTART, formatRetryHint(2_500))).toBe(2_500);
  });
});

interface Served {
  url: string;
  router: UpgradeRouter;
  /** Messages the route's handler received. */
  delivered: string[];
}

/** A router with one appHeartbeat route (and one whose handler throws), on 127.0.0.1:0. */
async function serve(interval: number, timeout: number): Promise<Served> {
  const router = new UpgradeRouter({ heartbeat: { interval, timeout, appHeartbeat: true }, onError: () => {} });
  const delivered: string[] = [];
  router.route('/ws', {
    handler: (ws) => {
      ws.on('message', (data) => delivered.push(String(data)));
    },
  });
  router.route('/fails', {
    handler: () => {
      throw new Error('a handler bug');
    },
  });
  const server = http.createServer();
  router.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.defer(() => new Promise((resolve) => server.close(resolve)));
  cleanup.defer(() => router.close());
  const { port } = server.address() as AddressInfo;
  return { url: `ws://127.0.0.1:${port}`, router, delivered };
}

/** A client (no settings of its own: it asks the server) whose events are recorded by type. */
function connect(url: string): { client: HeartbeatClient; events: { [K in keyof ClientEventMap]?: Array<ClientEventMap[K]> } } {
  const client = new HeartbeatClient(url, { WebSocket: WebSocket as never, reconnect: { minDelay: NEVER, maxDelay: NEVER } });
  cleanup.defer(() => client.close());
  const events: { [K in keyof ClientEventMap]?: Array<ClientEventMap[K]> } = {};
  const record = <K extends keyof ClientEventMap>(type: K): void => {
    client.on(type, (event) => {
      ((events[type] ??= []) as Array<ClientEventMap[K]>).push(event);
    });
  };
  for (const type of ['open', 'message', 'close', 'heartbeat', 'reconnecting'] as const) record(type);
  return { client, events };
}

describe('the engine and the client agree on every message', () => {
  test("the client's ping is answered by the engine and never reaches the handler; the engine's pong gives the client the route's settings", async () => {
    const interval = ms(4_000);
    const timeout = ms(3_000);
    const served = await serve(interval, timeout);
    const { client, events } = connect(`${served.url}/ws`);
    await waitFor(() => (events.heartbeat?.length ?? 0) > 0, ms(3_000), 'the first heartbeat answer');
    expect(events.heartbeat![0]!.server).toEqual({ interval, timeout });
    // The client now works to the server's settings, which only a parsed pong can have told it.
    expect(client.settings).toEqual({ pingInterval: interval, pongTimeout: timeout });
    client.send('an ordinary message');
    await waitFor(() => served.delivered.length > 0, ms(3_000), 'the ordinary message');
    expect(served.delivered).toEqual(['an ordinary message']);
    expect(events.message ?? []).toEqual([]);
    expect(served.router.heartbeat.stats().connections).toBe(1);
  });

  test('a restart with retryWithin closes with 1012 and a hint the client reads: it reconnects within the window, not after its own backoff', async () => {
    const served = await serve(ms(4_000), ms(3_000));
    const { events } = connect(`${served.url}/ws`);
    await waitFor(() => (events.open?.length ?? 0) > 0, ms(3_000), 'open');
    const window = ms(1_500);
    await served.router.close({ retryWithin: window });
    await waitFor(() => (events.reconnecting?.length ?? 0) > 0, ms(3_000), 'reconnecting');
    expect(events.close![0]).toMatchObject({ code: CLOSE_SERVICE_RESTART, reason: formatRetryHint(window), final: false });
    expect(events.reconnecting![0]).toMatchObject({ attempt: 1, hinted: true });
    expect(events.reconnecting![0]!.delay).toBeLessThanOrEqual(window);
  });

  test('a shutdown without a hint closes with 1001 and the plain reason, and the client falls back to its own backoff', async () => {
    const served = await serve(ms(4_000), ms(3_000));
    const { events } = connect(`${served.url}/ws`);
    await waitFor(() => (events.open?.length ?? 0) > 0, ms(3_000), 'open');
    await served.router.close();
    await waitFor(() => (events.reconnecting?.length ?? 0) > 0, ms(3_000), 'reconnecting');
    expect(events.close![0]).toMatchObject({ code: CLOSE_GOING_AWAY, reason: SHUTDOWN_REASON, final: false });
    expect(events.reconnecting![0]).toMatchObject({ attempt: 1, hinted: false });
  });

  test('a handler that throws closes its connection with the internal-error code', async () => {
    const served = await serve(ms(4_000), ms(3_000));
    const { events } = connect(`${served.url}/fails`);
    await waitFor(() => (events.close?.length ?? 0) > 0, ms(3_000), 'close');
    expect(events.close![0]).toMatchObject({ code: CLOSE_INTERNAL_ERROR });
  });
});
