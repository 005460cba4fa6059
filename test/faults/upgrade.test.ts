/**
 * Fault suite, upgrades: what each adapter answers to an upgrade request that must not (or may
 * only just) become a WebSocket, on raw TCP connections whose bytes the test writes itself.
 *
 * - Path confusion: an upgrade is routed as the framework's own HTTP router routes a GET of the
 *   same request target (HTTP 426 from the ws path ⇔ 101 on that route; HTTP 404 ⇔ upgrade 404;
 *   a target Node's parser rejects gets 400 both ways).
 * - Malformed handshakes (wrong method, bad key or version, 2,000 extra headers that make Node
 *   drop the key — CVE-2024-37890 —, a `constructor` extension, a 32 KB header): the exact status,
 *   within ms(50) of the request's last byte, the socket closed by the server, no WebSocket.
 * - Origin, authentication (refused, abandoned by the client, never answered: authTimeout), slow
 *   headers (408 while other upgrades go on), per-route and per-client connection limits.
 * Every scenario also passes the harness's nothing-lost check (no crash, no leak, bystanders fine).
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { maskedFrame, OPCODE } from '../helpers/clients';
import { useCleanup } from '../helpers/cleanup';
import { EPSILON, SLOP, ms, sleep } from '../helpers/time';
import { ADAPTERS, BYSTANDERS, DEFAULT_CONFIG, echo, mono, openScene, until, type AdapterName, type Peer, type Scene } from './support';

/** How fast a refusal (or a 101) must be answered, and the server's side closed after a refusal. */
const ANSWER = ms(50);
const { authTimeout: AUTH_TIMEOUT, authDelay: AUTH_DELAY, headersTimeout: HEADERS_TIMEOUT, routeLimit: ROUTE_LIMIT } = DEFAULT_CONFIG;

/** A raw TCP client of the scene's server: what it wrote, what came back, and when (mono()). */
class Raw {
  readonly socket: net.Socket;
  data = Buffer.alloc(0);
  localPort = -1;
  /** Just before the request was written (lower bounds: the server cannot have it earlier). */
  writeStart = NaN;
  /** When the last byte of the request was written (handed to the kernel). */
  sentAt = NaN;
  /** When the response head was complete. */
  answeredAt = NaN;
  /** When the server ended (FIN) or reset the connection. */
  closedAt = NaN;
  #ours = false;

  constructor(scene: Scene, localAddress?: string) {
    this.socket = net.connect({ host: '127.0.0.1', port: scene.server.port, localAddress, allowHalfOpen: true });
    const gone = (): void => {
      if (!this.#ours && Number.isNaN(this.closedAt)) this.closedAt = mono();
    };
    this.socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk]);
      if (Number.isNaN(this.answeredAt) && this.data.includes('\r\n\r\n')) this.answeredAt = mono();
    });
    this.socket.on('end', gone).on('error', gone).on('close', gone);
    scene.cleanup.defer(() => this.destroy());
  }

  /**
   * Connects, then writes `bytes`; resolves once they are written. The times are taken around
   * the write itself, not in its callback, which a busy test process may run late.
   */
  async send(bytes: string | Buffer): Promise<this> {
    if (this.socket.connecting) await new Promise((resolve, reject) => this.socket.once('connect', resolve).once('error', reject));
    this.localPort = this.socket.localPort!;
    const written = new Promise<void>((resolve, reject) => {
      this.writeStart = mono();
      this.socket.write(bytes, (error) => (error ? reject(error) : resolve()));
      if (this.socket.writableLength === 0) this.sentAt = mono(); // all in the kernel already
    });
    await written;
    if (Number.isNaN(this.sentAt)) this.sentAt = mono();
    return this;
  }

  get head(): string {
    const text = this.data.toString('latin1');
    return text.slice(0, text.indexOf('\r\n\r\n'));
  }

  get body(): string {
    const text = this.data.toString('latin1');
    return text.slice(text.indexOf('\r\n\r\n') + 4);
  }

  /** Waits for the response head; returns the status. */
  async status(timeout = ms(2000)): Promise<number> {
    await until(() => !Number.isNaN(this.answeredAt) || !Number.isNaN(this.closedAt), timeout, 'an answer to the raw request');
    const status = /^HTTP\/1\.[01] (\d{3}) /.exec(this.head);
    if (status === null) throw new Error(`no status line; the server sent ${JSON.stringify(this.data.toString('latin1'))}`);
    return Number(status[1]);
  }

  /** Waits until the server closed its side; returns when. */
  async closed(timeout = ms(2000)): Promise<number> {
    await until(() => !Number.isNaN(this.closedAt), timeout, `the server to close the connection from port ${this.localPort}`);
    return this.closedAt;
  }

  destroy(): void {
    this.#ours = true;
    this.socket.destroy();
  }
}

