/**
 * Real-socket fixtures for the engine's integration tests: a plain `node:http` server on
 * 127.0.0.1 port 0 whose upgrades are accepted by a `ws` WebSocketServer({ noServer: true }),
 * tracked by a `Heartbeat` and echoed; ordinary `ws` clients that count what they receive;
 * raw TCP peers that do the handshake by hand and then misbehave on purpose.
 *
 * The `…For(cleanup, …)` openers hand what they open to the test's cleanup (cleanup.ts), and
 * `cleanup.add(await startEchoServer())` closes a server's engine, sockets and itself.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type ClientOptions, type RawData, type ServerOptions } from 'ws';
import { Heartbeat, type HeartbeatOptions, type TerminateInfo, type TerminateReason } from '@ws-heartbeat/core';
import type { Cleanup } from './cleanup';
import { ms, now, waitFor } from './time';

/** `ws` server options, plus the ones @types/ws does not declare yet. */
export type WsServerOptions = Omit<ServerOptions, 'server' | 'port' | 'noServer' | 'path'> & {
  /** ms `ws` waits for the closing handshake before it destroys the socket itself. @default 30_000 */
  closeTimeout?: number;
};

export interface EchoServerOptions {
  /**
   * The engine that tracks every upgrade (the caller keeps ownership of options and routes),
   * its options for a new engine, or `false` for a server that tracks nothing (a control).
   * @default {}
   */
  heartbeat?: Heartbeat | HeartbeatOptions | false;
  /** Routes to define on the engine before the first connection: name → overrides. */
  routes?: Record<string, HeartbeatOptions>;
  /** Options of the `ws` server. */
  ws?: WsServerOptions;
  /** Echo every message back to its sender. @default true */
  echo?: boolean;
}

/** A server-side connection, as the application sees it. */
export interface ServerConnection {
  ws: WebSocket;
  socket: Duplex;
  /** Engine route: the request path without its leading '/', or 'default' for '/'. */
  route: string;
  /** The `id` query parameter of the request, if any (how a test names its clients). */
  id: string | null;
  /** now() just before `hb.track(ws)`: never later than the engine's t0 for this connection. */
  trackedAt: number;
  /** What the application's 'message' listener received. */
  messages: Array<{ data: Buffer; isBinary: boolean }>;
  /** Set when the server-side ws emits 'close'. */
  closed: { code: number; at: number } | null;
  /** now() when the underlying socket emitted 'close'. */
  socketClosedAt: number | null;
}

export interface Termination {
  conn: ServerConnection | undefined;
  reason: TerminateReason;
  route: string;
  at: number;
  info: TerminateInfo;
}

export interface EchoServer {
  server: http.Server;
  wss: WebSocketServer;
  /** The tracking engine; `null` for a server started with `heartbeat: false`. */
  hb: Heartbeat | null;
  port: number;
  /** `ws://127.0.0.1:<port><path>`. */
  url(path?: string): string;
  /** Every upgraded connection, in order of arrival. */
  connections: ServerConnection[];
  /** Every 'terminate' event of the engine, with the time it was seen. */
  terminations: Termination[];
  /** The connection with the `?id=` given, once it has arrived. */
  byId(id: string): ServerConnection;
  /** Resolves once `n` connections have been upgraded (and tracked). */
  waitForConnections(n: number, timeout?: number): Promise<void>;
  /** Closes the engine (if any), every socket and the http server. */
  close(): Promise<void>;
}

/** An ordinary `ws` client with counters of what reached it. */
export interface TestClient {
  ws: WebSocket;
  /** Number of ping frames received. */
  pings: number;
  /** now() of each ping frame received. */
  pingTimes: number[];
  messages: Array<{ data: Buffer; isBinary: boolean }>;
  /** now() right before the client began to connect: earlier than anything the server did for it. */
  startedAt: number;
  /** now() when 'open' fired: later than the server's handshake (by up to this process's event-loop delay). */
  openedAt: number;
  /** Set when the client emitted 'close'. */
  closeInfo: { code: number; reason: string; at: number } | null;
  /** Resolves on 'close'. */
  closed: Promise<{ code: number; reason: string; at: number }>;
}

/** A TCP peer that did the opening handshake by hand. Its socket is paused on return. */
export interface RawClient {
  socket: net.Socket;
  /** The status line and headers of the server's answer. */
  response: string;
  /** Bytes that arrived after the headers, in the same chunk. */
  rest: Buffer;
  /** Writes one masked frame. */
  send(opcode: Opcode, payload?: Buffer | string): void;
}

