/**
 * The demo as a cluster, against a real redis-server (test/helpers/redis.ts): demo processes with
 * REDIS_URL (examples/server.mjs with examples/cluster.mjs), their GET /cluster, the `cluster`
 * field of their /events feed and their dashboard in Chromium; and `pnpm demo:cluster`'s script
 * (scripts/demo-cluster.mjs), which starts Redis and three demos and stops them all.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { ClusterStats, NodeStats } from '@ws-heartbeat/cluster';
import { launchChromium } from './helpers/browser';
import { killProcess } from './helpers/child';
import { useCleanup } from './helpers/cleanup';
import { type Demo, EXIT_BOUND, ROOT, connectToDemo, openEvents, startDemo, terminateDemo } from './helpers/demo';
import { startRedis } from './helpers/redis';
import { ms, now, sleep, waitFor } from './helpers/time';

const cleanup = useCleanup();

/** The demo's cluster settings (examples/cluster.mjs): a node publishes its figures every interval. */
const CLUSTER = { interval: 2000, timeout: 1000 };
/** How often a demo reads its view of the cluster (examples/cluster.mjs). */
const VIEW_PERIOD_MS = 1000;
/** A connection opened now is in every node's view by then: the next snapshot, the next read, and slack. */
const VIEW_BOUND = CLUSTER.interval + VIEW_PERIOD_MS + ms(1500);
const SCRIPT = join(ROOT, 'scripts', 'demo-cluster.mjs');
const JOINED = /^joined the cluster at redis:\/\/127\.0\.0\.1:\d+ as [^:\s]+:\d+, \d+ nodes? live/;

/** What GET /cluster answers and the feed's `cluster` field holds (examples/cluster.mjs). */
interface ClusterView {
  state: 'starting' | 'available' | 'unavailable' | 'error';
  at: number;
  redis: string;
  self: string;
  interval: number;
  timeout: number;
  nodes?: NodeStats[];
  totals?: ClusterStats['totals'];
  presence?: { online: number; users: { keys: string[]; more: boolean }; rooms: Record<string, number> };
  error?: string;
  since?: number;
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** Polls GET /cluster until `done(view)` or `timeout`; returns the last view either way, for the test to assert on. */
async function viewUntil(port: number, done: (view: ClusterView) => boolean, timeout: number): Promise<ClusterView> {
  const deadline = now() + timeout;
  for (;;) {
    const view = JSON.parse((await get(port, '/cluster')).body) as ClusterView;
    if (done(view) || now() > deadline) return view;
    await sleep(100);
  }
}

/** Reads the /events feed until a `stats` event's `cluster` satisfies `done`, or `timeout`; returns the last one. */
async function feedUntil(port: number, done: (view: ClusterView) => boolean, timeout: number): Promise<ClusterView | undefined> {
  const feed = await openEvents(cleanup, port);
  const deadline = now() + timeout;
  let last: ClusterView | undefined;
  while (now() < deadline) {
    last = (JSON.parse((await feed.next('stats')).data) as { cluster?: ClusterView }).cluster;
    if (last !== undefined && done(last)) break;
  }
  return last;
}

/** Each node's connections, in total and per WebSocket route, by pid. */
function connectionsByPid(view: ClusterView): Record<number, { total: number; echo: number; fast: number }> {
  return Object.fromEntries(
    (view.nodes ?? []).map((node) => [
      node.pid,
      { total: node.connections, echo: node.routes['/ws/echo']?.connections ?? 0, fast: node.routes['/ws/fast']?.connections ?? 0 },
    ]),
  );
}

function startClusterDemo(redisUrl: string): Promise<Demo> {
  return startDemo(cleanup, 0, { env: { REDIS_URL: redisUrl } });
}

/** Waits for the demo's line about the cluster: joined, or a warning. */
async function clusterLine(demo: Demo): Promise<void> {
  await waitFor(() => demo.lines.some((line) => JOINED.test(line)) || demo.errorLines.length > 0, ms(5000), 'the line about the cluster');
}

function echoes(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => {
    ws.once('message', (data) => resolve(String(data)));
    ws.send('still here');
  });
}

