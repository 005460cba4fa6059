/**
 * The client package under Node 22, 24 and Bun, on each runtime's own global WebSocket: no `ws`
 * can be found for it (fixture/client.mjs runs from an empty folder, beside the client's browser
 * build, which imports nothing). The server is core's router with appHeartbeat, here under the
 * test's Node, behind a relay that can freeze: it stops passing bytes on the connections it
 * carries, as a vanished server or a dropped NAT entry would, and passes new ones. The client must
 * declare the server dead no later than pingInterval + pongTimeout after the freeze (and never
 * before that much silence), then reconnect and be answered again.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UpgradeRouter } from '@ws-heartbeat/core';
import { useCleanup, type Cleanup } from '../helpers/cleanup';
import { ROOT } from '../helpers/demo';
import { CLOSE_TIMEOUT, EPSILON, NEVER, SLOP, ms, now } from '../helpers/time';
import { CLIENT_FIXTURE, listRuntimes, spawnUnder } from './support';

const PING = ms(300);
const PONG = ms(200);
/** A line of the client's stdout arrives here a little after the client said it. */
const PIPE_SLOP = ms(20);
const CLIENT_BUILD = path.join(ROOT, 'packages', 'client', 'dist', 'browser.js');

/** A relay to `upstream` whose `freeze()` stops every connection it carries; new ones pass. */
async function startRelay(cleanup: Cleanup, upstream: number): Promise<{ port: number; freeze(): void }> {
  const pairs = new Set<[Socket, Socket]>();
  /** Frozen pairs: they read nothing any more, so only destroying them ends them. */
  const frozen: Array<[Socket, Socket]> = [];
  const server = net.createServer((inbound) => {
    const outbound = net.connect(upstream, '127.0.0.1');
    const pair: [Socket, Socket] = [inbound, outbound];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      inbound.destroy();
      outbound.destroy();
    };
    for (const socket of pair) {
      socket.on('error', end);
      socket.on('close', end);
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.defer(async () => {
    for (const [a, b] of [...pairs, ...frozen]) {
      a.destroy();
      b.destroy();
    }
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    port: (server.address() as AddressInfo).port,
    freeze() {
      for (const [inbound, outbound] of pairs) {
        inbound.unpipe(outbound);
        outbound.unpipe(inbound);
        inbound.pause();
        outbound.pause();
        frozen.push([inbound, outbound]);
      }
      pairs.clear();
    },
  };
}

/** Core's router with appHeartbeat on /ws (its own pings never due within a test), echoing. */
async function startServer(cleanup: Cleanup): Promise<number> {
  const router = new UpgradeRouter({ heartbeat: { interval: NEVER, timeout: NEVER, closeTimeout: CLOSE_TIMEOUT, appHeartbeat: true } });
  router.route('/ws', { handler: (ws) => void ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })) });
  const server = http.createServer();
  router.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.defer(async () => {
    await router.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

const cleanup = useCleanup();

describe.each(listRuntimes().filter((r) => r.name !== 'node20'))('@ws-heartbeat/client under $name $version', (runtime) => {
  it('on the global WebSocket, with no ws to be found: declares a frozen server dead within pingInterval + pongTimeout, reconnects and is answered again', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'wsh-client-'));
    cleanup.defer(() => rmSync(folder, { recursive: true, force: true }));
    copyFileSync(CLIENT_FIXTURE, path.join(folder, 'client.mjs'));
    copyFileSync(CLIENT_BUILD, path.join(folder, 'browser.js'));
    const relay = await startRelay(cleanup, await startServer(cleanup));
    const options = { pingInterval: PING, pongTimeout: PONG, reconnect: { minDelay: ms(50), maxDelay: ms(100) } };
    const client = spawnUnder(cleanup, runtime, [path.join(folder, 'client.mjs'), `ws://127.0.0.1:${relay.port}/ws`, JSON.stringify(options)], folder);

    expect(await client.next('started', undefined, ms(10_000))).toMatchObject({ websocket: 'function' });
    await client.next('open');
    const answered = await client.next('heartbeat', undefined, PING + ms(2000));
    const frozenAt = now();
    relay.freeze();

    const dead = await client.next('dead', undefined, PING + PONG + ms(2000));
    expect(dead.reason).toBe('timeout');
    expect(dead.at - frozenAt).toBeLessThanOrEqual(PING + PONG + SLOP + PIPE_SLOP);
    expect(dead.at - answered.at).toBeGreaterThanOrEqual(PING + PONG - EPSILON - PIPE_SLOP);
    expect(dead.silentMs as number).toBeGreaterThanOrEqual(PING + PONG - EPSILON);

    const reopened = await client.next('open', (s) => s.at > dead.at, ms(3000));
    expect(reopened.at - dead.at).toBeLessThanOrEqual(ms(100) + SLOP + PIPE_SLOP);
    await client.next('heartbeat', (s) => s.at > reopened.at, PING + ms(2000));
    expect(client.said.filter((s) => s.type === 'dead')).toHaveLength(1);
  });
});