export const OPCODE = { text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;
export type Opcode = (typeof OPCODE)[keyof typeof OPCODE];

/** One masked (client-to-server) frame with FIN set. */
export function maskedFrame(opcode: Opcode, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const mask = randomBytes(4);
  let header: Buffer;
  if (data.length < 126) {
    header = Buffer.from([0x80 | opcode, 0x80 | data.length]);
  } else if (data.length < 0x10000) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 126;
    header.writeUInt16BE(data.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(data.length), 2);
  }
  const body = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) body[i] = data[i]! ^ mask[i & 3]!;
  return Buffer.concat([header, mask, body]);
}

/** The payload of a close frame: status code, then an optional UTF-8 reason. */
export function closePayload(code: number, reason = ''): Buffer {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  return payload;
}

/**
 * Opens a TCP connection to 127.0.0.1:`port`, sends the upgrade request for `path`, and resolves
 * once the whole response head ("\r\n\r\n") arrived with status 101. The socket is paused then:
 * call `resume()` (with a 'data' listener) to read on. `allowHalfOpen` (default true) keeps our
 * side open when the server sends FIN, so the peer never FINs unless the test says so.
 */
export function rawUpgrade(port: number, path = '/', { allowHalfOpen = true } = {}): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen });
    let head = Buffer.alloc(0);
    const socketOnError = (err: Error) => reject(err);
    const socketOnData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.pause();
      socket.off('data', socketOnData);
      socket.off('error', socketOnError);
      socket.on('error', () => {});
      const response = head.subarray(0, end).toString('latin1');
      if (!response.startsWith('HTTP/1.1 101')) {
        socket.destroy();
        reject(new Error(`upgrade refused: ${response.split('\r\n')[0]}`));
        return;
      }
      resolve({
        socket,
        response,
        rest: head.subarray(end + 4),
        send: (opcode, payload) => socket.write(maskedFrame(opcode, payload)),
      });
    };
    socket.on('error', socketOnError);
    socket.on('data', socketOnData);
    socket.on('connect', () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\n` +
          `Host: 127.0.0.1:${port}\r\n` +
          'Upgrade: websocket\r\n' +
          'Connection: Upgrade\r\n' +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n` +
          'Sec-WebSocket-Version: 13\r\n\r\n',
      );
    });
  });
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * Starts an http server on 127.0.0.1 port 0 whose upgrades go to a `ws` server in noServer mode.
 * Each upgrade is tracked by the engine on the route named by its path ('/fast' → 'fast',
 * '/' → 'default') before the application's listeners are added; the application echoes.
 */
