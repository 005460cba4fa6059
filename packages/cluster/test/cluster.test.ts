/**
 * The cluster against a real redis-server of its own: presence across nodes, each key's online and
 * offline events exactly once, a node killed with -9 reaped within interval + timeout + interval,
 * and close() taking the node's keys offline at once.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';
import { Cluster, ClusterUnavailableError, type ClusterOptions } from '@ws-heartbeat/cluster';
import { childMessage, forkChild } from '../../../test/helpers/child';
import { useCleanup } from '../../../test/helpers/cleanup';
import { openClientsFor } from '../../../test/helpers/clients';
import { startRedis } from '../../../test/helpers/redis';
import { SLOP, ms, now, waitFor } from '../../../test/helpers/time';
import type { NodeConfig, NodeMessage } from './fixtures/node';

const cleanup = useCleanup();
const INTERVAL = ms(300);
const TIMEOUT = ms(200);

/** A started node whose online and offline events are recorded with their times. */
async function node(url: string, options: ClusterOptions = {}): Promise<{ cluster: Cluster; events: Array<{ type: 'online' | 'offline'; key: string; at: number }> }> {
  const cluster = new Cluster({ url, interval: INTERVAL, timeout: TIMEOUT, ...options });
  cleanup.add(cluster);
  const events: Array<{ type: 'online' | 'offline'; key: string; at: number }> = [];
  cluster.on('online', (key) => events.push({ type: 'online', key, at: now() }));
  cluster.on('offline', (key) => events.push({ type: 'offline', key, at: now() }));
  await cluster.start();
  return { cluster, events };
}

/** `n` server-side WebSockets (of a server of the test's own), with their clients. */
async function sockets(n: number): Promise<WebSocket[]> {
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  const accepted: WebSocket[] = [];
  wss.on('connection', (ws) => accepted.push(ws));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.defer(() => new Promise((resolve) => server.close(resolve)));
  cleanup.defer(() => {
    for (const ws of accepted) ws.terminate();
  });
  const { port } = server.address() as AddressInfo;
  await openClientsFor(cleanup, `ws://127.0.0.1:${port}`, n);
  await waitFor(() => accepted.length === n, ms(2_000), 'the connections');
  return accepted;
}

