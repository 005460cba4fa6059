/**
 * The RSV1 proof: the conditions of the public Node 20 report ("RSV1 must be clear",
 * "Invalid frame header" when WebSockets are wired into an Express app) reproduced on an
 * Express 5 application with body parsers, a catch-all middleware and a 404 handler, with our
 * echo routes mounted with permessage-deflate on and off, pings and pongs every few
 * milliseconds interleaved with small, large, compressed and fragmented messages from several
 * clients at once — and not one bad frame, error or unexpected close.
 *
 * Then: the upgrade requests never reach the Express middleware chain while the routes are
 * mounted (a recording middleware sees only the plain HTTP requests), and do once they are not
 * (so the recorder can see them).
 */
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import request from 'supertest';
import { WebSocket, type ClientOptions, type RawData } from 'ws';
import { WebSocketRoutes } from '@ws-heartbeat/express';
import { useCleanup } from '../../../test/helpers/cleanup';
import { closeServer, listening } from '../../../test/helpers/harness';
import { ms, sleep, waitFor } from '../../../test/helpers/time';
import { requestUpgrade } from '../../../test/helpers/upgrade';

const INTERVAL = ms(20);
/**
 * Well above the pong round trips seen under this traffic (p99 ~35 ms, max ~50 ms: a ping waits
 * behind the deflate of a large message on both sides).
 */
const TIMEOUT = ms(150);
/** Ping/pong rounds every connection must go through while the traffic runs. */
const ROUNDS = 100;
/** Most messages a client has in flight. */
const WINDOW = 3;
/** Each client sends its next message this often (while fewer than WINDOW are in flight). */
const PACE = ms(15);

const cleanup = useCleanup();

// ---- the application of the report ------------------------------------------------------

interface Seen {
  method: string;
  url: string;
  upgrade: string | undefined;
}

interface ReportApp {
  server: http.Server;
  sockets: WebSocketRoutes;
  port: number;
  /** Every request the first middleware of the chain saw. */
  seen: Seen[];
  /** Errors the adapter caught (its onError), and 'error' events of server-side sockets. */
  serverErrors: string[];
  /** Close codes of the server-side sockets, as they closed. */
  serverCloses: number[];
}

/**
 * An Express 5 app as in the report: a request recorder first, then `express.json()`,
 * `express.urlencoded()`, `express.text()`, an HTTP route that echoes parsed bodies, a catch-all
 * `app.use` and a final 404 handler; our echo routes mounted with permessage-deflate on
 * (`/ws/deflate`) and off (`/ws/plain`), on the server `app.listen()` returned.
 */
async function startReportApp(): Promise<ReportApp> {
  const seen: Seen[] = [];
  const serverErrors: string[] = [];
  const serverCloses: number[] = [];

  const sockets = new WebSocketRoutes({
    heartbeat: { interval: INTERVAL, timeout: TIMEOUT, idleOnly: false },
    onError: (error, { route, phase }) => serverErrors.push(`${phase} of ${route}: ${String(error)}`),
  });
  const echo = (ws: WebSocket): void => {
    ws.on('error', (error) => serverErrors.push(`server socket: ${error.message}`));
    ws.on('close', (code) => serverCloses.push(code));
    ws.on('message', (data: RawData, isBinary) => ws.send(data, { binary: isBinary }));
  };
  sockets.route('/ws/deflate', { ws: { perMessageDeflate: true } }, echo);
  sockets.route('/ws/plain', { ws: { perMessageDeflate: false } }, echo);

  const app = express();
  app.use((req: Request, _res: Response, next: NextFunction) => {
    seen.push({ method: req.method, url: req.url, upgrade: req.headers.upgrade });
    next();
  });
  app.use(express.json());
  app.use(express.urlencoded({ extended: false }));
  app.use(express.text());
  app.post('/body', (req, res) => {
    res.json({ type: req.headers['content-type'], body: req.body as unknown });
  });
  app.use((_req, _res, next) => next());
  app.use((_req, res) => {
    res.status(404).send('nope');
  });

  const server = app.listen(0, '127.0.0.1');
  cleanup.defer(() => closeServer(server));
  await listening(server);
  sockets.mount(server);
  cleanup.defer(() => sockets.close());
  const { port } = server.address() as AddressInfo;
  return { server, sockets, port, seen, serverErrors, serverCloses };
}