/** A GET upgrade request (header lines in this order, `extra` before the WebSocket headers). */
function upgrade(target: string, { method = 'GET', extra = [] as string[], key = randomBytes(16).toString('base64'), version = '13' } = {}): string {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: Upgrade', 'Upgrade: websocket', ...extra];
  return `${lines.join('\r\n')}\r\nSec-WebSocket-Version: ${version}\r\nSec-WebSocket-Key: ${key}\r\n\r\n`;
}

/** Sends `request` on a new connection (from `localAddress`) and notes it as the injected fault. */
function send(scene: Scene, request: string, localAddress?: string): Promise<Raw> {
  scene.inject();
  return new Raw(scene, localAddress).send(request);
}

/** `raw` was refused with `status`, and the server then closed the connection, both within `within` of the request. */
async function expectRefused(raw: Raw, status: number, within = ANSWER): Promise<void> {
  expect(await raw.status()).toBe(status);
  await raw.closed();
  expect(raw.answeredAt - raw.sentAt).toBeLessThanOrEqual(within);
  expect(raw.closedAt - raw.sentAt).toBeLessThanOrEqual(within);
}

/** `raw` got a 101 within `within`, and its connection reached the handler of `route`. */
async function expectUpgraded(scene: Scene, raw: Raw, route: string, within = ANSWER): Promise<void> {
  expect(await raw.status()).toBe(101);
  expect(raw.answeredAt - raw.sentAt).toBeLessThanOrEqual(within);
  const connection = await scene.server.next('connection', (e) => e.remotePort === raw.localPort, ms(2000));
  expect(connection.route).toBe(route);
}

const cleanup = useCleanup();

/**
 * Request targets and the status a plain GET of each gets from the framework's router (426: it
 * routed to the /ws/echo handler; 404: nowhere; 400: Node's parser rejects the target).
 */
const PATHS: Array<{ target: string; fastify: number; express: number }> = [
  { target: '/nowhere', fastify: 404, express: 404 },
  { target: '//ws/echo', fastify: 404, express: 404 },
  { target: '/ws/../x', fastify: 404, express: 404 },
  { target: '/ws/x/../echo', fastify: 404, express: 404 },
  { target: '/ws/x/%2e%2e/echo', fastify: 404, express: 404 },
  { target: '%2e%2e/ws/echo', fastify: 400, express: 400 },
  { target: '/ws%2Fecho', fastify: 404, express: 404 },
  { target: 'http://127.0.0.1/ws/echo', fastify: 426, express: 426 },
  { target: '/ws/echo/', fastify: 404, express: 426 },
  { target: '/ws/echo?a=1', fastify: 426, express: 426 },
  { target: '/WS/ECHO', fastify: 404, express: 426 },
  { target: '/ws/%65cho', fastify: 426, express: 404 },
];
/** The upgrade's answer for each HTTP answer. */
const UPGRADE_FOR: Record<number, number> = { 426: 101, 404: 404, 400: 400 };

/** Handshakes that must be refused, and the status each adapter answers (`body`: `ws`'s reason). */
const MALFORMED: Array<{ name: string; request: string; fastify: number; express: number; body?: string }> = [
  { name: 'POST with the upgrade headers', request: upgrade('/ws/echo', { method: 'POST', extra: ['Content-Length: 0'] }), fastify: 404, express: 405 },
  { name: 'HEAD with the upgrade headers', request: upgrade('/ws/echo', { method: 'HEAD' }), fastify: 426, express: 405 },
  { name: 'a bad Sec-WebSocket-Key', request: upgrade('/ws/echo', { key: 'not-16-bytes' }), fastify: 400, express: 400, body: 'Missing or invalid Sec-WebSocket-Key header' },
  { name: 'a bad Sec-WebSocket-Version', request: upgrade('/ws/echo', { version: '12' }), fastify: 400, express: 400, body: 'Missing or invalid Sec-WebSocket-Version header' },
  {
    // Node keeps the first maxHeadersCount (2,000) headers: the key after them is dropped.
    name: '2,000 extra headers before the key (CVE-2024-37890)',
    request: upgrade('/ws/echo', { extra: new Array<string>(2000).fill('a: b') }),
    fastify: 400,
    express: 400,
    body: 'Missing or invalid Sec-WebSocket-Key header',
  },
  {
    name: 'Sec-WebSocket-Extensions: permessage-deflate; constructor',
    request: upgrade('/ws/deflate', { extra: ['Sec-WebSocket-Extensions: permessage-deflate; constructor'] }),
    fastify: 400,
    express: 400,
    body: 'Invalid or unacceptable Sec-WebSocket-Extensions header',
  },
  // Node's header size limit (16 KiB) answers before any 'upgrade' listener.
  { name: 'a 32 KB Sec-WebSocket-Protocol header', request: upgrade('/ws/echo', { extra: [`Sec-WebSocket-Protocol: ${'a'.repeat(32 * 1024)}`] }), fastify: 431, express: 431 },
];

