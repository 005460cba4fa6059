/**
 * HA scenario 1, a proxy's idle timeout: nginx with `proxy_read_timeout 2s` in front of three
 * backends (Fastify, Express, Fastify). A route whose interval is safely below it keeps 50 silent
 * clients for 12 s without one close; a route whose interval is above it (3 s, the guard not
 * declared) loses every client to nginx at about 2 s; declaring `proxyIdleTimeout: 2000` on such a
 * route throws when it is defined, in both adapters.
 */
import Fastify from 'fastify';
import WebSocket from 'ws';
import wsHeartbeat from '@ws-heartbeat/fastify';
import { WebSocketRoutes } from '@ws-heartbeat/express';
import { useCleanup } from '../helpers/cleanup';
import { ms, sleep, waitFor } from '../helpers/time';
import { mono } from '../faults/fixture/protocol';
import { spread, startBed, table, writeFigures } from './support';

const cleanup = useCleanup();
const PROXY_TIMEOUT = ms(2000);
const SAFE = ms(1000);
const UNSAFE = ms(3000);
const CLIENTS = 50;
const HOLD = ms(12_000);

/** A plain `ws` client that sends nothing: the time it opened, and when and how it closed. */
interface Silent {
  socket: WebSocket;
  openedAt: number;
  closed?: { at: number; code: number };
}

async function openSilent(url: string): Promise<Silent> {
  const socket = new WebSocket(url);
  cleanup.defer(() => socket.terminate());
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  const silent: Silent = { socket, openedAt: mono() };
  socket.on('close', (code) => (silent.closed = { at: mono(), code }));
  return silent;
}

describe('HA 1: behind nginx with proxy_read_timeout 2s', () => {
  test(`50 silent clients of a 1 s route stay 12 s without a close; 50 of a 3 s route are all cut by nginx at about 2 s`, async () => {
    const bed = await startBed(
      cleanup,
      {
        routes: [
          { path: '/safe', interval: SAFE, timeout: ms(500), proxyIdleTimeout: PROXY_TIMEOUT },
          { path: '/unsafe', interval: UNSAFE, timeout: ms(500) }, // no proxyIdleTimeout: the guard is off
        ],
      },
      { readTimeout: PROXY_TIMEOUT },
    );
    const safe = await Promise.all(Array.from({ length: CLIENTS }, () => openSilent(bed.url('/safe'))));
    const unsafe = await Promise.all(Array.from({ length: CLIENTS }, () => openSilent(bed.url('/unsafe'))));
    const start = mono();

    await waitFor(() => unsafe.every((c) => c.closed !== undefined), PROXY_TIMEOUT + ms(2000), 'nginx to cut every client of the 3 s route');
    const cutAfter = unsafe.map((c) => c.closed!.at - c.openedAt);
    // nginx cuts the connection (no close frame: 1006) when it saw no byte either way for its timeout:
    // after the 101 and the hello, nothing until the engine's first ping at 3 s.
    expect(unsafe.map((c) => c.closed!.code)).toEqual(unsafe.map(() => 1006));
    expect(Math.min(...cutAfter)).toBeGreaterThanOrEqual(PROXY_TIMEOUT - ms(50));
    expect(Math.max(...cutAfter)).toBeLessThan(UNSAFE);

    await sleep(Math.max(0, start + HOLD - mono()));
    expect(safe.filter((c) => c.closed !== undefined)).toEqual([]);
    expect(safe.every((c) => c.socket.readyState === WebSocket.OPEN)).toBe(true);

    const cut = spread(cutAfter);
    writeFigures('1-idle-timeout', [
      `nginx \`proxy_read_timeout ${PROXY_TIMEOUT}ms\`; ${CLIENTS} silent \`ws\` clients per route, spread over three backends.`,
      '',
      ...table(
        ['route interval', 'clients', `closed within ${Math.round(HOLD / 1000)} s`, 'cut after (p50 / p99 / max)'],
        [
          [`${SAFE} ms (proxyIdleTimeout: ${PROXY_TIMEOUT})`, CLIENTS, 0, '–'],
          [`${UNSAFE} ms (no proxyIdleTimeout)`, CLIENTS, CLIENTS, `${cut.p50} / ${cut.p99} / ${cut.max} ms`],
        ],
      ),
    ]);
  });

  test('proxyIdleTimeout: 2000 with interval 3000 throws at route definition, in Fastify and in Express', async () => {
    const message = /The "interval" option \(3000 ms\) is not safely below "proxyIdleTimeout" \(2000 ms\).*The largest safe interval is 1595 ms/s;

    const app = cleanup.add(Fastify());
    await app.register(wsHeartbeat, { heartbeat: { interval: 1000, proxyIdleTimeout: 2000 } });
    expect(() => app.get('/ws', { websocket: true, heartbeat: { interval: 3000 } }, () => {})).toThrow(message);
    expect(() => app.get('/ok', { websocket: true, heartbeat: { interval: 1000 } }, () => {})).not.toThrow();

    const sockets = new WebSocketRoutes({ heartbeat: { interval: 1000, proxyIdleTimeout: 2000 } });
    cleanup.defer(() => sockets.close());
    expect(() => sockets.route('/ws', { heartbeat: { interval: 3000 } }, () => {})).toThrow(message);
    expect(() => sockets.route('/ok', { heartbeat: { interval: 1000 } }, () => {})).not.toThrow();
  });
});