// ---- echo traffic ------------------------------------------------------------------------

interface Message {
  /** What was sent, whole (the fragments of a fragmented message concatenated). */
  data: Buffer;
  isBinary: boolean;
  /** The fragments it is sent in; one for most messages. */
  fragments: Buffer[];
}

const KIB = 1024;

/**
 * The i-th message of a client: small text (multi-byte UTF-8), small binary, large random
 * binary (≥ 64 KiB, incompressible), highly compressible text and binary (~100 KiB), and
 * fragmented messages (text and binary) whose fragments mix compressible and random bytes.
 */
function messageOf(i: number): Message {
  const whole = (data: Buffer, isBinary: boolean): Message => ({ data, isBinary, fragments: [data] });
  switch (i % 7) {
    case 0:
      return whole(Buffer.from(`message ${i}: héllo wörld ✓ 🫀`), false);
    case 1:
      return whole(randomBytes(1 + (i % 125)), true);
    case 2:
      return whole(randomBytes(64 * KIB + ((i * 997) % (64 * KIB))), true);
    case 3:
      return whole(Buffer.from(`{"beat":${i},"pad":"${'heartbeat '.repeat(10_000)}"}`), false);
    case 4:
      return whole(Buffer.alloc(96 * KIB + i, i & 0xff), true);
    case 5: {
      const fragments = [Buffer.alloc(40 * KIB, 'a'), randomBytes(30 * KIB), Buffer.alloc(10, 7)];
      return { data: Buffer.concat(fragments), isBinary: true, fragments };
    }
    default: {
      const fragments = [Buffer.from(`part one of ${i} `), Buffer.from('x'.repeat(70 * KIB)), Buffer.from(' — the end ✓')];
      return { data: Buffer.concat(fragments), isBinary: false, fragments };
    }
  }
}

interface Peer {
  name: string;
  ws: WebSocket;
  /** Messages sent and not yet echoed, oldest first. */
  inFlight: Message[];
  sent: number;
  echoed: number;
  /** Pings from the server. */
  pings: number;
  /** Echoes that differ from what was sent (bytes or type), described. */
  mismatches: string[];
  errors: string[];
  /** Set by the test right before it closes the client itself. */
  closingByTest: boolean;
  close: { code: number; byTest: boolean } | null;
  closed: Promise<void>;
  /** Sends the next message unless WINDOW are in flight or the test stopped the traffic. */
  pump(): void;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function openPeer(name: string, url: string, options: ClientOptions, traffic: { stopped: boolean }): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    let markClosed!: () => void;
    const peer: Peer = {
      name,
      ws,
      inFlight: [],
      sent: 0,
      echoed: 0,
      pings: 0,
      mismatches: [],
      errors: [],
      closingByTest: false,
      close: null,
      closed: new Promise((r) => (markClosed = r)),
      pump() {
        if (!traffic.stopped && ws.readyState === WebSocket.OPEN && peer.inFlight.length < WINDOW) {
          const message = messageOf(peer.sent);
          peer.sent += 1;
          peer.inFlight.push(message);
          message.fragments.forEach((fragment, k) => {
            ws.send(fragment, { binary: message.isBinary, fin: k === message.fragments.length - 1 });
          });
          if (peer.sent % 5 === 0) ws.ping(Buffer.from(`client ping ${peer.sent}`));
        }
      },
    };
    ws.on('ping', () => {
      peer.pings += 1;
    });
    ws.on('message', (data, isBinary) => {
      const got = toBuffer(data);
      const expected = peer.inFlight.shift();
      const index = peer.echoed;
      peer.echoed += 1;
      if (expected === undefined) {
        peer.mismatches.push(`#${index}: an echo nobody sent (${got.length} bytes)`);
      } else if (expected.isBinary !== isBinary || !expected.data.equals(got)) {
        peer.mismatches.push(`#${index}: sent ${expected.data.length} bytes binary=${expected.isBinary}, got ${got.length} bytes binary=${isBinary}`);
      }
    });
    ws.on('close', (code) => {
      peer.close = { code, byTest: peer.closingByTest };
      markClosed();
    });
    ws.on('error', (error) => peer.errors.push(error.message));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`${name}: upgrade refused with ${res.statusCode}`)));
    ws.once('open', () => resolve(peer));
    cleanup.defer(() => {
      if (peer.close !== null) return undefined;
      ws.terminate();
      return peer.closed;
    });
  });
}

