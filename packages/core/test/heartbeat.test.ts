/**
 * The engine on real sockets: `ws` clients and hand-made raw TCP peers against a plain
 * `node:http` server whose upgrades a `Heartbeat` tracks (no UpgradeRouter here). Peers that
 * must not share the server's event loop live in child processes (fixtures/).
 *
 * Every bound is written with `ms()`, so WSH_TIME_SCALE widens them on a slow machine.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { Heartbeat, TICK_MS, type HeartbeatOptions, type HeartbeatStats, type OverloadInfo } from '@ws-heartbeat/core';
import { shutdownClose } from '@ws-heartbeat/protocol';
import { childMessage, expectExitByItself, forkChild, type Child } from '../../../test/helpers/child';
import { useCleanup } from '../../../test/helpers/cleanup';
import { OPCODE, closePayload, maskedFrame, openClientFor, openClientsFor, rawUpgradeFor, startEchoServer, type EchoServerOptions, type EchoServer, type TestClient } from '../../../test/helpers/clients';
import { CLOSE_TIMEOUT, EPSILON, INTERVAL, NEVER, SLOP, TIMEOUT, busyWait, ms, now, sleep, waitFor } from '../../../test/helpers/time';
import type { ShutdownChildConfig, ShutdownChildMessage } from './fixtures/shutdown-child';

const MiB = 1024 * 1024;

const FIXTURES = path.join(__dirname, 'fixtures');
/** A `ws` client in a process of its own that can read at a set rate (the fault suite's transfer peer). */
const TRANSFER_PEER = path.join(__dirname, '../../../test/faults/peers/transfer-peer.js');
/** What the transfer peer says over IPC (see its header). */
type ReaderMessage = { type: 'open'; port: number } | { type: 'message'; length: number; digest: string; at: number } | { type: 'read'; bytes: number; at: number } | { type: 'ping'; at: number } | { type: 'closed'; code: number; at: number };

const sha1 = (bytes: Buffer): string => createHash('sha1').update(bytes).digest('hex');

const cleanup = useCleanup();

/** An echo server (clients.ts) that the test's cleanup closes. */
async function echoServer(options?: EchoServerOptions): Promise<EchoServer> {
  return cleanup.add(await startEchoServer(options));
}

// ---- child processes -------------------------------------------------------------------

interface StallReport {
  type: 'report';
  clients: Array<{ id: string; pings: number; open: boolean; closeCode: number | null; slowestAnswer: number }>;
}
type StallChildMessage = { type: 'ready' } | { type: 'error'; message: string } | StallReport;

async function stallReport(child: Child<StallChildMessage>): Promise<StallReport> {
  const from = child.messages.length;
  child.process.send({ type: 'report' });
  return (await childMessage(child, 'report', ms(2000), from)).message;
}

// ---- tests -------------------------------------------------------------------------------