/** A port of 127.0.0.1 from which `count` consecutive ports were free a moment ago. */
async function freePorts(count: number): Promise<number> {
  const listen = (port: number): Promise<net.Server> =>
    new Promise((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const servers: net.Server[] = [];
    try {
      servers.push(await listen(0));
      const base = (servers[0]!.address() as net.AddressInfo).port;
      if (base + count - 1 > 65535) continue;
      for (let i = 1; i < count; i++) servers.push(await listen(base + i));
      return base;
    } catch {
      // one of them is taken: another run
    } finally {
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    }
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the demo with REDIS_URL', () => {
  test('two demos: /cluster and the feed of either show both nodes with their connections, and presence counts keys', async () => {
    const redis = await startRedis(cleanup);
    const a = await startClusterDemo(redis.url);
    await clusterLine(a);
    const b = await startClusterDemo(redis.url);
    await clusterLine(b);
    // The startup output: the URL line, then one line saying it joined (the second sees 2 nodes).
    for (const demo of [a, b]) {
      expect(demo.lines.filter((line) => line.includes('http://'))).toHaveLength(1);
      expect(demo.lines.filter((line) => JOINED.test(line))).toHaveLength(1);
      expect(demo.errorLines).toEqual([]);
    }
    expect(b.lines.find((line) => JOINED.test(line))).toContain(`:${b.child.pid}, 2 nodes live`);

    const [aliceOnA] = await Promise.all([
      connectToDemo(cleanup, a.port, '/ws/fast?user=alice'),
      connectToDemo(cleanup, a.port, '/ws/echo?user=bob'),
      connectToDemo(cleanup, b.port, '/ws/fast?user=alice'),
      connectToDemo(cleanup, b.port, '/ws/fast'), // anonymous: joins nothing
      connectToDemo(cleanup, b.port, '/ws/echo?user=carol'),
    ]);
    const expected = {
      [a.child.pid!]: { total: 2, echo: 1, fast: 1 },
      [b.child.pid!]: { total: 3, echo: 1, fast: 2 },
    };
    const matches = (view: ClusterView): boolean => view.state === 'available' && JSON.stringify(connectionsByPid(view)) === JSON.stringify(expected) && view.presence?.online === 5;

    const view = await viewUntil(a.port, matches, VIEW_BOUND);
    expect(view.state).toBe('available');
    expect(connectionsByPid(view)).toEqual(expected);
    expect(view.totals).toMatchObject({ nodes: 2, connections: 5, online: 5, overloaded: 0 });
    // Keys, not sockets: alice's two connections are one key; the anonymous one is none.
    expect(view.presence).toEqual({
      online: 5,
      users: { keys: ['user:alice', 'user:bob', 'user:carol'], more: false },
      rooms: { '/ws/echo': 2, '/ws/fast': 2 },
    });
    expect(view.nodes?.find((node) => node.id === view.self)?.pid).toBe(a.child.pid);
    expect(view).toMatchObject({ interval: CLUSTER.interval, timeout: CLUSTER.timeout, redis: redis.url });
    for (const node of view.nodes ?? []) expect(node.leaseAge).toBeLessThanOrEqual(CLUSTER.interval + CLUSTER.timeout);

    // The other node's feed carries the same view as its `cluster` field, with itself as `self`.
    const fromFeed = await feedUntil(b.port, matches, VIEW_PERIOD_MS + ms(1500));
    expect(fromFeed && connectionsByPid(fromFeed)).toEqual(expected);
    expect(fromFeed?.presence).toEqual(view.presence);
    expect(fromFeed?.nodes?.find((node) => node.id === fromFeed.self)?.pid).toBe(b.child.pid);

    // alice leaves a: still online through b; the room counts one connection fewer at once.
    aliceOnA.close();
    const after = await viewUntil(a.port, (v) => v.presence?.rooms['/ws/fast'] === 1, VIEW_PERIOD_MS + ms(1500));
    expect(after.presence).toMatchObject({ online: 5, rooms: { '/ws/echo': 2, '/ws/fast': 1 } });
  });

  test('Redis killed: the demo still accepts WebSockets and reports Redis unavailable, once; it rejoins when Redis is back', async () => {
    const redis = await startRedis(cleanup);
    const demo = await startClusterDemo(redis.url);
    await clusterLine(demo);
    expect(demo.lines.filter((line) => JOINED.test(line))).toHaveLength(1);

    await redis.kill();
    const down = await viewUntil(demo.port, (view) => view.state === 'unavailable', VIEW_PERIOD_MS + ms(1500));
    expect(down).toMatchObject({ state: 'unavailable', redis: redis.url, error: expect.any(String) });
    expect(down.nodes).toBeUndefined();
    const fromFeed = await feedUntil(demo.port, (view) => view.state === 'unavailable', ms(1500));
    expect(fromFeed?.state).toBe('unavailable');

    const dave = await connectToDemo(cleanup, demo.port, '/ws/fast?user=dave');
    expect(await echoes(dave)).toBe('still here');
    const anonymous = await connectToDemo(cleanup, demo.port, '/ws/echo');
    expect(await echoes(anonymous)).toBe('still here');
    expect(demo.errorLines).toEqual([`warning: Redis at ${redis.url} does not answer: still serving WebSockets on this process`]);

    // A new, empty Redis on the same port: the node registers again with the keys it holds.
    await startRedis(cleanup, { port: redis.port });
    const back = await viewUntil(demo.port, (view) => view.state === 'available' && view.presence?.online === 2 && view.nodes?.length === 1, CLUSTER.interval * 2 + VIEW_BOUND);
    expect(back.state).toBe('available');
    expect(back.nodes?.map((node) => node.pid)).toEqual([demo.child.pid]);
    expect(back.presence).toEqual({ online: 2, users: { keys: ['user:dave'], more: false }, rooms: { '/ws/echo': 0, '/ws/fast': 1 } });
    await waitFor(() => demo.lines.some((line) => line.startsWith('cluster: Redis at ')), ms(1000), 'the line saying Redis answers again');
    expect(demo.errorLines).toHaveLength(1);
  });

  test('no Redis at startup: the URL line, one warning, WebSockets served, /cluster unavailable; SIGTERM still exits by itself', async () => {
    const nothing = `redis://127.0.0.1:${await freePorts(1)}`;
    const demo = await startClusterDemo(nothing);
    await clusterLine(demo);
    expect(demo.lines.filter((line) => line.includes('http://'))).toHaveLength(1);
    expect(demo.lines.some((line) => JOINED.test(line))).toBe(false);
    expect(demo.errorLines).toEqual([`warning: Redis at ${nothing} does not answer: serving WebSockets on this process alone; it joins the cluster once Redis answers`]);

    const ws = await connectToDemo(cleanup, demo.port, '/ws/fast?user=erin');
    expect(await echoes(ws)).toBe('still here');
    expect(JSON.parse((await get(demo.port, '/cluster')).body)).toMatchObject({ state: 'unavailable', redis: nothing });

    const signalled = now();
    expect(await terminateDemo(demo)).toEqual({ code: 0, signal: null });
    expect(now() - signalled).toBeLessThanOrEqual(EXIT_BOUND);
  });

  test('the dashboard in Chromium: the cluster view with both nodes and the presence count, then "Redis unavailable"; hidden without REDIS_URL', async () => {
    const redis = await startRedis(cleanup);
    const a = await startClusterDemo(redis.url);
    const b = await startClusterDemo(redis.url);
    const plain = await startDemo(cleanup);
    await Promise.all([clusterLine(a), clusterLine(b)]);
    const browser = cleanup.add(await launchChromium());
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));

    await page.goto(`http://127.0.0.1:${plain.port}/`);
    await page.waitForFunction(`document.querySelector('#connections-total').textContent === '0'`, null, { timeout: ms(3000) });
    expect(await page.isHidden('#cluster')).toBe(true);
    expect(await page.isHidden('#cluster-status')).toBe(true);

    await page.goto(`http://127.0.0.1:${a.port}/`);
    await Promise.all([connectToDemo(cleanup, b.port, '/ws/fast?user=alice'), connectToDemo(cleanup, b.port, '/ws/echo?user=bob')]);
    // user:alice, user:bob, room:/ws/fast and room:/ws/echo; b's two connections in its row.
    await page.waitForFunction(
      `document.querySelectorAll('#cluster-nodes tr').length === 2 && document.querySelector('#cluster-online').textContent === '4' &&
       document.querySelector('#cluster-nodes tr[data-pid="${b.child.pid}"] [data-figure="node-connections"]')?.textContent === '2'`,
      null,
      { timeout: VIEW_BOUND },
    );
    expect(await page.textContent(`#cluster-nodes tr[data-self="true"]`)).toContain(`:${a.child.pid}`);
    expect(await page.isVisible('#cluster')).toBe(true);

    await redis.kill();
    await page.waitForFunction(`document.querySelector('#cluster').dataset.state === 'unavailable'`, null, { timeout: VIEW_PERIOD_MS + ms(1500) });
    expect(await page.textContent('#cluster-problem')).toContain('Redis unavailable');
    expect(await page.textContent('#cluster-status')).toBe('cluster · Redis unavailable');
    expect(pageErrors).toEqual([]);
  });
});

