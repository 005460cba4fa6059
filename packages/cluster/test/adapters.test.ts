/**
 * The cluster through both adapters, against a real redis-server: a route's `presence` option
 * joins each connection to keys from its request, the keys leave when it closes, and closing the
 * app takes the node's keys offline at once. A stalled Redis (DEBUG SLEEP, CLIENT PAUSE) leaves
 * the heartbeat alone and reaps no one; a thousand connections that come and go, and a thousand
 * joins and leaves, leave nothing in Redis beyond the nodes' own keys.
 */
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { createClient } from '@redis/client';
import express from 'express';
import Fastify from 'fastify';
import wsHeartbeat from '@ws-heartbeat/fastify';
import { WebSocketRoutes } from '@ws-heartbeat/express';
import { Cluster, ClusterUnavailableError } from '@ws-heartbeat/cluster';
import type { Heartbeat, HeartbeatEngineOptions } from '@ws-heartbeat/core';
import { useCleanup } from '../../../test/helpers/cleanup';
import { openClientFor, openClientsFor } from '../../../test/helpers/clients';
import { freePort, startRedis } from '../../../test/helpers/redis';
import { NEVER, SLOP, ms, now, sleep, waitFor } from '../../../test/helpers/time';

const cleanup = useCleanup();
const INTERVAL = ms(300);
const TIMEOUT = ms(200);

interface App {
  url: string;
  heartbeat: Heartbeat;
  close(): Promise<void>;
}

/** An app of `adapter` whose /ws/:room route holds the keys `user:<query user>` and `room:<room>`. */
async function startApp(adapter: 'fastify' | 'express', cluster: Cluster, heartbeat: HeartbeatEngineOptions = {}): Promise<App> {
  if (adapter === 'fastify') {
    const app = Fastify();
    await app.register(wsHeartbeat, { cluster, heartbeat });
    app.get<{ Params: { room: string }; Querystring: { user: string } }>(
      '/ws/:room',
      { websocket: true, presence: (request) => [`user:${(request.query as { user: string }).user}`, `room:${(request.params as { room: string }).room}`] },
      () => {},
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    let closed: Promise<void> | undefined;
    const close = (): Promise<void> => (closed ??= app.close());
    cleanup.defer(close);
    return { url: `ws://127.0.0.1:${port}`, heartbeat: app.heartbeat, close };
  }
  const sockets = new WebSocketRoutes({ cluster, heartbeat });
  sockets.route('/ws/:room', { presence: (req) => [`user:${String(req.query.user)}`, `room:${String(req.params.room)}`] }, () => {});
  const server = express().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  sockets.mount(server);
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= sockets.close().then(() => new Promise<void>((resolve) => server.close(() => resolve()))));
  cleanup.defer(close);
  return { url: `ws://127.0.0.1:${port}`, heartbeat: sockets.heartbeat, close };
}

/** Every key in Redis (SCAN, never KEYS). */
async function scanAll(url: string): Promise<string[]> {
  const client = createClient({ url });
  await client.connect();
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, page] = (await client.sendCommand(['SCAN', cursor, 'COUNT', '1000'])) as [string, string[]];
    keys.push(...page);
    cursor = next;
  } while (cursor !== '0');
  await client.close();
  return keys.sort();
}

/** The keys a cluster of these nodes holds when no connection holds a presence key. */
function nodesOwnKeys(...clusters: Cluster[]): string[] {
  return ['{wsh}:clock', '{wsh}:nodes', ...clusters.map((c) => `{wsh}:node:${c.id}`)].sort();
}

