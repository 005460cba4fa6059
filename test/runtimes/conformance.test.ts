/**
 * Runtime conformance: one behaviour on Node 20, 22, 24 and Bun. For each runtime, the server
 * fixture (fixture/server.mjs, the built packages the README's way) runs under it three times:
 * core's router alone, the Fastify plugin, the Express adapter. The clients run here, under the
 * test's Node 20: `ws`, Python's `websockets` and Chromium with the client page. With the fault
 * suite's timers (interval 200 ms, timeout 100 ms, closeTimeout 300 ms), each server must:
 * terminate a silent peer at interval + timeout (never before, at most one tick plus slop
 * after); keep a busy peer that never answers pings, and idle peers that answer them; apply a
 * route's own heartbeat; refuse with 401 before any 101; answer 404 to an unknown path and leave
 * another 'upgrade' listener its paths; free a FIN-only peer with megabytes queued to it by
 * closeTimeout; enforce maxPayload (1009); count in stats() what the clients saw; close with 1001
 * (1012 with retryWithin); and exit by itself.
 *
 * The tests of one server run in order: each leaves nothing open (its clients closed), so the
 * counts of the stats test and the close test are exactly what they opened.
 */
import path from 'node:path';
import type { Browser } from 'playwright-core';
import type { ClientOptions } from 'ws';
import { launchChromium } from '../helpers/browser';
import { childMessage, forkChild } from '../helpers/child';
import { maskedFrame, OPCODE, openClient, rawUpgrade, type TestClient } from '../helpers/clients';
import { useCleanup } from '../helpers/cleanup';
import { ROOT } from '../helpers/demo';
import { CLOSE_TIMEOUT, EPSILON, INTERVAL, SLOP, TIMEOUT, ms, now, settle, sleep, waitFor } from '../helpers/time';
import { listRuntimes, rawAnswer, spawnUnder, startServer, type Runtime, type RuntimeServer, type ServerKind } from './support';

const RUNTIMES = listRuntimes();
/** core closes with 1001; the Fastify plugin with 1012 (its retryWithin option); Express with 1012 (close({ retryWithin })). */
const KINDS: Array<{ kind: ServerKind; retryWithin?: number }> = [{ kind: 'core' }, { kind: 'fastify', retryWithin: 2000 }, { kind: 'express', retryWithin: 2000 }];
const CONFIG = { interval: INTERVAL, timeout: TIMEOUT, closeTimeout: CLOSE_TIMEOUT };
const BOUND = INTERVAL + TIMEOUT;
const TEN_INTERVALS = 10 * INTERVAL;
/** Fewest pings in ten intervals if every cycle is late by SLOP. */
const MIN_PINGS = Math.floor(TEN_INTERVALS / (INTERVAL + SLOP));
const MiB = 1024 * 1024;
const PYTHON = '/usr/bin/python3';
const PY_PEER = path.join(ROOT, 'test', 'faults', 'peers', 'py_peer.py');
const TRANSFER_PEER = path.join(ROOT, 'test', 'faults', 'peers', 'transfer-peer.js');
type TransferMessage = { type: 'open' } | { type: 'message'; length: number } | { type: 'closed'; code: number };

/** Sends `text` and waits for its echo. */
async function echo(client: TestClient, text: string): Promise<void> {
  const before = client.messages.length;
  client.ws.send(text);
  await waitFor(() => client.messages.slice(before).some((m) => String(m.data) === text), ms(2000), `the echo of "${text}"`);
}

let browser: Browser | undefined;
afterAll(async () => browser?.close());