describe('scripts/demo-cluster.mjs (pnpm demo:cluster)', () => {
  /** Runs the script with `env` over this environment (without HOST and REDIS_URL); its children are killed by the cleanup if still there. */
  function runScript(env: Record<string, string>): { child: ChildProcessWithoutNullStreams; output: string[]; pids: number[]; exited: Promise<number | null> } {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    delete childEnv.HOST;
    delete childEnv.REDIS_URL;
    const child = spawn(process.execPath, [SCRIPT], { cwd: ROOT, env: childEnv });
    const output: string[] = [];
    const pids: number[] = [];
    // Its children have process groups of their own: if the test fails half-way, kill them here.
    cleanup.defer(() => {
      for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    });
    cleanup.defer(() => killProcess(child));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    for (const stream of [child.stdout, child.stderr]) {
      let pending = '';
      stream.setEncoding('utf8').on('data', (chunk: string) => {
        const lines = (pending + chunk).split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) {
          output.push(line);
          for (const match of line.matchAll(/\(pid (\d+)\)/g)) if (!pids.includes(Number(match[1]))) pids.push(Number(match[1]));
        }
      });
    }
    return { child, output, pids, exited };
  }

  test('starts Redis and three demos on PORT, PORT+1 and PORT+2 in one cluster; SIGTERM stops all, each exiting by itself', async () => {
    const base = await freePorts(3);
    const ports = [base, base + 1, base + 2];
    const script = runScript({ PORT: String(base) });
    await waitFor(() => script.output.some((line) => line.startsWith('demo:cluster: 3 demos in one cluster')) || script.child.exitCode !== null, ms(20_000), 'the three demos');
    const summary = script.output.find((line) => line.startsWith('demo:cluster: 3 demos in one cluster'));
    expect(summary).toBeDefined();
    for (const port of ports) expect(summary).toContain(`http://127.0.0.1:${port} (pid `);
    const redisPid = Number(/redis-server \(pid (\d+)\) on redis:\/\/127\.0\.0\.1:\d+/.exec(script.output.join('\n'))?.[1]);
    const demoPids = [...summary!.matchAll(/\(pid (\d+)\)/g)].map((match) => Number(match[1]));
    expect(demoPids).toHaveLength(3);

    // Each answers, and each one's view has all three nodes.
    for (const port of ports) {
      expect((await get(port, '/')).status).toBe(200);
      const view = await viewUntil(port, (v) => v.nodes?.length === 3, VIEW_BOUND);
      expect(view.nodes?.map((node) => node.pid).sort()).toEqual([...demoPids].sort());
    }

    const signalled = now();
    script.child.kill('SIGTERM');
    let exitTimer: NodeJS.Timeout | undefined;
    const code = await Promise.race([script.exited, new Promise<'still running'>((resolve) => (exitTimer = setTimeout(resolve, EXIT_BOUND + ms(2000), 'still running')))]);
    clearTimeout(exitTimer);
    expect(code).toBe(0);
    expect(now() - signalled).toBeLessThanOrEqual(EXIT_BOUND + ms(2000));
    // One SIGTERM each: every demo closed and exited with code 0 by itself, then Redis.
    for (const port of ports) {
      expect(script.output.filter((line) => line === `[${port}] SIGTERM: closing (send it again to exit at once)`)).toHaveLength(1);
      expect(script.output).toContain(`[${port}] all connections closed`);
    }
    for (const pid of demoPids) expect(script.output.some((line) => new RegExp(`^demo:cluster: \\d+ \\(pid ${pid}\\) exited with code 0$`).test(line))).toBe(true);
    expect(script.output).toContain(`demo:cluster: redis (pid ${redisPid}) exited with code 0`);
    expect(script.output.findIndex((line) => line.startsWith('demo:cluster: redis (pid'))).toBeGreaterThan(
      Math.max(...demoPids.map((pid) => script.output.findIndex((line) => line.includes(`(pid ${pid}) exited`)))),
    );
    for (const pid of [...demoPids, redisPid]) expect(alive(pid)).toBe(false);
  });

  test('without redis-server: says to install Debian\'s redis-server (or run scripts/system-deps.mjs) and exits 1', async () => {
    const script = runScript({ PATH: '/nonexistent', PORT: String(await freePorts(3)) });
    expect(await script.exited).toBe(1);
    const text = script.output.join('\n');
    expect(text).toContain('redis-server was not found');
    expect(text).toContain('apt-get install redis-server');
    expect(text).toContain('node scripts/system-deps.mjs');
    expect(text).not.toContain('listening on');
  });
});