describe.each(ADAPTERS)('%s', (adapter: AdapterName) => {
  describe('path confusion', () => {
    it.each(PATHS)('an upgrade of $target is routed as a plain GET of it is', async (row) => {
      const scene = await openScene(cleanup, adapter);
      const get = await send(scene, `GET ${row.target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      const httpStatus = await get.status();
      expect(httpStatus).toBe(row[adapter]);
      const raw = await send(scene, upgrade(row.target));
      if (UPGRADE_FOR[httpStatus] === 101) await expectUpgraded(scene, raw, '/ws/echo');
      else await expectRefused(raw, UPGRADE_FOR[httpStatus]!);
    });
  });

  describe('malformed handshakes', () => {
    it.each(MALFORMED)('$name: its status within ms(50), the socket closed, no WebSocket', async (row) => {
      const scene = await openScene(cleanup, adapter);
      const before = await scene.server.state();
      const raw = await send(scene, row.request);
      await expectRefused(raw, row[adapter]);
      if (row.body !== undefined) expect(raw.body).toBe(row.body);
      const after = await scene.server.state();
      expect(after.handlerCalls).toEqual(before.handlerCalls);
      expect(after.size).toBe(before.size);
    });
  });

  it('Sec-WebSocket-Extensions: constructor on /ws/deflate: a 101 within ms(50) with no extension negotiated', async () => {
    const scene = await openScene(cleanup, adapter);
    const raw = await send(scene, upgrade('/ws/deflate', { extra: ['Sec-WebSocket-Extensions: constructor'] }));
    await expectUpgraded(scene, raw, '/ws/deflate');
    expect(raw.head.toLowerCase()).not.toContain('sec-websocket-extensions');
    // Frames stay uncompressed: the echo comes back as a plain text frame (RSV1 clear).
    const before = raw.data.length;
    raw.socket.write(maskedFrame(OPCODE.text, 'plain'));
    await until(() => raw.data.length >= before + 7, ms(2000), 'the echo');
    expect(raw.data.subarray(before, before + 7)).toEqual(Buffer.from([0x81, 5, ...Buffer.from('plain')]));
  });

  it('Origin on /ws/origin: a wrong one is refused 403, a missing one is accepted', async () => {
    const scene = await openScene(cleanup, adapter);
    for (const origin of ['https://evil.example', 'https://good.example.evil', 'null']) {
      await expectRefused(await send(scene, upgrade('/ws/origin', { extra: [`Origin: ${origin}`] })), 403);
    }
    await expectUpgraded(scene, await send(scene, upgrade('/ws/origin')), '/ws/origin');
    await expectUpgraded(scene, await send(scene, upgrade('/ws/origin', { extra: ['Origin: https://good.example'] })), '/ws/origin');
    expect((await scene.server.state()).handlerCalls['/ws/origin']).toBe(2);
  });

  describe('authentication on /ws/auth', () => {
    it('a refused upgrade (no or bad token) gets 401 and no WebSocket is created', async () => {
      const scene = await openScene(cleanup, adapter);
      const before = await scene.server.state();
      await expectRefused(await send(scene, upgrade('/ws/auth')), 401);
      await expectRefused(await send(scene, upgrade('/ws/auth', { extra: ['x-token: bad'] })), 401);
      const after = await scene.server.state();
      expect(after.handlerCalls['/ws/auth']).toBe(before.handlerCalls['/ws/auth']);
      expect(after.size).toBe(before.size);
      await expectUpgraded(scene, await send(scene, upgrade('/ws/auth', { extra: ['x-token: good'] })), '/ws/auth');
    });

    it('a client gone during async authentication: nothing created, nothing thrown, nothing leaked', async () => {
      // One connection to spare from 127.0.0.1: a leaked reservation would refuse the last upgrade 429.
      const scene = await openScene(cleanup, adapter, { perClientLimit: BYSTANDERS + 1 });
      const before = await scene.server.state();
      const raw = await send(scene, upgrade('/ws/auth', { extra: ['x-token: slow'] }));
      await sleep(AUTH_DELAY / 3);
      raw.destroy();
      await sleep(AUTH_DELAY + SLOP);
      const after = await scene.server.state();
      expect(raw.data.length).toBe(0);
      expect(after.handlerCalls['/ws/auth']).toBe(before.handlerCalls['/ws/auth']);
      expect(after.size).toBe(before.size);
      expect(scene.server.faults()).toEqual([]);
      await expectUpgraded(scene, await send(scene, upgrade('/ws/auth', { extra: ['x-token: good'] })), '/ws/auth');
    });

    it('authentication that never answers (or too late): the socket is destroyed at authTimeout, with 503', async () => {
      // `slow` answers at authDelay, after authTimeout: its late yes must be ignored.
      const scene = await openScene(cleanup, adapter, { authDelay: AUTH_TIMEOUT + ms(300) });
      const never = await send(scene, upgrade('/ws/auth', { extra: ['x-token: never'] }));
      const late = await send(scene, upgrade('/ws/auth', { extra: ['x-token: slow'] }));
      for (const raw of [never, late]) {
        await raw.closed(AUTH_TIMEOUT + ms(2000));
        expect(raw.closedAt - raw.writeStart).toBeGreaterThanOrEqual(AUTH_TIMEOUT - EPSILON);
        expect(raw.closedAt - raw.sentAt).toBeLessThanOrEqual(AUTH_TIMEOUT + SLOP);
        if (raw.data.length > 0) expect(await raw.status()).toBe(503);
      }
      await sleep(ms(300) + SLOP);
      const state = await scene.server.state();
      expect(state.handlerCalls['/ws/auth']).toBe(0);
      expect(state.size).toBe(BYSTANDERS);
    });
  });

  it('slow headers on an upgrade are answered 408 at headersTimeout, while another upgrade completes meanwhile', async () => {
    const scene = await openScene(cleanup, adapter);
    const trickle = await send(scene, 'GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Trickle: ');
    const startedAt = trickle.writeStart;
    const timer = setInterval(() => trickle.socket.writable && trickle.socket.write('a'), ms(50));
    scene.cleanup.defer(() => clearInterval(timer));
    await sleep(ms(200));
    const healthy = await scene.peer('/ws/echo');
    await echo(healthy, 'during the trickle');
    expect(trickle.answeredAt).toBeNaN();
    expect(trickle.closedAt).toBeNaN();
    expect(await trickle.status(HEADERS_TIMEOUT + ms(2000))).toBe(408);
    clearInterval(timer);
    // Node checks every tenth of headersTimeout.
    expect(trickle.answeredAt - startedAt).toBeGreaterThanOrEqual(HEADERS_TIMEOUT - EPSILON);
    expect(trickle.answeredAt - startedAt).toBeLessThanOrEqual(HEADERS_TIMEOUT + HEADERS_TIMEOUT / 10 + SLOP);
    await trickle.closed();
    expect(trickle.closedAt - trickle.answeredAt).toBeLessThanOrEqual(SLOP);
  });

  describe('connection limits', () => {
    it('per route: the 4th upgrade on /ws/limited gets 503, and after one closes a new one gets in', async () => {
      const scene = await openScene(cleanup, adapter);
      const peers: Peer[] = [];
      for (let i = 0; i < ROUTE_LIMIT; i++) peers.push(await scene.peer('/ws/limited'));
      await expectRefused(await send(scene, upgrade('/ws/limited')), 503);
      peers[0]!.ws.close(1000);
      await scene.server.next('gone', (e) => e.remotePort === peers[0]!.port, ms(2000));
      await expectUpgraded(scene, await send(scene, upgrade('/ws/limited')), '/ws/limited');
      expect((await scene.server.state()).handlerCalls['/ws/limited']).toBe(ROUTE_LIMIT + 1);
    });

    it('per client address: beyond maxConnectionsPerClient 429, while another address still gets in', async () => {
      const limit = BYSTANDERS + 1; // the bystanders are 20 connections from 127.0.0.1
      const scene = await openScene(cleanup, adapter, { perClientLimit: limit });
      const peers: Peer[] = [];
      for (let i = 0; i < limit; i++) peers.push(await scene.peer('/ws/echo', { localAddress: '127.0.0.2' }));
      const first = await scene.server.next('connection', (e) => e.remotePort === peers[0]!.port, ms(2000));
      expect(first.remoteAddress).toBe('127.0.0.2');
      await expectRefused(await send(scene, upgrade('/ws/echo'), '127.0.0.2'), 429);
      await expectUpgraded(scene, await send(scene, upgrade('/ws/echo'), '127.0.0.3'), '/ws/echo');
      peers[0]!.ws.close(1000);
      await scene.server.next('gone', (e) => e.remotePort === peers[0]!.port, ms(2000));
      await expectUpgraded(scene, await send(scene, upgrade('/ws/echo'), '127.0.0.2'), '/ws/echo');
    });
  });
});