export async function startEchoServer(options: EchoServerOptions = {}): Promise<EchoServer> {
  const { heartbeat = {}, routes = {}, ws: wsOptions = {}, echo = true } = options;
  const hb = heartbeat === false ? null : heartbeat instanceof Heartbeat ? heartbeat : new Heartbeat(heartbeat);
  for (const [name, overrides] of Object.entries(routes)) hb?.route(name, overrides);

  const server = http.createServer((_req, res) => {
    res.writeHead(426, { Connection: 'close' }).end();
  });
  const wss = new WebSocketServer({ ...wsOptions, noServer: true });
  const connections: ServerConnection[] = [];
  const terminations: Termination[] = [];
  const byWs = new Map<WebSocket, ServerConnection>();
  const sockets = new Set<Duplex>();

  hb?.on('terminate', (ws, reason, route, info) => {
    terminations.push({ conn: byWs.get(ws), reason, route, at: now(), info });
  });

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.add(socket);
    socket.on('error', () => {});
    const url = new URL(req.url ?? '/', 'ws://127.0.0.1');
    const route = url.pathname === '/' ? 'default' : url.pathname.slice(1);
    const id = url.searchParams.get('id');
    wss.handleUpgrade(req, socket, head, (ws) => {
      const conn: ServerConnection = {
        ws,
        socket,
        route,
        id,
        trackedAt: now(),
        messages: [],
        closed: null,
        socketClosedAt: null,
      };
      connections.push(conn);
      byWs.set(ws, conn);
      socket.once('close', () => {
        conn.socketClosedAt = now();
        sockets.delete(socket);
      });
      ws.on('close', (code) => {
        conn.closed = { code, at: now() };
      });
      hb?.track(ws, { route, socket });
      ws.on('error', () => {});
      ws.on('message', (data, isBinary) => {
        const buffer = toBuffer(data);
        conn.messages.push({ data: buffer, isBinary });
        if (echo && ws.readyState === WebSocket.OPEN) ws.send(buffer, { binary: isBinary });
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server has no TCP address');
  const { port } = address;

  let closing: Promise<void> | null = null;
  return {
    server,
    wss,
    hb,
    port,
    url: (path = '/') => `ws://127.0.0.1:${port}${path}`,
    connections,
    terminations,
    byId(id) {
      const conn = connections.find((c) => c.id === id);
      if (conn === undefined) throw new Error(`no connection with id ${id}`);
      return conn;
    },
    waitForConnections: (n, timeout = ms(5000)) =>
      waitFor(() => connections.length >= n, timeout, `${n} server-side connections`),
    close() {
      closing ??= (async () => {
        if (hb !== null) await hb.close();
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closing;
    },
  };
}

/** Opens one `ws` client and resolves once it is open. */
export function openClient(url: string, options: ClientOptions = {}): Promise<TestClient> {
  return new Promise((resolve, reject) => {
    const startedAt = now();
    const ws = new WebSocket(url, options);
    let markClosed!: (info: { code: number; reason: string; at: number }) => void;
    const client: TestClient = {
      ws,
      pings: 0,
      pingTimes: [],
      messages: [],
      startedAt,
      openedAt: Number.NaN,
      closeInfo: null,
      closed: new Promise((r) => (markClosed = r)),
    };
    ws.on('ping', () => {
      client.pings += 1;
      client.pingTimes.push(now());
    });
    ws.on('message', (data, isBinary) => client.messages.push({ data: toBuffer(data), isBinary }));
    ws.on('close', (code, reason) => {
      client.closeInfo = { code, reason: reason.toString(), at: now() };
      markClosed(client.closeInfo);
    });
    ws.once('error', reject);
    ws.once('open', () => {
      client.openedAt = now();
      ws.off('error', reject);
      ws.on('error', () => {});
      resolve(client);
    });
  });
}

/** Opens `n` clients to `url` in parallel. */
export function openClients(url: string, n: number, options: ClientOptions = {}): Promise<TestClient[]> {
  return Promise.all(Array.from({ length: n }, () => openClient(url, options)));
}

/** Opens one `ws` client that `cleanup` terminates (and waits to be closed). */
export async function openClientFor(cleanup: Cleanup, url: string, options?: ClientOptions): Promise<TestClient> {
  const client = await openClient(url, options);
  cleanup.defer(() => {
    client.ws.terminate();
    return client.closed;
  });
  return client;
}

/** Opens `n` clients to `url` in parallel, each terminated by `cleanup`. */
export function openClientsFor(cleanup: Cleanup, url: string, n: number, options?: ClientOptions): Promise<TestClient[]> {
  return Promise.all(Array.from({ length: n }, () => openClientFor(cleanup, url, options)));
}

/** {@link rawUpgrade}, the socket destroyed by `cleanup`. */
export async function rawUpgradeFor(cleanup: Cleanup, port: number, path?: string, options?: { allowHalfOpen?: boolean }): Promise<RawClient> {
  const raw = await rawUpgrade(port, path, options);
  cleanup.defer(() => raw.socket.destroy());
  return raw;
}

/** How many peers of each kind {@link openPeerMix} opens. */
export interface PeerMix {
  /** Ordinary `ws` clients: they answer pings and close frames. */
  healthy: number;
  /** `ws` clients with `autoPong: false`: they answer close frames but never pings. */
  silent: number;
  /** Raw TCP peers that read everything and answer nothing, not even a close frame. */
  ignoring: number;
}

/** What a shutdown child process is told: which peers to hold, and the close timeout to use. */
export interface ShutdownConfig extends PeerMix {
  closeTimeout: number;
}

/** What a shutdown child process reports: when it starts closing, and what closing took. */
export type ShutdownReport<Extra = unknown> =
  | { type: 'closing' }
  | ({
      type: 'closed';
      /** ms from the start of the close until it resolved */
      closeMs: number;
      /** connections the engine still tracked afterwards */
      size: number;
      terminations: Partial<Record<TerminateReason, number>>;
    } & Extra);

/**
 * Opens the peers of a shutdown test against `ws://127.0.0.1:<port><path>`, then waits (up to
 * `ms(10_000)`) until `tracked()` reports them all. Used by the child processes whose exit is measured.
 */
export async function openPeerMix(port: number, path: string, mix: PeerMix, tracked: () => number): Promise<void> {
  const open = (autoPong: boolean) =>
    new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { autoPong });
      ws.once('error', reject);
      ws.once('open', () => {
        ws.on('error', () => {});
        resolve();
      });
    });
  const opening: Promise<unknown>[] = [];
  for (let i = 0; i < mix.healthy; i++) opening.push(open(true));
  for (let i = 0; i < mix.silent; i++) opening.push(open(false));
  for (let i = 0; i < mix.ignoring; i++) {
    opening.push(
      rawUpgrade(port, path, { allowHalfOpen: false }).then((raw) => {
        raw.socket.on('data', () => {});
        raw.socket.resume();
      }),
    );
  }
  await Promise.all(opening);
  const total = mix.healthy + mix.silent + mix.ignoring;
  await waitFor(() => tracked() >= total, ms(10_000), `${total} tracked connections`);
}