/** Calls every peer's pump() each PACE ms, until the traffic stops. */
function pace(peers: Peer[], traffic: { stopped: boolean }): void {
  const pacer = setInterval(() => {
    if (traffic.stopped) clearInterval(pacer);
    else for (const peer of peers) peer.pump();
  }, PACE);
  cleanup.defer(() => clearInterval(pacer));
}

// ---- tests -------------------------------------------------------------------------------

describe('the RSV1 proof', () => {
  test('deflate on and off, pings every few ms, mixed and compressed traffic from several clients: no bad frame, no error, no unexpected close, every echo intact', async () => {
    const { server, sockets, port, serverErrors, serverCloses } = await startReportApp();
    const url = (path: string) => `ws://127.0.0.1:${port}${path}`;
    const traffic = { stopped: false };

    const peers = await Promise.all([
      openPeer('deflate-1', url('/ws/deflate'), { perMessageDeflate: true }, traffic),
      openPeer('deflate-2', url('/ws/deflate'), { perMessageDeflate: true }, traffic),
      openPeer('deflate-3', url('/ws/deflate'), { perMessageDeflate: true }, traffic),
      // Offers deflate to a route that declines it: a compressed frame from us would be an RSV1 error here.
      openPeer('plain-offering-1', url('/ws/plain'), { perMessageDeflate: true }, traffic),
      openPeer('plain-offering-2', url('/ws/plain'), { perMessageDeflate: true }, traffic),
      openPeer('plain-1', url('/ws/plain'), { perMessageDeflate: false }, traffic),
    ]);
    const perRoute = { '/ws/deflate': 3, '/ws/plain': 3 };
    // Compression is negotiated where the route allows it, and only there.
    expect(peers.map((p) => [p.name, p.ws.extensions.startsWith('permessage-deflate')])).toEqual([
      ['deflate-1', true],
      ['deflate-2', true],
      ['deflate-3', true],
      ['plain-offering-1', false],
      ['plain-offering-2', false],
      ['plain-1', false],
    ]);

    pace(peers, traffic);
    // Plain HTTP through the body parsers on the same server, meanwhile.
    const bodies = (async () => {
      const answers: unknown[] = [];
      for (let i = 0; i < 10 && !traffic.stopped; i++) {
        const [json, form, text] = await Promise.all([
          request(server).post('/body').send({ i, nested: { ok: true } }),
          request(server).post('/body').type('form').send(`i=${i}&ok=yes`),
          request(server).post('/body').set('Content-Type', 'text/plain').send(`plain ${i}`),
        ]);
        answers.push(json.body.body, form.body.body, text.body.body);
        await sleep(ms(50));
      }
      return answers;
    })();

    const enough = () => {
      const { routes } = sockets.heartbeat.stats();
      return (
        peers.every((p) => p.pings >= ROUNDS && p.echoed >= 3 * 7) &&
        Object.entries(perRoute).every(([route, n]) => (routes[route]?.pongsReceived ?? 0) >= ROUNDS * n)
      );
    };
    const failed = () => serverErrors.length > 0 || peers.some((p) => p.errors.length > 0 || p.close !== null || p.mismatches.length > 0);
    await waitFor(() => enough() || failed(), ms(25_000), `${ROUNDS} ping/pong rounds per connection under traffic`);
    traffic.stopped = true;
    await waitFor(() => failed() || peers.every((p) => p.inFlight.length === 0), ms(5000), 'the last echoes');

    // The test's own closes, then the verdict.
    for (const peer of peers) {
      peer.closingByTest = true;
      if (peer.ws.readyState === WebSocket.OPEN) peer.ws.close(1000, 'done');
    }
    await Promise.all(peers.map((p) => p.closed));
    await waitFor(() => serverCloses.length === peers.length, ms(2000), 'the server side to close');

    const report = peers.map((p) => ({ name: p.name, errors: p.errors, mismatches: p.mismatches, close: p.close }));
    const allMessages = [...serverErrors, ...peers.flatMap((p) => p.errors)].join('\n');
    expect(allMessages).not.toMatch(/RSV1 must be clear/);
    expect(allMessages).not.toMatch(/Invalid frame header/);
    expect(report).toEqual(peers.map((p) => ({ name: p.name, errors: [], mismatches: [], close: { code: 1000, byTest: true } })));
    expect(serverErrors).toEqual([]);
    expect(serverCloses).toEqual(Array(peers.length).fill(1000));

    // Every connection went through the rounds, interleaved with the traffic.
    const stats = sockets.heartbeat.stats();
    for (const [route, n] of Object.entries(perRoute)) {
      expect({ route, enough: (stats.routes[route]?.pongsReceived ?? 0) >= ROUNDS * n }).toEqual({ route, enough: true });
    }
    expect(stats.terminations).toEqual({ timeout: 0, 'close-timeout': 0, backpressure: 0, shutdown: 0 });
    for (const peer of peers) {
      expect({ peer: peer.name, allEchoed: peer.echoed === peer.sent, kindsCovered: peer.echoed >= 3 * 7 }).toEqual({
        peer: peer.name,
        allEchoed: true,
        kindsCovered: true,
      });
    }

    // The body parsers kept working beside the WebSockets.
    const answers = await bodies;
    expect(answers.length).toBeGreaterThanOrEqual(3);
    expect(answers.slice(0, 3)).toEqual([{ i: 0, nested: { ok: true } }, { i: '0', ok: 'yes' }, 'plain 0']);
  });

  test('an upgrade request never reaches the Express middleware chain while the routes are mounted; a plain request does', async () => {
    const { server, sockets, port, seen } = await startReportApp();
    const url = (path: string) => `ws://127.0.0.1:${port}${path}`;
    const traffic = { stopped: false };

    // Many upgrades on both routes with traffic, one by one and at once.
    for (let round = 0; round < 5; round++) {
      const peers = await Promise.all(
        ['/ws/deflate', '/ws/plain', '/ws/deflate?x=1', '/WS/Plain/'].map((path, k) => openPeer(`r${round}-${k}`, url(path), {}, traffic)),
      );
      const roundTraffic = { stopped: false };
      pace(peers, roundTraffic);
      await waitFor(() => peers.every((p) => p.echoed >= 7 || p.close !== null), ms(5000), 'echoes');
      roundTraffic.stopped = true;
      for (const peer of peers) {
        peer.closingByTest = true;
        peer.ws.close(1000);
      }
      await Promise.all(peers.map((p) => p.closed));
      expect(peers.map((p) => p.close)).toEqual(Array(4).fill({ code: 1000, byTest: true }));
      expect(peers.flatMap((p) => p.mismatches)).toEqual([]);
    }
    // Upgrades we refuse: unknown path, malformed handshake.
    expect((await requestUpgrade(server, '/nowhere')).status).toBe(404);
    expect((await requestUpgrade(server, '/ws/plain', { key: null })).status).toBe(400);
    expect(seen).toEqual([]);

    // The control: a plain request to a WebSocket path goes through the whole chain to the 404 handler.
    const control = await request(server).get('/ws/deflate?control=1');
    expect(control.status).toBe(404);
    expect(control.text).toBe('nope');
    expect(seen).toEqual([{ method: 'GET', url: '/ws/deflate?control=1', upgrade: undefined }]);

    // Once the routes are closed (no 'upgrade' listener left), Node hands an upgrade request to
    // Express like any other: the recorder can see upgrade requests, it just never got any.
    await sockets.close();
    expect(server.listenerCount('upgrade')).toBe(0);
    const unmounted = await requestUpgrade(server, '/ws/deflate?after=close', { closeWait: ms(50) });
    expect(unmounted.status).toBe(404);
    expect(unmounted.body).toBe('nope');
    expect(seen).toEqual([
      { method: 'GET', url: '/ws/deflate?control=1', upgrade: undefined },
      { method: 'GET', url: '/ws/deflate?after=close', upgrade: 'websocket' },
    ]);
  });
});
