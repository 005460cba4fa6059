/**
 * The cluster as it runs in production: application processes of their own (fixtures/app.ts, two
 * Fastify and one Express) sharing one real redis-server. A node killed with -9 is reaped within
 * its bound, measured from the kill, with exactly one `offline` per key on every survivor; a
 * stopped node's keys go offline at once and its process exits by itself; a node cut off from
 * Redis (iptables in a network namespace) is seen dead by the others, keeps serving its
 * WebSockets, and registers again once it is back.
 */
import path from 'node:path';
import { Cluster } from '@ws-heartbeat/cluster';
import { childMessage, forkChild, type Child } from '../../../test/helpers/child';
import { useCleanup } from '../../../test/helpers/cleanup';
import { openClientFor, type TestClient } from '../../../test/helpers/clients';
import { startRedis } from '../../../test/helpers/redis';
import { SLOP, ms, settle, sleep, waitFor } from '../../../test/helpers/time';
import { mono } from '../../../test/faults/fixture/protocol';
import { useNetns } from '../../../test/faults/netns';
import type { AppConfig, AppMessage } from './fixtures/app';

const cleanup = useCleanup();
const netns = useNetns(cleanup);
const APP = path.join(__dirname, 'fixtures', 'app.ts');
// Long enough apart that "at once" (a close) and "after the lease" (a death) cannot be confused.
const INTERVAL = ms(500);
const TIMEOUT = ms(300);
/** A dead node's keys are offline within this long of its death. */
const BOUND = INTERVAL + TIMEOUT + INTERVAL;

interface App {
  child: Child<AppMessage>;
  port: number;
  id: string;
  /** The keys of the `online` or `offline` events this node's cluster emitted at or after `since` (mono()). */
  events(type: 'online' | 'offline', since?: number): Array<{ key: string; at: number }>;
}

async function startApp(config: AppConfig, wrap?: string[]): Promise<App> {
  const child = forkChild<AppMessage>(cleanup, APP, { args: [JSON.stringify(config)], wrap });
  const { message } = await childMessage(child, 'ready', ms(20_000));
  return {
    child,
    port: message.port,
    id: message.id,
    events: (type, since = 0) =>
      child.messages.flatMap(({ message: m }) => (m.type === type && m.at >= since ? [{ key: m.key, at: m.at }] : [])),
  };
}

/** Opens one client per URL, `batch` at a time. */
async function openAll(urls: string[], batch = 50): Promise<TestClient[]> {
  const clients: TestClient[] = [];
  for (let i = 0; i < urls.length; i += batch) clients.push(...(await Promise.all(urls.slice(i, i + batch).map((url) => openClientFor(cleanup, url)))));
  return clients;
}

/** How many times each key occurs. */
function tally(keys: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1);
  return counts;
}