describe('Heartbeat on real sockets', () => {
  test('healthy idle peers survive 10 intervals and are pinged about once per interval', async () => {
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT } });
    const clients = await openClientsFor(cleanup, srv.url(), 5);
    await srv.waitForConnections(5);
    const firstTracked = Math.min(...srv.connections.map((c) => c.trackedAt));

    await sleep(10 * INTERVAL);

    // A ping goes out an interval (± one tick) after the previous frame: at most one per interval.
    const atMost = Math.floor((now() - firstTracked) / (INTERVAL - TICK_MS));
    expect(srv.terminations).toEqual([]);
    for (const client of clients) {
      expect(client.ws.readyState).toBe(WebSocket.OPEN);
      expect(client.closeInfo).toBeNull();
      expect(client.pings).toBeGreaterThanOrEqual(8);
      expect(client.pings).toBeLessThanOrEqual(atMost);
    }
    expect(srv.hb?.size).toBe(5);
  });

  test('a peer that answers nothing is terminated interval + timeout after its last frame, not before', async () => {
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT } });
    const client = await openClientFor(cleanup, srv.url('/?id=silent'), { autoPong: false });
    await srv.waitForConnections(1);
    const conn = srv.byId('silent');

    await waitFor(
      () => conn.closed !== null && client.closeInfo !== null,
      INTERVAL + TIMEOUT + ms(1000),
      'the silent peer to be closed',
    );

    // The silent peer's last frame is its handshake: t0 is the moment it was tracked.
    const t0 = conn.trackedAt;
    const bound = INTERVAL + TIMEOUT;
    expect(srv.terminations).toHaveLength(1);
    const [termination] = srv.terminations;
    expect(termination?.conn).toBe(conn);
    expect(termination?.reason).toBe('timeout');
    expect(termination?.route).toBe('default');
    const terminatedAfter = termination!.at - t0;
    expect(terminatedAfter).toBeGreaterThanOrEqual(bound - EPSILON);
    expect(terminatedAfter).toBeLessThanOrEqual(bound + SLOP);

    expect(client.closeInfo?.code).toBe(1006);
    const clientClosedAfter = client.closeInfo!.at - t0;
    expect(clientClosedAfter).toBeGreaterThanOrEqual(bound - EPSILON);
    expect(clientClosedAfter).toBeLessThanOrEqual(bound + SLOP);

    // It was given its chance (one ping), then the server-side ws emitted 'close'.
    expect(client.pings).toBe(1);
    expect(conn.closed!.at).toBeGreaterThanOrEqual(termination!.at);

    // The event says who it was and how long it had been silent; stats() counts the detection.
    const { info } = termination!;
    expect(info.remoteAddress).toBe('127.0.0.1');
    for (const figure of [info.silentMs, info.ageMs]) {
      expect(figure).toBeGreaterThanOrEqual(bound - EPSILON);
      expect(figure).toBeLessThanOrEqual(terminatedAfter + EPSILON);
    }
    const { detection } = srv.hb!.stats().routes.default!;
    expect(detection.count).toBe(1);
    expect(detection.max).toBe(info.silentMs);
    expect(detection.sum).toBe(info.silentMs);
  });

  test('an idle peer is pinged an interval after its last frame, within one tick', async () => {
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT } });
    const hb = srv.hb!;
    await openClientFor(cleanup, srv.url('/?id=idle'));
    await srv.waitForConnections(1);
    const conn = srv.byId('idle');
    // The last inbound frame: the handshake, then each pong (seen by a listener added after the engine's).
    const lastFrames: number[] = [conn.trackedAt];
    conn.ws.on('pong', () => lastFrames.push(now()));
    const gaps: number[] = [];
    hb.on('ping', (ws) => {
      if (ws === conn.ws) gaps.push(now() - lastFrames[lastFrames.length - 1]!);
    });

    await sleep(5 * INTERVAL);

    expect(gaps.length).toBeGreaterThanOrEqual(4);
    // The ping goes out in the tick that ends at or after t0 + interval (DESIGN: ± one tick), so
    // that the verdict falls due at exactly t0 + interval + timeout. Not the first: it may go to
    // a tick earlier in the spread window (the next test).
    expect(gaps[0]).toBeGreaterThanOrEqual(INTERVAL - INTERVAL / 4 - TICK_MS - EPSILON);
    for (const gap of gaps.slice(1)) {
      expect(gap).toBeGreaterThanOrEqual(INTERVAL - TICK_MS - EPSILON);
      expect(gap).toBeLessThanOrEqual(INTERVAL + SLOP);
    }
  });

  test('a healthy peer is pinged every interval, also when the timeout is longer than the interval', async () => {
    const interval = ms(50);
    const srv = await echoServer({ heartbeat: { interval, timeout: ms(300) } });
    const healthy = await openClientFor(cleanup, srv.url('/?id=healthy'));
    const window = ms(1500);
    await sleep(Math.max(0, healthy.openedAt + window - now()));
    // Each pong is the peer's last frame: the next ping goes out an interval after it.
    const pings = healthy.pingTimes.filter((t) => t - healthy.openedAt <= window).length;
    expect(pings).toBeGreaterThanOrEqual(0.7 * (window / interval));
    expect(pings).toBeLessThanOrEqual(1.3 * (window / interval));
    expect(srv.terminations).toEqual([]);
  });

  test('connections that arrive together get their first pings spread before their due time; a silent one still meets its bound', async () => {
    const interval = ms(400);
    const window = interval / 4; // the engine's spread window for this interval
    const srv = await echoServer({ heartbeat: { interval, timeout: TIMEOUT } });
    const hb = srv.hb!;
    const firstPing = new Map<unknown, number>();
    hb.on('ping', (ws) => {
      if (!firstPing.has(ws)) firstPing.set(ws, now());
    });
    await Promise.all([openClientsFor(cleanup, srv.url('/'), 200), openClientFor(cleanup, srv.url('/?id=silent'), { autoPong: false })]);
    await srv.waitForConnections(201);
    await waitFor(() => firstPing.size === 201, interval + ms(1000), 'every first ping');

    const offsets = srv.connections.map((c) => firstPing.get(c.ws)! - c.trackedAt);
    // Never earlier than the window, never later than the due time (plus timer slop) ...
    for (const offset of offsets) {
      expect(offset).toBeGreaterThanOrEqual(interval - TICK_MS - window - EPSILON);
      expect(offset).toBeLessThanOrEqual(interval + SLOP);
    }
    // ... and spread: a burst does not all land in its due tick.
    expect(Math.min(...offsets)).toBeLessThan(interval - window / 2);

    await waitFor(() => srv.terminations.length > 0, interval + TIMEOUT + ms(1000), 'the silent peer to be terminated');
    const silent = srv.byId('silent');
    const terminatedAfter = srv.terminations[0]!.at - silent.trackedAt;
    expect(srv.terminations.map((t) => t.conn?.id)).toEqual(['silent']);
    expect(terminatedAfter).toBeGreaterThanOrEqual(interval + TIMEOUT - EPSILON);
    expect(terminatedAfter).toBeLessThanOrEqual(interval + TIMEOUT + SLOP);
  });

  test('connections that arrive together are pinged in a few full ticks, not one by one in every tick of their window', async () => {
    const interval = ms(400);
    const srv = await echoServer({ heartbeat: { interval, timeout: TIMEOUT } });
    const firstPing = new Map<unknown, number>();
    srv.hb!.on('ping', (ws) => {
      if (!firstPing.has(ws)) firstPing.set(ws, now());
    });
    await openClientsFor(cleanup, srv.url('/'), 300);
    await srv.waitForConnections(300);
    await waitFor(() => firstPing.size === 300, interval + ms(1000), 'every first ping');
    // A tick writes its pings in one go: pings more than 2 ms apart are in different ticks.
    const times = [...firstPing.values()].sort((a, b) => a - b);
    let ticks = 1;
    for (let i = 1; i < times.length; i++) if (times[i]! - times[i - 1]! > 2) ticks += 1;
    // 300 connections fit in 3 ticks of 128. Spread one by one over the ticks of their windows
    // (20 or more), each tick would cost a wakeup for a few pings.
    expect(ticks).toBeLessThanOrEqual(12);
    expect(srv.terminations).toEqual([]);
  });

  test.each([true, false])('idleOnly %s: a connection keeps its tick, however late its answers come: with 7 ms of work on each ping (answers arrive ticks after theirs began), each of 4 peers is pinged once an interval over 12 rounds, without drifting later', async (idleOnly) => {
    const interval = ms(200);
    const srv = await echoServer({ heartbeat: { interval, timeout: ms(150), idleOnly } });
    const pings = new Map<unknown, number[]>();
    srv.hb!.on('ping', (ws) => {
      pings.set(ws, [...(pings.get(ws) ?? []), now()]);
      busyWait(7);
    });
    // Each sends a first message, as most clients do right after they connect.
    const clients = await openClientsFor(cleanup, srv.url('/'), 4);
    for (const client of clients) client.ws.send('hello');
    await srv.waitForConnections(4);
    await waitFor(() => pings.size === 4 && [...pings.values()].every((times) => times.length >= 12), 13 * interval + ms(2000), '12 pings of each peer');
    for (const times of pings.values()) {
      // Anchored to its answer, each round would start a tick or more later than the last
      // (≥ 5 ms a round); anchored to its tick, only a tick's own lateness moves a ping.
      const drift = (times[11]! - times[0]!) / 11 - interval;
      expect(drift).toBeLessThan(ms(2.5));
      expect(drift).toBeGreaterThan(-ms(2.5));
    }
    expect(srv.terminations).toEqual([]);
  });

  test('a peer that sends a message every interval/3 is never pinged; an idle peer on the same server is', async () => {
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT } });
    const chatty = await openClientFor(cleanup, srv.url('/?id=chatty'));
    const idle = await openClientFor(cleanup, srv.url('/?id=idle'));
    await srv.waitForConnections(2);

    const chatter = setInterval(() => chatty.ws.send('tick'), Math.floor(INTERVAL / 3));
    try {
      await sleep(10 * INTERVAL);
    } finally {
      clearInterval(chatter);
    }

    expect(srv.byId('chatty').messages.length).toBeGreaterThanOrEqual(20);
    expect(chatty.pings).toBe(0);
    expect(idle.pings).toBeGreaterThanOrEqual(8);
    expect(srv.terminations).toEqual([]);
  });

  // The router gives ws the same closeTimeout, so either timer may destroy the socket first; the
  // termination is counted as 'close-timeout' either way.
  test.each([
    ['the engine destroys it (ws waits 30 s)', NEVER],
    ['ws, given the same closeTimeout, destroys it', CLOSE_TIMEOUT],
  ])('a peer that sends a close frame and then nothing is destroyed at closeTimeout: %s', async (_who, wsCloseTimeout) => {
    const srv = await echoServer({
      heartbeat: { interval: NEVER, timeout: NEVER, closeTimeout: CLOSE_TIMEOUT },
      ws: { closeTimeout: wsCloseTimeout },
    });
    const raw = await rawUpgradeFor(cleanup, srv.port, '/?id=closer');
    await srv.waitForConnections(1);
    const conn = srv.byId('closer');
    let sawEnd = false;
    raw.socket.on('end', () => {
      sawEnd = true;
    });
    let rawClosed = false;
    raw.socket.on('close', () => {
      rawClosed = true;
    });
    // It reads (and ignores) what arrives, never answers, and never sends FIN (allowHalfOpen).
    raw.socket.on('data', () => {});
    raw.socket.resume();

    const sentAt = now();
    raw.send(OPCODE.close, closePayload(1000));

    await waitFor(() => conn.socketClosedAt !== null, CLOSE_TIMEOUT + ms(1000), 'the server to destroy the socket');

    // ws answered our close frame and sent its FIN, then waited for ours: CLOSING.
    expect(sawEnd).toBe(true);
    expect(srv.terminations).toHaveLength(1);
    const [termination] = srv.terminations;
    expect(termination?.conn).toBe(conn);
    expect(termination?.reason).toBe('close-timeout');
    for (const at of [termination!.at, conn.socketClosedAt!]) {
      expect(at - sentAt).toBeGreaterThanOrEqual(CLOSE_TIMEOUT - EPSILON);
      expect(at - sentAt).toBeLessThanOrEqual(CLOSE_TIMEOUT + ms(100));
    }
    expect(conn.closed).not.toBeNull();

    // The server's end is gone: what we send now is answered with a reset, and the next write fails.
    expect(rawClosed).toBe(false);
    const probe = setInterval(() => raw.send(OPCODE.ping), ms(20));
    try {
      await waitFor(() => rawClosed, ms(1000), 'the raw socket to be reset');
    } finally {
      clearInterval(probe);
    }
  });

  test('a peer that sends FIN while data is queued to it and never reads is destroyed at closeTimeout', async () => {
    const srv = await echoServer({
      heartbeat: { interval: NEVER, timeout: NEVER, closeTimeout: CLOSE_TIMEOUT },
      ws: { closeTimeout: 30_000 },
    });
    const raw = await rawUpgradeFor(cleanup, srv.port, '/?id=fin'); // paused: it never reads
    await srv.waitForConnections(1);
    const conn = srv.byId('fin');
    await fillQueue(conn.ws);
    expect(conn.ws.bufferedAmount).toBeGreaterThan(0);

    const finAt = now();
    raw.socket.end();

    await waitFor(() => conn.socketClosedAt !== null, CLOSE_TIMEOUT + ms(1000), 'the server to destroy the socket');
    expect(srv.terminations).toHaveLength(1);
    const [termination] = srv.terminations;
    expect(termination?.conn).toBe(conn);
    expect(termination?.reason).toBe('close-timeout');
    for (const at of [termination!.at, conn.socketClosedAt!]) {
      expect(at - finAt).toBeGreaterThanOrEqual(CLOSE_TIMEOUT - EPSILON);
      expect(at - finAt).toBeLessThanOrEqual(CLOSE_TIMEOUT + ms(100));
    }
    expect(conn.closed).not.toBeNull();
  });

  test('control: without the engine, ws leaves that FIN-only peer with queued data stuck in CLOSING', async () => {
    const srv = await echoServer({ heartbeat: false, ws: { closeTimeout: 30_000 } });
    const raw = await rawUpgradeFor(cleanup, srv.port, '/?id=fin');
    await srv.waitForConnections(1);
    const conn = srv.byId('fin');
    await fillQueue(conn.ws);

    raw.socket.end();
    await waitFor(() => conn.ws.readyState === WebSocket.CLOSING, ms(1000), 'ws to see the FIN');
    await sleep(2 * CLOSE_TIMEOUT);

    expect(conn.ws.readyState).toBe(WebSocket.CLOSING);
    expect(conn.ws.bufferedAmount).toBeGreaterThan(0);
    expect(conn.socketClosedAt).toBeNull();
    expect(conn.closed).toBeNull();
  });

  test('while tracked, a connection is seen through prototypes of the engine over its own, and carries nothing else but its slot id; on close it has its own prototypes back', async () => {
    const srv = await echoServer({ heartbeat: { interval: NEVER, timeout: NEVER } });
    const client = await openClientFor(cleanup, srv.url('/?id=a'));
    await srv.waitForConnections(1);
    const conn = srv.byId('a');
    const socketPrototype = Object.getPrototypeOf(conn.socket) as object;
    const ownKeys = (object: object) => Reflect.ownKeys(object).map((key) => (typeof key === 'symbol' ? key.description : key));
    // The engine's methods come from a prototype between the object and its own: no own method, and
    // on the raw socket, which `ws` links to its WebSocket, not even a tag.
    expect(conn.ws).toBeInstanceOf(WebSocket);
    expect(Object.getPrototypeOf(Object.getPrototypeOf(conn.ws))).toBe(WebSocket.prototype);
    expect(Object.getPrototypeOf(socketPrototype)).toBe(net.Socket.prototype);
    expect(Object.hasOwn(Object.getPrototypeOf(conn.ws) as object, 'emit')).toBe(true);
    expect(Object.hasOwn(Object.getPrototypeOf(conn.ws) as object, 'close')).toBe(true);
    expect(Object.hasOwn(socketPrototype, 'emit')).toBe(true);
    for (const object of [conn.ws, conn.socket]) {
      expect(Object.hasOwn(object, 'emit')).toBe(false);
      expect(Object.hasOwn(object, 'close')).toBe(false);
    }
    expect(ownKeys(conn.ws).filter((key) => key === 'ws-heartbeat.id')).toHaveLength(1);
    expect(ownKeys(conn.socket)).not.toContain('ws-heartbeat.id');
    // Another connection of the same engine shares both prototypes.
    await openClientFor(cleanup, srv.url('/?id=b'));
    await srv.waitForConnections(2);
    expect(Object.getPrototypeOf(srv.byId('b').ws)).toBe(Object.getPrototypeOf(conn.ws));
    expect(Object.getPrototypeOf(srv.byId('b').socket)).toBe(socketPrototype);

    client.ws.close();
    await waitFor(() => conn.closed !== null, ms(1000), 'the server to see the close');
    expect(Object.getPrototypeOf(conn.ws)).toBe(WebSocket.prototype);
    expect(Object.getPrototypeOf(conn.socket)).toBe(net.Socket.prototype);
    expect(srv.hb!.size).toBe(1);
  });

  test('a ws with an emit() and close() of its own gets the engine methods as own properties: its pongs and its close are still seen, and on close they are removed', async () => {
    const srv = await echoServer({ heartbeat: false });
    const hb = cleanup.add(new Heartbeat({ interval: INTERVAL, timeout: TIMEOUT }));
    const pongs: number[] = [];
    hb.on('pong', () => pongs.push(now()));
    await openClientFor(cleanup, srv.url('/?id=a'));
    await srv.waitForConnections(1);
    const conn = srv.byId('a');
    const ownEmit = function (this: WebSocket, ...args: [string | symbol, ...unknown[]]): boolean {
      return Reflect.apply(EventEmitter.prototype.emit, this, args) as boolean;
    };
    conn.ws.emit = ownEmit;
    hb.track(conn.ws, { socket: conn.socket });
    expect(Object.getPrototypeOf(conn.ws)).toBe(WebSocket.prototype);
    expect(Object.hasOwn(conn.ws, 'emit')).toBe(true);
    expect(Object.hasOwn(conn.ws, 'close')).toBe(true);

    await waitFor(() => pongs.length >= 2, 2 * INTERVAL + TIMEOUT, 'two pongs');
    conn.ws.close(4000, 'bye');
    expect(conn.ws.readyState).toBe(WebSocket.CLOSING);
    await waitFor(() => conn.closed !== null, ms(1000), 'the close handshake');
    expect(conn.closed?.code).toBe(4000);
    expect(Object.hasOwn(conn.ws, 'emit')).toBe(false);
    expect(Object.hasOwn(conn.ws, 'close')).toBe(false);
    expect(hb.size).toBe(0);
  });

  test('a raw socket with an emit() of its own is watched through an end listener instead, and is left as it was', async () => {
    const srv = await echoServer({ heartbeat: false, ws: { closeTimeout: 30_000 } });
    const hb = cleanup.add(new Heartbeat({ interval: NEVER, timeout: NEVER, closeTimeout: CLOSE_TIMEOUT }));
    const reasons: string[] = [];
    hb.on('terminate', (_ws, reason) => reasons.push(reason));
    const raw = await rawUpgradeFor(cleanup, srv.port, '/?id=fin'); // paused: it never reads
    await srv.waitForConnections(1);
    const conn = srv.byId('fin');
    const ownEmit = function (this: Duplex, ...args: [string | symbol, ...unknown[]]): boolean {
      return Reflect.apply(Duplex.prototype.emit, this, args) as boolean;
    };
    conn.socket.emit = ownEmit;
    const before = conn.socket.listeners('end');
    hb.track(conn.ws, { socket: conn.socket });
    expect(conn.socket.emit).toBe(ownEmit);
    expect(conn.socket.listenerCount('end')).toBe(before.length + 1);

    await fillQueue(conn.ws);
    const finAt = now();
    raw.socket.end();
    await waitFor(() => conn.socketClosedAt !== null, CLOSE_TIMEOUT + ms(1000), 'the engine to destroy the socket');
    expect(reasons).toEqual(['close-timeout']);
    expect(conn.socketClosedAt! - finAt).toBeGreaterThanOrEqual(CLOSE_TIMEOUT - EPSILON);
    expect(conn.socketClosedAt! - finAt).toBeLessThanOrEqual(CLOSE_TIMEOUT + ms(100));

    await waitFor(() => conn.closed !== null, ms(1000), 'ws to emit close');
    expect(conn.socket.emit).toBe(ownEmit);
    for (const listener of conn.socket.listeners('end')) expect(before).toContain(listener);
    expect(hb.size).toBe(0);
  });

  test('a 1 s server stall terminates none of 20 healthy peers in a child process; a silent peer still is', async () => {
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT } });
    const hb = srv.hb!;
    const child = forkChild<StallChildMessage>(cleanup, path.join(FIXTURES, 'stall-clients.js'), { args: [srv.url('/'), '20', '1'] });
    await childMessage(child, 'ready', ms(10_000));
    await srv.waitForConnections(21);
    await sleep(2 * INTERVAL);

    const stall = ms(1000);
    // Right after pings went out (their pongs arrive during the stall) ...
    const stallAfterNextPing = () =>
      new Promise<void>((resolve) => {
        hb.once('ping', () =>
          setImmediate(() => {
            busyWait(stall);
            resolve();
          }),
        );
      });
    await stallAfterNextPing();
    // ... at an arbitrary moment ...
    await sleep(Math.floor(INTERVAL * 0.65));
    busyWait(stall);
    // ... and right after pings again.
    await stallAfterNextPing();

    // The silent peer is judged as usual, once the loop runs again.
    await waitFor(() => srv.terminations.length > 0, INTERVAL + TIMEOUT + ms(1000), 'the silent peer to be terminated');
    await sleep(ms(50));
    const before = await stallReport(child);
    await sleep(3 * INTERVAL);
    const after = await stallReport(child);

    expect(srv.terminations.map((t) => [t.conn?.id, t.reason])).toEqual([['s0', 'timeout']]);
    const healthy = after.clients.filter((c) => c.id.startsWith('h'));
    expect(healthy).toHaveLength(20);
    for (const client of healthy) {
      const earlier = before.clients.find((c) => c.id === client.id)!;
      expect(client).toMatchObject({ open: true, closeCode: null });
      expect(client.pings).toBeGreaterThan(earlier.pings);
    }
    expect(hb.size).toBe(20);

    child.process.send({ type: 'close' });
    await waitFor(() => child.exit !== null, ms(5000), 'the client process to exit');
  });

  test('a busy server: pings written late in a long tick each get their whole timeout, so none of 16 peers that answer timeout/2 after each ping is terminated', async () => {
    const interval = ms(600);
    const timeout = ms(150);
    const answerAfter = timeout / 2;
    const work = ms(15);
    const srv = await echoServer({ heartbeat: { interval, timeout } });
    const hb = srv.hb!;
    const child = forkChild<StallChildMessage>(cleanup, path.join(FIXTURES, 'stall-clients.js'), { args: [srv.url('/'), '16', '0', String(answerAfter)] });
    await childMessage(child, 'ready', ms(10_000));
    await srv.waitForConnections(16);
    // Synthetic work: every ping costs the server 15 ms (a slow synchronous listener), 40% of its
    // time in all, so a tick that pings many connections writes its last pings long after it began.
    hb.on('ping', () => busyWait(work));
    await sleep(2 * interval);
    const before = await stallReport(child);
    // A stall of interval + timeout makes every connection due in one tick: it writes 16 pings over
    // 240 ms, longer than timeout + answerAfter. A timeout counted from the start of that tick would
    // end the last peers before their answers (due answerAfter after each ping arrived) are read.
    busyWait(interval + timeout);
    await sleep(5 * interval);
    const report = await stallReport(child);

    expect(srv.terminations.map((t) => [t.conn?.id, t.reason])).toEqual([]);
    for (const client of report.clients) {
      expect(client).toMatchObject({ open: true, closeCode: null });
      // Pinged on after the stall: the tick's ping and more rounds.
      expect(client.pings).toBeGreaterThanOrEqual(before.clients.find((c) => c.id === client.id)!.pings + 3);
      // Healthy on their own clock: every answer well within the timeout.
      expect(client.slowestAnswer).toBeLessThan(timeout * 0.75);
    }
    child.process.send({ type: 'close' });
    await waitFor(() => child.exit !== null, ms(5000), 'the client process to exit');
  });

  test('a peer in the middle of one large frame is alive while its bytes arrive, and is terminated interval + timeout after its last byte once they stop', async () => {
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT } });
    const raw = await rawUpgradeFor(cleanup, srv.port, '/?id=uploader'); // never reads: our pings go unanswered
    await srv.waitForConnections(1);
    // One 1 MiB binary frame, written 16 KiB every 20 ms: the frame would take 1.3 s, 4 × (interval
    // + timeout). Half of it goes, then nothing.
    const frame = maskedFrame(OPCODE.binary, Buffer.alloc(MiB, 0x75));
    const slice = 16 * 1024;
    let lastByteAt = 0;
    for (let offset = 0; offset < frame.length / 2; offset += slice) {
      raw.socket.write(frame.subarray(offset, offset + slice));
      lastByteAt = now();
      await sleep(20);
    }
    expect(lastByteAt - srv.byId('uploader').trackedAt).toBeGreaterThan(2 * (INTERVAL + TIMEOUT));
    expect(srv.terminations).toEqual([]);

    await waitFor(() => srv.terminations.length > 0, INTERVAL + TIMEOUT + ms(1000), 'the stalled uploader to be terminated');
    const [end] = srv.terminations;
    expect(end!.reason).toBe('timeout');
    expect(end!.at - lastByteAt).toBeGreaterThanOrEqual(INTERVAL + TIMEOUT - EPSILON);
    expect(end!.at - lastByteAt).toBeLessThanOrEqual(INTERVAL + TIMEOUT + SLOP);
    expect(srv.byId('uploader').messages).toEqual([]);
  });

  test('a slow reader is alive while it takes what we queued: 96 MiB sent at once to a ws client that reads 16 MiB a second all arrive, and nobody is terminated', async () => {
    // Our queue's progress shows only in steps (the kernel takes several MiB before anything
    // queues, and wakes a writer when a third of its send buffer is free): a reader must take that
    // much within interval + timeout.
    const timeout = ms(1800);
    // Above the 64 MiB that the engine lets a reader fall behind by default.
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout, maxBufferedAmount: 128 * MiB }, echo: false });
    const reader = await openClientFor(cleanup, srv.url('/?id=reader'));
    await srv.waitForConnections(1);
    // Reads at most 16 MiB per second: paused whenever it is ahead. ws.pause(), not the socket's:
    // ws resumes its socket by itself after each chunk it parsed.
    const rate = (16 * MiB) / 1000;
    const socket = (reader.ws as unknown as { _socket: Socket })._socket;
    const started = now();
    let read = 0;
    const ahead = (): boolean => read >= rate * (now() - started);
    socket.on('data', (chunk: Buffer) => {
      read += chunk.length;
      if (ahead()) reader.ws.pause();
    });
    reader.ws.pause();
    await download(srv, reader, 96, () => setInterval(() => {
      if (!ahead()) reader.ws.resume();
    }, 10));
    expect(now() - started).toBeGreaterThan(2.5 * (INTERVAL + timeout));
  });

  test('a slow reader is alive to the end of a download: 16 × 1 MiB to a client in a process of its own that reads 2 MB a second, on interval 800 ms + timeout 600 ms, all arrive', async () => {
    // The reader takes about 2 MB a second, so the download lasts several times interval +
    // timeout, and when our queue to it empties the kernels still hold megabytes for it (our send
    // buffer, its receive buffer), with the ping behind them: it reads them for longer than
    // interval + timeout after our queue last moved (an engine that does not allow for that ended
    // it 1.4 s after, 2 s before its last message arrived). The reader is a process of its own, as
    // a remote peer is: a stall of this process (a major GC, a cold module compile) must not stop
    // it reading, or the test would measure a reader slower than the one it names.
    const interval = ms(800);
    const timeout = ms(600);
    const srv = await echoServer({ heartbeat: { interval, timeout }, echo: false });
    const reader = forkChild<ReaderMessage>(cleanup, TRANSFER_PEER, { args: [srv.url('/?id=reader'), '0', 'plain'] });
    await childMessage(reader, 'open', ms(10_000));
    // The download starts as the connection is tracked (the command reaches the reader before the
    // first byte does: IPC is quicker than 16 MiB). One that starts later in the interval is not
    // covered here: see 'A known gap' in the README's liveness bound.
    reader.process.send({ cmd: 'read-slowly', rate: 2_000_000 });
    await srv.waitForConnections(1);
    const started = now();
    const server = srv.byId('reader').ws;
    for (let i = 0; i < 16; i++) server.send(Buffer.alloc(MiB, i));
    const said = () => reader.messages.map((m) => m.message);
    await waitFor(() => said().filter((m) => m.type === 'message').length === 16 || said().some((m) => m.type === 'closed'), ms(60_000), 'all 16 MiB to arrive');

    expect(srv.terminations.map((t) => t.reason)).toEqual([]);
    expect(said().filter((m) => m.type === 'closed')).toEqual([]);
    const arrived = said().flatMap((m) => (m.type === 'message' ? [[m.length, m.digest]] : []));
    expect(arrived).toEqual(Array.from({ length: 16 }, (_, i) => [MiB, sha1(Buffer.alloc(MiB, i))]));
    expect(now() - started).toBeGreaterThan(3 * (interval + timeout));
  });

  test('two routes ping at their own intervals', async () => {
    const hb = new Heartbeat({ interval: NEVER, timeout: NEVER });
    const fastInterval = ms(100);
    const slowInterval = ms(400);
    const srv = await echoServer({
      heartbeat: hb,
      routes: { fast: { interval: fastInterval, timeout: ms(100) }, slow: { interval: slowInterval, timeout: ms(100) } },
    });
    const fast = await openClientFor(cleanup, srv.url('/fast'));
    const slow = await openClientFor(cleanup, srv.url('/slow'));
    await srv.waitForConnections(2);
    expect(srv.connections.map((c) => c.route)).toEqual(['fast', 'slow']);

    const window = ms(2200);
    await sleep(window);

    const fastExpected = window / fastInterval;
    const slowExpected = window / slowInterval;
    expect(fast.pings).toBeGreaterThanOrEqual(0.7 * fastExpected);
    expect(fast.pings).toBeLessThanOrEqual(1.3 * fastExpected);
    expect(slow.pings).toBeGreaterThanOrEqual(0.7 * slowExpected);
    expect(slow.pings).toBeLessThanOrEqual(1.3 * slowExpected);
    expect(srv.terminations).toEqual([]);
  });

  test('after close(), a process holding the engine and 50 connections exits by itself within closeTimeout + 1 s', async () => {
    const config: ShutdownChildConfig = {
      healthy: 43,
      silent: 5,
      ignoring: 2,
      interval: NEVER,
      timeout: NEVER,
      closeTimeout: CLOSE_TIMEOUT,
    };
    const { closed } = await expectExitByItself<ShutdownChildMessage>(cleanup, path.join(FIXTURES, 'shutdown-child.ts'), config);
    expect(closed.size).toBe(0);
    expect(closed.closeEvent).toBe(true);
    // The two peers that ignore our close frame are destroyed once closeTimeout has passed.
    expect(closed.terminations).toEqual({ shutdown: 2 });
    expect(closed.closeMs).toBeGreaterThanOrEqual(CLOSE_TIMEOUT - EPSILON);
  });

  test('appHeartbeat: {"type":"ping"} is answered by the engine and hidden from the application', async () => {
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT, appHeartbeat: true } });
    const client = await openClientFor(cleanup, srv.url('/?id=app'));
    await srv.waitForConnections(1);
    const conn = srv.byId('app');

    client.ws.send('{"type":"ping"}');
    await waitFor(() => client.messages.length >= 1, ms(1000), 'the pong');
    expect(client.messages[0]?.isBinary).toBe(false);
    expect(client.messages[0]?.data.toString()).toBe(`{"type":"pong","interval":${INTERVAL},"timeout":${TIMEOUT}}`);

    // Everything else reaches the application: other text, the same bytes as binary, near misses.
    client.ws.send('hello');
    client.ws.send(Buffer.from('{"type":"ping"}'), { binary: true });
    client.ws.send('{"type":"ping"} ');
    client.ws.send('{"type":"ping"}');
    client.ws.send('bye');
    await waitFor(() => conn.messages.length >= 4, ms(1000), 'the application messages');
    await waitFor(() => client.messages.length >= 6, ms(1000), 'the echoes and the second pong');

    expect(conn.messages.map((m) => [m.data.toString(), m.isBinary])).toEqual([
      ['hello', false],
      ['{"type":"ping"}', true],
      ['{"type":"ping"} ', false],
      ['bye', false],
    ]);
    const pong = `{"type":"pong","interval":${INTERVAL},"timeout":${TIMEOUT}}`;
    expect(client.messages.map((m) => m.data.toString()).sort()).toEqual(
      [pong, 'hello', '{"type":"ping"}', '{"type":"ping"} ', pong, 'bye'].sort(),
    );
  });

  /**
   * Opens a `keeper` (autoPong off) that calls `beat` every interval/2 and a silent control beside
   * it, waits 5 intervals, and checks that only the control was terminated.
   */
  async function keeperBesideSilentControl(heartbeat: HeartbeatOptions, beat: (keeper: TestClient) => void): Promise<TestClient> {
    const srv = await echoServer({ heartbeat });
    const keeper = await openClientFor(cleanup, srv.url('/?id=keeper'), { autoPong: false });
    const silent = await openClientFor(cleanup, srv.url('/?id=silent'), { autoPong: false });
    await srv.waitForConnections(2);
    const timer = setInterval(() => beat(keeper), Math.floor(INTERVAL / 2));
    try {
      await sleep(5 * INTERVAL);
    } finally {
      clearInterval(timer);
    }
    expect(srv.terminations.map((t) => [t.conn?.id, t.reason])).toEqual([['silent', 'timeout']]);
    expect(silent.closeInfo?.code).toBe(1006);
    expect(keeper.closeInfo).toBeNull();
    expect(keeper.ws.readyState).toBe(WebSocket.OPEN);
    expect(srv.byId('keeper').messages).toEqual([]);
    return keeper;
  }

  test('appHeartbeat: a peer that only sends app heartbeats (autoPong: false) is never terminated', async () => {
    const keeper = await keeperBesideSilentControl({ interval: INTERVAL, timeout: TIMEOUT, appHeartbeat: true }, (k) =>
      k.ws.send('{"type":"ping"}'),
    );
    expect(keeper.messages.length).toBeGreaterThanOrEqual(8); // every heartbeat was answered
  });

  test('unsolicited pongs count as liveness', async () => {
    const keeper = await keeperBesideSilentControl({ interval: INTERVAL, timeout: TIMEOUT }, (k) => k.ws.pong());
    expect(keeper.pings).toBe(0); // never even idle long enough to be pinged
  });

  test('pong events carry the round-trip time, which rtt(ws) and stats() report per route', async () => {
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT } });
    const hb = srv.hb!;
    const client = await openClientFor(cleanup, srv.url('/?id=slow'), { autoPong: false });
    const delay = ms(30);
    client.ws.on('ping', (data) => setTimeout(() => client.ws.pong(data), delay));
    await srv.waitForConnections(1);
    const conn = srv.byId('slow');
    const rtts: number[] = [];
    hb.on('pong', (ws, rtt, route) => {
      if (ws === conn.ws) rtts.push(rtt);
      expect(route).toBe('default');
    });

    await waitFor(() => rtts.length >= 3, 5 * INTERVAL, 'three pongs');

    for (const rtt of rtts) {
      expect(rtt).toBeGreaterThanOrEqual(delay - EPSILON);
      expect(rtt).toBeLessThanOrEqual(delay + SLOP);
    }
    expect(hb.rtt(conn.ws)).toBe(rtts[rtts.length - 1]);
    const route = hb.stats().routes.default!;
    expect(route.pongsReceived).toBe(rtts.length);
    expect(route.rtt.count).toBe(rtts.length);
    expect(route.rtt.max).toBe(Math.max(...rtts));
    expect(route.rtt.p50).toBeGreaterThanOrEqual(delay - EPSILON);
    expect(srv.terminations).toEqual([]);
  });

  test('a blocked event loop makes the engine overloaded (stats and one overload event), and it ends once the loop runs freely', async () => {
    const threshold = 100;
    const block = 400;
    const hb = new Heartbeat({ interval: NEVER, timeout: NEVER, overloadThreshold: threshold });
    const events: Array<{ overloaded: boolean; info: OverloadInfo; stats: HeartbeatStats }> = [];
    hb.on('overload', (overloaded, info) => events.push({ overloaded, info, stats: hb.stats() }));
    const srv = await echoServer({ heartbeat: hb });
    await openClientFor(cleanup, srv.url());
    await srv.waitForConnections(1);
    expect(hb.stats().overloadThreshold).toBe(threshold);
    // Node's delay monitor measures from its own first expiration, 10 ms after the engine started it.
    await sleep(50);

    busyWait(block);
    await waitFor(() => events.length >= 1, ms(2500), 'an overload event');
    const [start] = events;
    expect(start!.overloaded).toBe(true);
    expect(start!.info.thresholdMs).toBe(threshold);
    // Node's monitor, or the engine's own late tick, saw the block (less the monitor's 10 ms resolution).
    expect(Math.max(start!.info.eventLoopDelayMs, start!.info.tickLateMs)).toBeGreaterThanOrEqual(block - 50);
    expect(start!.stats.overloaded).toBe(true);
    expect(Math.max(start!.stats.eventLoop.maxMs, start!.stats.tick.recentLateMs)).toBe(Math.max(start!.info.eventLoopDelayMs, start!.info.tickLateMs));

    await waitFor(() => events.length >= 2, ms(5000), 'the end of the overload');
    expect(events[1]!.overloaded).toBe(false);
    expect(Math.max(events[1]!.info.eventLoopDelayMs, events[1]!.info.tickLateMs)).toBeLessThanOrEqual(threshold);
    expect(hb.stats().overloaded).toBe(events[events.length - 1]!.overloaded);
    // One event per change, never the same state twice in a row.
    events.forEach((event, i) => expect(event.overloaded).toBe(i % 2 === 0));
    expect(srv.terminations).toEqual([]);
  });

  test('no false overload after an idle spell: the first connection after 3 s with none raises nothing, twice; a real 300 ms block still does', async () => {
    const hb = new Heartbeat({ interval: NEVER, timeout: NEVER });
    const events: Array<{ overloaded: boolean; info: OverloadInfo }> = [];
    hb.on('overload', (overloaded, info) => events.push({ overloaded, info }));
    const srv = await echoServer({ heartbeat: hb });

    // Twice: after the engine's creation, and after its only connection closed.
    for (let spell = 0; spell < 2; spell++) {
      await sleep(3000); // the loop is idle; no connection is tracked
      const client = await openClientFor(cleanup, srv.url());
      await srv.waitForConnections(1);
      // Long enough for the engine's timer to run and two load figures to be taken.
      await sleep(1200);
      expect(events).toEqual([]);
      const stats = hb.stats();
      expect(stats.overloaded).toBe(false);
      expect(stats.tick.maxLateMs).toBeLessThan(stats.overloadThreshold);
      client.ws.close();
      await client.closed;
      await waitFor(() => hb.size === 0, ms(1000), 'the connection to be forgotten');
    }

    // The alarm still works: a connection, then a real block of the loop.
    await openClientFor(cleanup, srv.url());
    await waitFor(() => hb.size === 1, ms(1000), 'the connection to be tracked');
    await sleep(50);
    busyWait(300);
    await waitFor(() => events.length >= 1, ms(2500), 'an overload event');
    expect(events[0]!.overloaded).toBe(true);
    expect(Math.max(events[0]!.info.eventLoopDelayMs, events[0]!.info.tickLateMs)).toBeGreaterThanOrEqual(250);
  });

  test('close({ retryWithin }) sends 1012 with the retry hint, also to a connection tracked during close(); invalid hints throw before anything closes', async () => {
    const hb = new Heartbeat({ interval: NEVER, timeout: NEVER });
    const srv = await echoServer({ heartbeat: hb });
    const early = await openClientFor(cleanup, srv.url());
    await srv.waitForConnections(1);
    for (const retryWithin of [0, -1, 1.5, Infinity, '100']) {
      expect(() => hb.close({ retryWithin } as never)).toThrow(/"retryWithin" option must be a positive whole number of milliseconds/);
    }
    expect(hb.closing).toBe(false);
    expect(shutdownClose()).toEqual({ code: 1001, reason: 'Server shutting down' });

    const closing = hb.close({ retryWithin: 2000 });
    const late = await openClientFor(cleanup, srv.url());
    const reason = 'Server restarting, retry within 2000 ms';
    expect(await early.closed).toMatchObject({ code: 1012, reason });
    expect(await late.closed).toMatchObject({ code: 1012, reason });
    await closing;
  });

  test('idleOnly: false pings every connection every interval while messages flow; any sign of life answers, so a chatty peer that never pongs lives and a silent one does not', async () => {
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT, idleOnly: false } });
    const busy = await openClientFor(cleanup, srv.url('/?id=busy'));
    const mute = await openClientFor(cleanup, srv.url('/?id=mute'), { autoPong: false });
    await openClientFor(cleanup, srv.url('/?id=silent'), { autoPong: false });
    await srv.waitForConnections(3);

    const chatter = setInterval(() => {
      for (const client of [busy, mute]) if (client.ws.readyState === WebSocket.OPEN) client.ws.send('tick');
    }, Math.floor(INTERVAL / 3));
    try {
      await sleep(5 * INTERVAL);
    } finally {
      clearInterval(chatter);
    }

    // Pinged although they were never idle: once per interval.
    for (const client of [busy, mute]) {
      expect(client.pings).toBeGreaterThanOrEqual(4);
      expect(client.pings).toBeLessThanOrEqual(5);
      expect(client.closeInfo).toBeNull();
    }
    // A peer whose pong may wait behind its own messages is alive; one that shows nothing is not.
    expect(srv.terminations.map((t) => [t.conn?.id, t.reason])).toEqual([['silent', 'timeout']]);
    const terminatedAfter = srv.terminations[0]!.at - srv.byId('silent').trackedAt;
    expect(terminatedAfter).toBeGreaterThanOrEqual(INTERVAL + TIMEOUT - EPSILON);
    expect(terminatedAfter).toBeLessThanOrEqual(INTERVAL + TIMEOUT + SLOP);
  });

  test('an invalid frame from a peer closes only that connection, with no error listener of the application', async () => {
    const hb = new Heartbeat({ interval: NEVER, timeout: NEVER });
    const wss = new WebSocketServer({ noServer: true });
    const server = http.createServer();
    const closes: number[] = [];
    server.on('upgrade', (req, socket, head) =>
      wss.handleUpgrade(req, socket, head, (ws) => {
        hb.track(ws, { socket }); // the application adds no 'error' listener of its own
        ws.on('close', (code) => closes.push(code));
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    // The engine closes its connections first, then the server can close.
    cleanup.defer(() => new Promise((resolve) => server.close(resolve)));
    cleanup.add(hb);
    const bystander = await openClientFor(cleanup, `ws://127.0.0.1:${port}/`);
    const raw = await rawUpgradeFor(cleanup, port, '/');
    await waitFor(() => hb.size === 2, ms(1000), 'both connections tracked');
    raw.socket.on('end', () => raw.socket.end()); // answers ws's FIN like an ordinary TCP peer
    const received: Buffer[] = [];
    raw.socket.on('data', (chunk: Buffer) => received.push(chunk));
    raw.socket.resume();
    // A text frame with RSV1 set and no extension negotiated: ws answers 1002 and emits 'error'.
    raw.socket.write(Buffer.from([0xc1, 0x80, 1, 2, 3, 4]));

    await waitFor(() => closes.length === 1, ms(1000), 'the bad peer to be closed');
    const frame = Buffer.concat(received);
    expect(frame[0]).toBe(0x88); // a close frame ...
    expect(frame.readUInt16BE(2)).toBe(1002); // ... with "protocol error"
    expect(closes).toEqual([1006]); // the peer never sent one back
    expect(hb.size).toBe(1);
    bystander.ws.send('still here');
    expect(bystander.ws.readyState).toBe(WebSocket.OPEN);
    raw.socket.destroy();
  });

  test('no leak: closed connections are forgotten, and close() emits close', async () => {
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT } });
    const hb = srv.hb!;
    let closeEvents = 0;
    hb.on('close', () => {
      closeEvents += 1;
    });
    const clients = await openClientsFor(cleanup, srv.url(), 5);
    await srv.waitForConnections(5);
    expect(hb.size).toBe(5);

    clients[0]!.ws.terminate();
    for (const client of clients.slice(1)) client.ws.close(1000);
    await Promise.all(clients.map((c) => c.closed));
    await waitFor(() => hb.size === 0, ms(1000), 'hb.size to drop to 0');
    expect(srv.connections.every((c) => c.closed !== null)).toBe(true);

    await hb.close();
    expect(hb.closing).toBe(true);
    expect(closeEvents).toBe(1);
    expect(srv.terminations).toEqual([]);
  });

  test('maxBufferedAmount: a peer that stops reading is terminated once more than that is queued to it, not before', async () => {
    const limit = 4 * MiB;
    const srv = await echoServer({ heartbeat: { interval: INTERVAL, timeout: TIMEOUT, maxBufferedAmount: limit } });
    const raw = await rawUpgradeFor(cleanup, srv.port, '/?id=reader'); // paused: it never reads
    await srv.waitForConnections(1);
    const conn = srv.byId('reader');

    // Unsolicited pongs keep it alive, so that backpressure is the only rule that can end it.
    const keepAlive = setInterval(() => raw.send(OPCODE.pong), Math.floor(INTERVAL / 2));
    const chunk = Buffer.alloc(MiB);
    let crossedAt: number;
    try {
      // Fill the kernel's socket buffers: from then on, what we send stays queued in user space.
      for (let sent = 0; conn.ws.bufferedAmount === 0 && sent < 64 * MiB; sent += MiB) {
        conn.ws.send(chunk);
        await sleep(ms(20));
      }
      while (conn.ws.bufferedAmount < 2.5 * MiB) conn.ws.send(chunk);
      expect(conn.ws.bufferedAmount).toBeLessThanOrEqual(limit);

      // Below the limit for several intervals: left alone.
      await sleep(3 * INTERVAL);
      expect(srv.terminations).toEqual([]);
      expect(conn.ws.bufferedAmount).toBeGreaterThan(0);

      while (conn.ws.bufferedAmount <= limit) conn.ws.send(chunk);
      crossedAt = now();
      await waitFor(() => srv.terminations.length > 0, INTERVAL + TIMEOUT + ms(1000), 'the termination');
    } finally {
      clearInterval(keepAlive);
    }

    expect(srv.terminations.map((t) => [t.conn?.id, t.reason])).toEqual([['reader', 'backpressure']]);
    // No slower than a dead peer is detected.
    expect(srv.terminations[0]!.at - crossedAt).toBeLessThanOrEqual(INTERVAL + TIMEOUT + SLOP);
    await waitFor(() => conn.socketClosedAt !== null, ms(1000), 'the socket to be destroyed');
  });
});