describe.each(RUNTIMES)('$name $version', (runtime: Runtime) => {
  describe.each(KINDS)('$kind', ({ kind, retryWithin }) => {
    const cleanup = useCleanup('all');
    const each = useCleanup();
    let server: RuntimeServer;
    /** Opens a `ws` client that the test's cleanup closes. */
    async function client(p: string, options?: ClientOptions): Promise<TestClient> {
      const c = await openClient(server.url(p), options);
      each.defer(async () => {
        c.ws.terminate();
        await c.closed;
      });
      return c;
    }

    beforeAll(async () => {
      server = await startServer(cleanup, runtime, kind, { ...CONFIG, ...(retryWithin === undefined ? {} : { retryWithin }) });
    });

    it('runs on the runtime it was started under', () => {
      expect(server.runtime).toBe(runtime.name === 'bun' ? `bun ${runtime.version}` : `node ${runtime.version}`);
    });

    it('a silent peer is terminated at interval + timeout: never before, at most a tick plus slop after', async () => {
      const silent = await client('/ws/echo', { autoPong: false });
      const end = await silent.closed;
      const terminated = await server.next('terminate', (s) => s.route !== undefined && s.at >= silent.startedAt);
      expect(terminated).toMatchObject({ reason: 'timeout' });
      expect(end.code).toBe(1006);
      expect(end.at - silent.startedAt).toBeGreaterThanOrEqual(BOUND - EPSILON);
      expect(end.at - silent.openedAt).toBeLessThanOrEqual(BOUND + SLOP);
      expect(silent.pings).toBe(1);
    });

    it('healthy peers survive ten intervals: an idle ws client and a Python websockets client answer pings, a busy ws client that never answers them is left alone', async () => {
      const before = server.terminations().length;
      const py = spawnUnder(cleanup, { name: 'python3', bin: PYTHON, version: '' }, [PY_PEER, 'healthy', server.url('/ws/echo'), String(INTERVAL), String(TEN_INTERVALS)]);
      const idle = await client('/ws/echo');
      const busy = await client('/ws/echo', { autoPong: false });
      const opening = now();
      const chatter = setInterval(() => busy.ws.send('busy'), INTERVAL / 2);
      each.defer(() => clearInterval(chatter));
      await sleep(TEN_INTERVALS);
      clearInterval(chatter);

      expect(idle.pingTimes.filter((t) => t <= opening + TEN_INTERVALS).length).toBeGreaterThanOrEqual(MIN_PINGS);
      expect(idle.closeInfo).toBeNull();
      expect(busy.closeInfo).toBeNull();
      await echo(idle, 'idle');
      await echo(busy, 'busy');
      const report = await py.next('report', undefined, ms(5000));
      expect(report).toMatchObject({ open: true, echoed: true });
      expect(report.pongsSent).toBeGreaterThanOrEqual(MIN_PINGS);
      expect((await py.next('closed')).code).toBe(1000);
      expect(server.terminations().length).toBe(before);
    });

    it("per-route settings apply: a silent peer on /ws/slow is terminated at that route's 2 × (interval + timeout)", async () => {
      const silent = await client('/ws/slow', { autoPong: false });
      const end = await silent.closed;
      expect(end.at - silent.startedAt).toBeGreaterThanOrEqual(2 * BOUND - EPSILON);
      expect(end.at - silent.openedAt).toBeLessThanOrEqual(2 * BOUND + SLOP);
      expect(server.terminations().at(-1)).toMatchObject({ reason: 'timeout' });
    });

    it(`${kind === 'fastify' ? 'an onRequest hook' : 'authenticate'} refuses with 401 before any 101, and the socket is closed`, async () => {
      const refused = await rawAnswer(server.port, '/ws/auth?token=wrong');
      expect(refused.status).toBe(401);
      expect(refused.raw).not.toContain('101 Switching');
      expect(refused.closedByServer).toBe(true);
      const accepted = await client('/ws/auth?token=secret');
      await echo(accepted, 'let in');
    });

    it("an unknown path gets 404; another 'upgrade' listener added later keeps its own paths, and ours still work", async () => {
      const unknown = await rawAnswer(server.port, '/nowhere');
      expect(unknown.status).toBe(404);
      expect(unknown.closedByServer).toBe(true);
      await server.control('other');
      await echo(await client('/other'), 'theirs');
      await echo(await client('/ws/echo'), 'ours');
    });

    it('a FIN-only peer with megabytes queued to it is freed no later than closeTimeout after its FIN', async () => {
      const peer = await rawUpgrade(server.port, '/ws/echo');
      each.defer(() => peer.socket.destroy());
      peer.socket.write(maskedFrame(OPCODE.text, `!send ${16 * MiB}`));
      await sleep(ms(100)); // the 16 MiB are queued at once; the peer never reads them
      const finAt = now();
      peer.socket.end();
      const gone = await server.next('gone', (s) => s.at >= finAt, CLOSE_TIMEOUT + ms(2000));
      expect(gone.at - finAt).toBeLessThanOrEqual(CLOSE_TIMEOUT + SLOP);
      // Node's `ws` waits for the queue to drain, and the engine ends the wait at closeTimeout; a
      // runtime that closes at once by itself (Bun) needs no termination.
      const freed = server.terminations().filter((s) => s.at >= finAt);
      if (runtime.name === 'bun') expect(freed).toEqual([]);
      else {
        expect(freed).toMatchObject([{ reason: 'close-timeout' }]);
        expect(freed[0]!.at - finAt).toBeGreaterThanOrEqual(CLOSE_TIMEOUT - EPSILON);
      }
    });

    // The queue to the peer is the engine's, the same under every adapter: one kind per runtime.
    (kind === 'core' ? it : it.skip)('a peer reading a 16 MiB download at 4 MB/s survives, its pong waiting behind the download: our queue moving proves it alive', async () => {
      const reader = forkChild<TransferMessage>(each, TRANSFER_PEER, { args: [server.url('/ws/transfer'), '0', 'plain'] });
      await childMessage(reader, 'open', ms(5000));
      reader.process.send({ cmd: 'read-slowly', rate: 4_000_000 });
      reader.process.send({ cmd: 'send', text: `!burst 16 ${MiB}` });
      const said = () => reader.messages.map((m) => m.message);
      await waitFor(() => said().filter((m) => m.type === 'message').length === 16 || said().some((m) => m.type === 'closed'), ms(30_000), 'all 16 MiB to arrive');
      expect(said().filter((m) => m.type === 'closed')).toEqual([]);
      expect(said().filter((m) => m.type === 'message').map((m) => m.length)).toEqual(Array.from({ length: 16 }, () => MiB));
      expect(server.terminations().filter((s) => s.route === '/ws/transfer')).toEqual([]);
    });

    it('maxPayload is enforced: a 2 KiB message on a route with maxPayload 1024 is closed with 1009', async () => {
      const sender = await client('/ws/small');
      sender.ws.send(Buffer.alloc(2048));
      expect((await sender.closed).code).toBe(1009);
      const fits = await client('/ws/small');
      await echo(fits, 'x'.repeat(1000));
    });

    it('the client page in Chromium keeps its connection: its heartbeats are answered and it is never declared dead', async () => {
      browser ??= await launchChromium();
      const page = await browser.newPage();
      each.defer(() => page.close());
      // A page of the server's own origin (Chromium blocks a blank page's connections to 127.0.0.1),
      // importing the client's browser build the README's way.
      await page.goto(`http://127.0.0.1:${server.port}/control/page`);
      // A string, not a function: ts-jest would compile the function's import() into require().
      const seen = (await page.evaluate(`(async () => {
        const { HeartbeatClient } = await import('/control/client.js');
        const client = new HeartbeatClient(${JSON.stringify(server.url('/ws/echo'))});
        const seen = { opens: 0, heartbeats: 0, dead: 0, echoed: false };
        client.on('open', () => {
          seen.opens += 1;
          client.send('page');
        });
        client.on('heartbeat', () => (seen.heartbeats += 1));
        client.on('dead', () => (seen.dead += 1));
        client.on('message', ({ data }) => (seen.echoed ||= data === 'page'));
        await new Promise((resolve) => setTimeout(resolve, ${TEN_INTERVALS}));
        client.close();
        return seen;
      })()`)) as { opens: number; heartbeats: number; dead: number; echoed: boolean };
      expect(seen).toMatchObject({ opens: 1, dead: 0, echoed: true });
      expect(seen.heartbeats).toBeGreaterThanOrEqual(3);
    });

    it('stats() counts what the clients saw: open connections per route, and every termination by reason', async () => {
      const open = await Promise.all([client('/ws/echo'), client('/ws/echo'), client('/ws/slow')]);
      await Promise.all(open.map((c, i) => echo(c, `count ${i}`)));
      type Stats = { connections: number; terminations: Record<string, number> };
      // The earlier tests' clients are closed; the server may see the last of them a moment later.
      expect(await settle(async () => (await server.control<Stats>('stats')).connections, 3, ms(2000))).toBe(3);
      const stats = await server.control<Stats>('stats');
      expect(stats.connections).toBe(3);
      const said = server.terminations();
      for (const reason of ['timeout', 'close-timeout', 'backpressure', 'shutdown']) {
        expect(stats.terminations[reason]).toBe(said.filter((s) => s.reason === reason).length);
      }
      expect(stats.terminations.timeout).toBe(2); // the silent peers of /ws/echo and /ws/slow
      expect(stats.terminations['close-timeout']).toBe(runtime.name === 'bun' ? 0 : 1); // the FIN-only peer
    });

    (kind === 'core' ? it : it.skip)("the engine says once, at info, where the runtime reads sockets out of its sight (Bun), and never on Node", () => {
      const said = server.said.filter((s) => s.type === 'log' && String(s.msg).includes('out of sight'));
      if (runtime.name === 'bun') expect(said).toMatchObject([{ level: 'info', fields: { runtime: `bun ${runtime.version}` } }]);
      else expect(said).toEqual([]);
    });

    it(`close() sends ${retryWithin === undefined ? '1001' : '1012 with the retry hint'} to every connection, then the process exits by itself`, async () => {
      const open = await Promise.all([client('/ws/echo'), client('/ws/slow')]);
      await server.control('close');
      for (const c of open) {
        const end = await c.closed;
        expect(end.code).toBe(retryWithin === undefined ? 1001 : 1012);
        if (retryWithin !== undefined) expect(end.reason).toBe(`Server restarting, retry within ${retryWithin} ms`);
      }
      await server.next('closed', undefined, CLOSE_TIMEOUT + ms(2000));
      const exit = await Promise.race([server.exited, sleep(CLOSE_TIMEOUT + ms(3000)).then(() => 'still running')]);
      expect(exit).toBe(0);
      expect(server.said.filter((s) => s.type === 'fault')).toEqual([]);
    });
  });
});