describe('@ws-heartbeat/cluster', () => {
  test('presence across two nodes: counts per key, unique keys, a paged listing; online once per key, offline once its last connection anywhere closes', async () => {
    const redis = await startRedis(cleanup);
    const a = await node(redis.url);
    const b = await node(redis.url);
    const [a1, a2, b1] = await sockets(3);
    await a.cluster.join(a1!, 'user:1');
    await a.cluster.join(a1!, 'room:lobby');
    await a.cluster.join(a1!, 'user:1'); // twice: no-op
    await a.cluster.join(a2!, 'user:2');
    await b.cluster.join(b1!, 'user:1');

    expect(await b.cluster.isOnline('user:1')).toBe(true);
    expect(await b.cluster.connections('user:1')).toBe(2);
    expect(await a.cluster.connections('user:2')).toBe(1);
    expect(await a.cluster.count()).toBe(3);
    const listed: string[] = [];
    let cursor = '0';
    do {
      const page = await a.cluster.list('user:', cursor, 1);
      listed.push(...page.keys);
      cursor = page.cursor;
    } while (cursor !== '0');
    expect(listed.sort()).toEqual(['user:1', 'user:2']);

    a1!.close();
    await waitFor(() => a.events.some((e) => e.type === 'offline' && e.key === 'room:lobby'), ms(2_000), 'room:lobby offline');
    expect(await a.cluster.connections('user:1')).toBe(1); // still held on b
    b1!.terminate();
    await waitFor(() => b.events.some((e) => e.type === 'offline' && e.key === 'user:1'), ms(2_000), 'user:1 offline');
    for (const { events } of [a, b]) {
      const of = (type: string, key: string) => events.filter((e) => e.type === type && e.key === key).length;
      expect([of('online', 'user:1'), of('offline', 'user:1'), of('online', 'room:lobby'), of('offline', 'room:lobby'), of('online', 'user:2'), of('offline', 'user:2')]).toEqual([1, 1, 1, 1, 1, 0]);
    }
    expect(await a.cluster.isOnline('user:1')).toBe(false);
  });

  test('a node killed with -9: its keys go offline on the survivor within interval + timeout + interval, exactly once each; keys also held by the survivor stay online', async () => {
    const redis = await startRedis(cleanup);
    const survivor = await node(redis.url);
    const [held] = await sockets(1);
    await survivor.cluster.join(held!, 'shared');
    const keys = Array.from({ length: 20 }, (_, i) => `dead:${i}`);
    const child = forkChild<NodeMessage>(cleanup, path.join(__dirname, 'fixtures', 'node.ts'), {
      args: [JSON.stringify({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT, keys: [...keys, 'shared'] } satisfies NodeConfig)],
    });
    await childMessage(child, 'ready', ms(20_000));
    expect(await survivor.cluster.connections('shared')).toBe(2);
    await waitFor(() => keys.every((key) => survivor.events.some((e) => e.type === 'online' && e.key === key)), ms(2_000), 'every key online');

    child.process.kill('SIGKILL');
    const killedAt = now();
    const bound = INTERVAL + TIMEOUT + INTERVAL;
    await waitFor(() => keys.every((key) => survivor.events.some((e) => e.type === 'offline' && e.key === key)), bound + ms(2_000), 'every key offline');
    const offline = survivor.events.filter((e) => e.type === 'offline');
    expect(offline.map((e) => e.key).sort()).toEqual([...keys].sort());
    expect(Math.max(...offline.map((e) => e.at - killedAt))).toBeLessThanOrEqual(bound + SLOP);
    expect(await survivor.cluster.connections('shared')).toBe(1);
    expect(await survivor.cluster.count()).toBe(1);
  });

  test('with offlineGrace, a key that comes back on another node within the grace gets neither offline nor a second online', async () => {
    const redis = await startRedis(cleanup);
    const grace = ms(600);
    const a = await node(redis.url, { offlineGrace: grace });
    const b = await node(redis.url, { offlineGrace: grace });
    const [first, second] = await sockets(2);
    await a.cluster.join(first!, 'user:9');
    first!.terminate();
    await waitFor(() => b.events.length === 1, ms(2_000), 'online');
    await new Promise((resolve) => setTimeout(resolve, grace / 3));
    await b.cluster.join(second!, 'user:9');
    await new Promise((resolve) => setTimeout(resolve, grace + 2 * INTERVAL));
    expect(a.events.map((e) => `${e.type} ${e.key}`)).toEqual(['online user:9']);
    expect(b.events.map((e) => `${e.type} ${e.key}`)).toEqual(['online user:9']);
  });

  test('close() takes the node\'s keys offline at once and removes its keys from Redis; with Redis gone, reads reject with ClusterUnavailableError', async () => {
    const redis = await startRedis(cleanup);
    const a = await node(redis.url);
    const watcher = await node(redis.url);
    const [ws] = await sockets(1);
    await a.cluster.join(ws!, 'user:7');
    const closedAt = now();
    await a.cluster.close();
    await waitFor(() => watcher.events.some((e) => e.type === 'offline'), ms(1_000), 'offline');
    expect(watcher.events.find((e) => e.type === 'offline')!.at - closedAt).toBeLessThan(INTERVAL);
    expect(await watcher.cluster.count()).toBe(0);

    const unavailable = new Promise<boolean>((resolve) => watcher.cluster.once('available', resolve));
    await redis.kill();
    expect(await unavailable).toBe(false);
    const started = now();
    await expect(watcher.cluster.isOnline('user:7')).rejects.toBeInstanceOf(ClusterUnavailableError);
    expect(now() - started).toBeLessThan(ms(100)); // rejected at once, never left hanging
  });

  test('Redis killed and restarted without its data: within one interval of its return every node has registered again, changes made meanwhile included, and presence equals what the live connections say', async () => {
    const redis = await startRedis(cleanup);
    const a = await node(redis.url);
    const b = await node(redis.url);
    const [a1, a2, b1] = await sockets(3);
    await a.cluster.join(a1!, 'user:1');
    await a.cluster.join(a2!, 'user:2');
    await b.cluster.join(b1!, 'user:1');
    const lost = new Promise((resolve) => a.cluster.once('available', resolve));
    await redis.kill();
    await lost;
    a2!.close(); // a change while Redis is gone: kept, and sent once it is back
    const { readyAt } = await startRedis(cleanup, { port: redis.port });
    let presence: [number, number, boolean] = [0, 0, true];
    let rebuiltAt = Number.NaN;
    const deadline = readyAt + ms(5_000) + INTERVAL;
    while (now() < deadline) {
      try {
        presence = [await b.cluster.connections('user:1'), await b.cluster.count(), await b.cluster.isOnline('user:2')];
        if (presence[0] === 2 && presence[1] === 1 && !presence[2]) {
          rebuiltAt = now();
          break;
        }
      } catch {
        // not reconnected yet
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(presence).toEqual([2, 1, false]);
    // Reconnect attempts are at most an interval apart; the registration follows the reconnect at once.
    expect(rebuiltAt - readyAt).toBeLessThanOrEqual(INTERVAL + SLOP);
  });

  test('invalid options are a TypeError that names the option and the value', () => {
    expect(() => new Cluster({ interval: 0 })).toThrow(/"interval" option must be a number of milliseconds from 1 to 2147483647: got 0/);
    expect(() => new Cluster({ offlineGrace: -1 })).toThrow(/"offlineGrace" option .* got -1/);
    expect(() => new Cluster({ url: 'http://localhost' })).toThrow(/"url" option must be a redis:\/\/ or rediss:\/\/ URL: got http:\/\/localhost/);
    expect(() => new Cluster({ prefix: '{x}' })).toThrow(/"prefix" option/);
    expect(() => new Cluster({ intervall: 5 } as ClusterOptions)).toThrow(/Unknown @ws-heartbeat\/cluster option "intervall"/);
  });
});