/**
 * Sends 1 MiB messages to a peer that does not read until at least 8 MiB were sent and more
 * than 1 MiB sits in user space (the kernel's socket buffers hold the rest).
 */
async function fillQueue(ws: WebSocket): Promise<void> {
  const chunk = Buffer.alloc(MiB);
  let sent = 0;
  while ((sent < 8 * MiB || ws.bufferedAmount < MiB) && sent < 64 * MiB) {
    ws.send(chunk);
    sent += chunk.length;
    await sleep(1);
  }
}

/**
 * Sends `count` messages of 1 MiB (message i filled with i) from the server to `reader`, paced by
 * the interval `read` starts, and asserts that all arrived whole and that nobody was terminated.
 */
async function download(srv: EchoServer, reader: TestClient, count: number, read: () => NodeJS.Timeout): Promise<void> {
  const reading = read();
  try {
    const server = srv.byId('reader').ws;
    for (let i = 0; i < count; i++) server.send(Buffer.alloc(MiB, i));
    await waitFor(() => reader.messages.length === count || reader.closeInfo !== null, ms(60_000), `all ${count} MiB to arrive`);
  } finally {
    clearInterval(reading);
  }
  expect(srv.terminations.map((t) => t.reason)).toEqual([]);
  expect(reader.closeInfo).toBeNull();
  expect(reader.messages.map((m) => [m.data.length, m.data[0], m.data[MiB - 1]])).toEqual(Array.from({ length: count }, (_, i) => [MiB, i, i]));
}
