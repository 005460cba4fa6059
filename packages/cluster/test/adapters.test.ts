/**
 * The cluster through both adapters, against a real redis-server: a route's `presence` option
 * joins each connection to keys from its request, the keys leave when it closes, and closing the
 * app takes the node's keys offline at once.
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import wsHeartbeat from '@ws-heartbeat/fastify';
import { WebSocketRoutes } from '@ws-heartbeat/express';
import { Cluster } from '@ws-heartbeat/cluster';
import { useCleanup } from '../../../test/helpers/cleanup';
import { openClientFor } from '../../../test/helpers/clients';
import { startRedis } from '../../../test/helpers/redis';
import { ms, now, waitFor } from '../../../test/helpers/time';

const cleanup = useCleanup();
const INTERVAL = ms(300);
const TIMEOUT = ms(200);

interface App {
  url: string;
  close(): Promise<void>;
}

/** An app of `adapter` whose /ws/:room route holds the keys `user:<query user>` and `room:<room>`. */
async function startApp(adapter: 'fastify' | 'express', cluster: Cluster): Promise<App> {
  if (adapter === 'fastify') {
    const app = Fastify();
    await app.register(wsHeartbeat, { cluster });
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
    return { url: `ws://127.0.0.1:${port}`, close };
  }
  const sockets = new WebSocketRoutes({ cluster });
  sockets.route('/ws/:room', { presence: (req) => [`user:${String(req.query.user)}`, `room:${String(req.params.room)}`] }, () => {});
  const server = express().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  sockets.mount(server);
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= sockets.close().then(() => new Promise<void>((resolve) => server.close(() => resolve()))));
  cleanup.defer(close);
  return { url: `ws://127.0.0.1:${port}`, close };
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