describe('cluster nodes in processes of their own', () => {
  test('three processes (two Fastify, one Express), 300 clients: kill -9 one and its keys go offline on each survivor within interval + timeout + interval of the kill, once each; close another and its keys go offline at once and it exits by itself', async () => {
    const redis = await startRedis(cleanup);
    const watcher = cleanup.add(new Cluster({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT }));
    await watcher.start();
    const base = { url: redis.url, interval: INTERVAL, timeout: TIMEOUT };
    const apps = await Promise.all((['fastify', 'fastify', 'express'] as const).map((adapter) => startApp({ ...base, adapter })));
    // Client i is on app i % 3 and holds its own key and one of ten rooms, each room held on every app.
    const users = (app: number) => Array.from({ length: 100 }, (_, j) => `user:${3 * j + app}`);
    const urls = Array.from({ length: 300 }, (_, i) => `ws://127.0.0.1:${apps[i % 3]!.port}/ws?key=user:${i}&key=room:${i % 10}`);
    await openAll(urls);

    expect(await settle(async () => [await watcher.count(), await watcher.connections('room:0')], [310, 30], ms(5_000))).toEqual([310, 30]);
    const nodeFigures = async () => {
      const { nodes, totals } = await watcher.stats();
      const ours = apps.map((app) => nodes.find((n) => n.id === app.id));
      return [ours.map((n) => [n?.connections, n?.routes['/ws']?.connections]), totals.connections, totals.online];
    };
    expect(await settle(nodeFigures, [[[100, 100], [100, 100], [100, 100]], 300, 310], INTERVAL + ms(3_000))).toEqual([[[100, 100], [100, 100], [100, 100]], 300, 310]);
    for (const app of apps) await waitFor(() => app.events('online').length >= 310, ms(3_000), () => `every online event on every app (seen: ${apps.map((a) => a.events('online').length).join(', ')} of 310)`);

    // kill -9 a Fastify node.
    apps[0]!.child.process.kill('SIGKILL');
    const killedAt = mono();
    const dead = users(0);
    const survivors = [apps[1]!, apps[2]!];
    for (const app of survivors) await waitFor(() => app.events('offline', killedAt).length >= dead.length, BOUND + ms(3_000), 'the dead node\'s keys offline');
    await sleep(INTERVAL); // room for a second (wrong) event
    for (const app of survivors) {
      const offline = app.events('offline', killedAt);
      expect([...tally(offline.map((e) => e.key))].sort()).toEqual(dead.map((key) => [key, 1]).sort());
      expect(Math.max(...offline.map((e) => e.at - killedAt))).toBeLessThanOrEqual(BOUND + SLOP);
      expect(tally(app.events('online').map((e) => e.key)).size).toBe(310); // and never a second online
      expect(app.events('online').length).toBe(310);
    }
    expect([await watcher.count(), await watcher.connections('room:0')]).toEqual([210, 20]);
    expect((await watcher.stats()).nodes.map((n) => n.id).sort()).toEqual([watcher.id, apps[1]!.id, apps[2]!.id].sort());

    // Stop the Express node as a deployment would: SIGTERM, app.close().
    const express = apps[2]!;
    express.child.process.kill('SIGTERM');
    const { at: closingAt } = (await childMessage(express.child, 'closing', ms(2_000))).message;
    await waitFor(() => apps[1]!.events('offline', closingAt).length >= 100, ms(2_000), 'the stopped node\'s keys offline');
    const offline = apps[1]!.events('offline', closingAt);
    expect(offline.map((e) => e.key).sort()).toEqual(users(2).sort());
    expect(Math.max(...offline.map((e) => e.at - closingAt))).toBeLessThan(INTERVAL); // at once: not after its lease
    await childMessage(express.child, 'closed', ms(2_000));
    await waitFor(() => express.child.exit !== null, ms(3_000), 'the stopped node to exit by itself');
    expect(express.child.exit).toMatchObject({ code: 0, signal: null });
    expect([await watcher.count(), await watcher.connections('room:0')]).toEqual([110, 10]);
  });

  test('a node cut off from Redis (iptables in a network namespace): the others see its keys offline within the bound, once each; it keeps serving WebSockets; healed, it registers again and presence equals its live connections', async () => {
    const ns = await netns.create();
    const redis = await startRedis(cleanup, { bind: [ns.hostAddr] });
    const watcher = cleanup.add(new Cluster({ url: redis.url, interval: INTERVAL, timeout: TIMEOUT }));
    const events: Array<{ type: string; key: string; at: number }> = [];
    watcher.on('online', (key) => events.push({ type: 'online', key, at: mono() }));
    watcher.on('offline', (key) => events.push({ type: 'offline', key, at: mono() }));
    await watcher.start();
    const config: AppConfig = { adapter: 'fastify', url: `redis://${ns.hostAddr}:${redis.port}`, host: ns.nsAddr, interval: INTERVAL, timeout: TIMEOUT, commandTimeout: ms(200) };
    const app = await startApp(config, ['ip', 'netns', 'exec', ns.name]);
    const keys = Array.from({ length: 20 }, (_, i) => `cut:${i}`);
    const clients = await openAll(keys.map((key) => `ws://${ns.nsAddr}:${app.port}/ws?key=${key}`));
    await waitFor(() => keys.every((key) => events.some((e) => e.type === 'online' && e.key === key)), ms(3_000), 'every key online');

    await ns.exec('iptables', ['-A', 'OUTPUT', '-p', 'tcp', '--dport', String(redis.port), '-j', 'DROP']);
    await ns.exec('iptables', ['-A', 'INPUT', '-p', 'tcp', '--sport', String(redis.port), '-j', 'DROP']);
    const cutAt = mono();
    await waitFor(() => events.filter((e) => e.type === 'offline').length >= keys.length, BOUND + ms(3_000), 'the cut-off node\'s keys offline');
    const offline = events.filter((e) => e.type === 'offline');
    expect([...tally(offline.map((e) => e.key))].sort()).toEqual(keys.map((key) => [key, 1]).sort());
    expect(Math.max(...offline.map((e) => e.at - cutAt))).toBeLessThanOrEqual(BOUND + SLOP);
    // WebSockets never depend on Redis: its connections stay open, and a new one is served.
    expect(clients.every((c) => c.closeInfo === null)).toBe(true);
    await openClientFor(cleanup, `ws://${ns.nsAddr}:${app.port}/ws?key=cut:late`);

    await ns.exec('iptables', ['-F']);
    const healedAt = mono();
    await waitFor(() => events.filter((e) => e.type === 'online' && e.at >= healedAt).length >= keys.length + 1, ms(10_000), 'the node registered again');
    const back = events.filter((e) => e.type === 'online' && e.at >= healedAt);
    expect(back.map((e) => e.key).sort()).toEqual([...keys, 'cut:late'].sort());
    expect(await watcher.count()).toBe(keys.length + 1);
    // A new connection within a connect attempt (commandTimeout) and a reconnect backoff (at most an interval).
    expect(Math.max(...back.map((e) => e.at - healedAt))).toBeLessThanOrEqual(config.commandTimeout! + INTERVAL + SLOP);
  });
});