describe.each(['fastify', 'express'] as const)('%s with a cluster', (adapter) => {
  test("a route's presence keys join on connect and leave on close; closing the app takes its keys offline at once", async () => {
    const redis = await startRedis(cleanup);
    const served = new Cluster({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT });
    const watcher = cleanup.add(new Cluster({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT }));
    const offline: string[] = [];
    watcher.on('offline', (key) => offline.push(key));
    await watcher.start();
    const app = await startApp(adapter, served);

    const { ws: first } = await openClientFor(cleanup, `${app.url}/ws/lobby?user=42`);
    await openClientFor(cleanup, `${app.url}/ws/lobby?user=43`);
    let counts: number[] = [];
    const deadline = now() + ms(2_000);
    while (now() < deadline) {
      counts = [await watcher.connections('room:lobby'), await watcher.connections('user:42'), await watcher.count()];
      if (counts.join() === '2,1,3') break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(counts).toEqual([2, 1, 3]);

    first.close();
    await waitFor(() => offline.includes('user:42'), ms(2_000), 'user:42 offline');
    expect(await watcher.connections('room:lobby')).toBe(1);

    const closedAt = now();
    await app.close();
    await waitFor(() => offline.includes('user:43') && offline.includes('room:lobby'), ms(2_000), 'the rest offline');
    expect(now() - closedAt).toBeLessThan(INTERVAL + ms(1_000));
    expect(await watcher.count()).toBe(0);
    expect(offline.sort()).toEqual(['room:lobby', 'user:42', 'user:43']);
  });
});

describe('cluster.stats()', () => {
  test("every live node's snapshot, renewed each interval: connections per route, terminations by reason, RTT and event-loop p99, overload, age and lease age; and the totals", async () => {
    const redis = await startRedis(cleanup);
    const served = new Cluster({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT, name: 'eu-1:8080' });
    const other = cleanup.add(new Cluster({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT }));
    await other.start();
    const app = await startApp('fastify', served, { interval: ms(100), timeout: ms(100) });
    await openClientsFor(cleanup, `${app.url}/ws/a?user=1`, 3);
    await openClientFor(cleanup, `${app.url}/ws/b?user=2`, { autoPong: false }); // terminated: 'timeout'
    await waitFor(() => app.heartbeat.stats().terminations.timeout === 1, ms(2_000), 'the silent client terminated');
    const startedAt = Date.now();
    await sleep(INTERVAL + ms(100)); // a tick published the figures

    const { nodes, totals } = await other.stats();
    const node = nodes.find((n) => n.id === served.id)!;
    expect(node).toMatchObject({ name: 'eu-1:8080', host: hostname(), pid: process.pid, connections: 3, routes: { '/ws/:room': { connections: 3 } }, overloaded: false });
    expect(Object.keys(node.routes)).toEqual(['/ws/:room']); // not the engine's own 'default'
    expect(node.terminations).toMatchObject({ timeout: 1, 'close-timeout': 0, backpressure: 0, shutdown: 0 });
    expect(node.rttP99).toBeGreaterThan(0);
    expect(node.rttP99).toBe(node.routes['/ws/:room']!.rttP99);
    expect(node.eventLoopP99).toBeGreaterThanOrEqual(0);
    expect(node.leaseAge).toBeLessThanOrEqual(INTERVAL + SLOP);
    expect(node.age).toBeGreaterThanOrEqual(Date.now() - startedAt);
    expect(nodes.find((n) => n.id === other.id)).toMatchObject({ name: `${hostname()}:${process.pid}`, connections: 0, rttP99: null });
    expect(totals).toMatchObject({ nodes: 2, connections: 3, online: 2, overloaded: 0, terminations: { timeout: 1 } });

    await app.close(); // gone from the view at once
    expect((await other.stats()).nodes.map((n) => n.id)).toEqual([other.id]);
  });
});

describe('a cluster under load and faults', () => {
  test("Redis down at start-up: the app starts and serves WebSockets, the node logs one warning through the engine's logger, reads reject with ClusterUnavailableError at once; once Redis is up, the node registers within an interval", async () => {
    const port = await freePort();
    const lines: string[] = [];
    const logger = { debug: () => {}, info: (_: object, message: string) => lines.push(`info ${message}`), warn: (_: object, message: string) => lines.push(`warn ${message}`) };
    const served = new Cluster({ url: `redis://127.0.0.1:${port}`, interval: INTERVAL, timeout: TIMEOUT });
    const app = await startApp('express', served, { logger });
    const { ws } = await openClientFor(cleanup, `${app.url}/ws/a?user=1`);
    expect(ws.readyState).toBe(ws.OPEN);
    const read = now();
    await expect(served.isOnline('user:1')).rejects.toBeInstanceOf(ClusterUnavailableError);
    expect(now() - read).toBeLessThan(ms(100));
    await sleep(2 * INTERVAL); // several reconnect attempts, still one warning
    expect(lines).toEqual([expect.stringMatching(new RegExp(`^warn ws-heartbeat cluster: Redis at redis://127.0.0.1:${port} is unreachable .*WebSockets are served without presence`))]);

    const redis = await startRedis(cleanup, { port });
    let online = false;
    while (!online && now() < redis.readyAt + INTERVAL + ms(2_000)) {
      online = await served.isOnline('user:1').catch(() => false);
      if (!online) await sleep(10);
    }
    expect(online).toBe(true);
    expect(now() - redis.readyAt).toBeLessThanOrEqual(INTERVAL + SLOP);
    expect(lines.slice(1)).toEqual([expect.stringMatching(/^info .*is reachable/)]);
  });

  test('Redis stalled for longer than a lease (DEBUG SLEEP, then CLIENT PAUSE): the heartbeat and the event loop go on, reads reject with ClusterUnavailableError within commandTimeout, a join made meanwhile lands after it, and no node is reaped and no key flaps', async () => {
    const redis = await startRedis(cleanup);
    const commandTimeout = ms(150);
    const served = new Cluster({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT, commandTimeout });
    const watcher = cleanup.add(new Cluster({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT, commandTimeout }));
    const events: string[] = [];
    watcher.on('online', (key) => events.push(`online ${key}`));
    watcher.on('offline', (key) => events.push(`offline ${key}`));
    await watcher.start();
    const app = await startApp('fastify', served, { interval: ms(100), timeout: ms(100), overloadThreshold: ms(250) });
    const overloads: boolean[] = [];
    app.heartbeat.on('overload', (overloaded) => overloads.push(overloaded));
    const terminations: string[] = [];
    app.heartbeat.on('terminate', (_ws, reason) => terminations.push(reason));
    await openClientsFor(cleanup, `${app.url}/ws/stall?user=1`, 10);
    await waitFor(() => events.includes('online user:1') && events.includes('online room:stall'), ms(2_000), 'online');
    const admin = createClient({ url: redis.url });
    await admin.connect();
    cleanup.defer(() => admin.close());
    const stall = ms(2) * (INTERVAL + TIMEOUT); // ms: longer than a lease

    const faults: Array<[string, string[]]> = [
      ['DEBUG SLEEP', ['DEBUG', 'SLEEP', String(stall / 1000)]],
      ['CLIENT PAUSE', ['CLIENT', 'PAUSE', String(stall), 'ALL']],
    ];
    for (const [name, command] of faults) {
      const pongs = app.heartbeat.stats().pongsReceived;
      const stalled = admin.sendCommand(command);
      const stalledAt = now();
      await sleep(INTERVAL); // the nodes' commands are now waiting behind the stall
      const read = now();
      await expect(served.isOnline('user:1')).rejects.toBeInstanceOf(ClusterUnavailableError);
      expect(now() - read).toBeLessThan(commandTimeout + ms(100)); // never left hanging
      const { ws } = await openClientFor(cleanup, `${app.url}/ws/stall?user=${name}`); // served meanwhile
      expect(ws.readyState).toBe(ws.OPEN);
      await stalled; // DEBUG SLEEP answers after the stall, CLIENT PAUSE at once
      await sleep(stalledAt + stall - now());
      expect(app.heartbeat.stats().pongsReceived - pongs).toBeGreaterThan(10); // pings went on
      // The join made during the stall lands, and nobody was reaped: no key went offline.
      let online = false;
      const deadline = now() + ms(3_000) + 2 * INTERVAL;
      while (!online && now() < deadline) {
        online = await watcher.isOnline(`user:${name}`).catch(() => false);
        if (!online) await sleep(20);
      }
      expect([name, online]).toEqual([name, true]);
    }
    await sleep(2 * INTERVAL);
    expect(events.filter((e) => e.startsWith('offline'))).toEqual([]);
    expect(events.filter((e) => e === 'online user:1')).toEqual(['online user:1']);
    expect(terminations).toEqual([]);
    expect(overloads).toEqual([]);
    expect((await watcher.stats()).nodes.length).toBe(2);
  });

  test('1,000 join/leave cycles and 1,000 connect/close cycles leave no key in Redis beyond the nodes\' own (SCAN)', async () => {
    const redis = await startRedis(cleanup);
    const served = new Cluster({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT });
    const other = cleanup.add(new Cluster({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT }));
    await other.start();
    const app = await startApp('express', served, { interval: NEVER, timeout: NEVER });

    const { ws } = await openClientFor(cleanup, `${app.url}/ws/a?user=held`);
    for (let i = 0; i < 1_000; i++) {
      await other.join(ws, `cycle:${i % 37}`);
      await other.leave(ws, `cycle:${i % 37}`);
    }
    for (let i = 0; i < 1_000; i += 20) {
      const clients = await Promise.all(Array.from({ length: 20 }, (_, j) => openClientFor(cleanup, `${app.url}/ws/r${(i + j) % 7}?user=${i + j}`)));
      for (const client of clients) client.ws.close();
      await Promise.all(clients.map((client) => client.closed));
    }
    ws.close();
    await waitFor(() => app.heartbeat.size === 0, ms(2_000), 'every connection closed');
    let keys: string[] = [];
    const deadline = now() + ms(3_000);
    while (now() < deadline) {
      keys = await scanAll(redis.url);
      if (keys.join() === nodesOwnKeys(served, other).join()) break;
      await sleep(50);
    }
    expect(keys).toEqual(nodesOwnKeys(served, other));
    expect(await other.count()).toBe(0);
  });
});
