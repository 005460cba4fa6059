/**
 * Raw WebSocket upgrade requests for the refusal paths: what the server answered (101 or an
 * error status), every byte it sent, and whether the server closed the connection by itself.
 */
import { randomBytes } from 'node:crypto';
import { request, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { ms } from './time';

export interface UpgradeRequestOptions {
  /** The `Origin` header; left out when undefined. */
  origin?: string;
  /** More request headers; they override the upgrade headers of the same name. */
  headers?: Record<string, string>;
  /** `Sec-WebSocket-Key`; `null` leaves the header out. Default: a fresh valid key. */
  key?: string | null;
  /** Aborts the request: the client destroys its socket and the promise rejects. */
  signal?: AbortSignal;
  /** Rejects when the server has not answered after this many ms. Default: `ms(5000)`. */
  timeout?: number;
  /** After a refusal, how long to wait for the server to close its socket. Default: `ms(2000)`. */
  closeWait?: number;
}

export interface UpgradeResult {
  /** 101, or the status of the refusal. */
  status: number;
  headers: IncomingHttpHeaders;
  /** The response body (refusals only). */
  body: string;
  /** Everything the server sent on this connection, as latin1 text. */
  raw: string;
  /** True when the server switched protocols. */
  upgraded: boolean;
  /**
   * After a refusal: true when the server destroyed its socket of this connection within
   * `closeWait` while the client still held its own side open (the client never sent FIN), so a
   * server that only half-closes and waits for the client does not count.
   */
  closedByServer: boolean;
  /** After a 101: the client's socket, which the caller must destroy. */
  socket: Socket | undefined;
}

function portOf(server: Server): number {
  const address = server.address() as AddressInfo | null;
  if (address === null || typeof address === 'string') throw new Error('the server is not listening on TCP');
  return address.port;
}

/** Waits until `socket` has closed, up to `wait` ms; true if it did. */
function closedWithin(socket: Socket, wait: number): Promise<boolean> {
  if (socket.closed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.removeListener('close', onClose);
      resolve(false);
    }, wait);
    function onClose(): void {
      clearTimeout(timer);
      resolve(true);
    }
    socket.once('close', onClose);
  });
}

/**
 * Sends `GET path` with the WebSocket upgrade headers to `server` (listening on 127.0.0.1) with
 * node:http. Resolves once the server has answered and, after a refusal, once the server has
 * closed the connection or `closeWait` has passed; rejects on a client error, an abort, or no
 * answer within `timeout`.
 */
export function requestUpgrade(server: Server, path: string, options: UpgradeRequestOptions = {}): Promise<UpgradeResult> {
  const { origin, key = randomBytes(16).toString('base64'), signal, timeout = ms(5000), closeWait = ms(2000) } = options;
  const port = portOf(server);
  const headers: Record<string, string> = {
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
  };
  if (key !== null) headers['Sec-WebSocket-Key'] = key;
  if (origin !== undefined) headers.Origin = origin;
  Object.assign(headers, options.headers);

  // The server side of this connection, to tell whether the server closed it. Ports are read
  // at once: a destroyed socket no longer reports them.
  const serverSockets = new Map<number | undefined, Socket>();
  const serverOnConnection = (socket: Socket): void => {
    serverSockets.set(socket.remotePort, socket);
  };
  server.on('connection', serverOnConnection);

  return new Promise<UpgradeResult>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const raw = (): string => Buffer.concat(chunks).toString('latin1');
    let localPort: number | undefined;
    const socketOnData = (chunk: Buffer): void => {
      chunks.push(chunk);
    };
    const answerTimer = setTimeout(() => {
      req.destroy(new Error(`no answer from the server within ${timeout} ms`));
    }, timeout);
    const finish = (): void => {
      clearTimeout(answerTimer);
      server.removeListener('connection', serverOnConnection);
    };

    const req = request({
      host: '127.0.0.1',
      port,
      path,
      headers,
      signal,
      // No agent (node:http ignores createConnection with `agent: false`). Half-open allowed: the
      // client does not answer the server's FIN with its own.
      createConnection: () => connect({ host: '127.0.0.1', port, allowHalfOpen: true }),
    });
    req.on('socket', (socket: Socket) => {
      socket.on('data', socketOnData);
      socket.once('connect', () => {
        localPort = socket.localPort;
      });
    });
    req.on('upgrade', (res, socket: Socket, head) => {
      socket.removeListener('data', socketOnData);
      if (head.length > 0) socket.unshift(head); // frames the server sent at once: the caller reads them
      finish();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '', raw: raw(), upgraded: true, closedByServer: false, socket });
    });
    req.on('response', (res) => {
      clearTimeout(answerTimer);
      // Keep the client's side open so that only the server can close the connection: the
      // response is left unread (reading it to its end makes node:http end the socket), and
      // node:http's own 'end' listener (which destroys the socket on the server's FIN) is removed.
      // The body is taken from the raw bytes instead.
      const socket = res.socket as Socket;
      socket.removeAllListeners('end');
      res.on('error', () => {}); // 'aborted' when the socket is destroyed below
      const ours = localPort === undefined ? undefined : serverSockets.get(localPort);
      const closed = ours === undefined ? Promise.resolve(false) : closedWithin(ours, closeWait);
      void closed.then((closedByServer) => {
        finish();
        socket.destroy();
        const text = raw();
        const bodyAt = text.indexOf('\r\n\r\n');
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: bodyAt === -1 ? '' : text.slice(bodyAt + 4),
          raw: text,
          upgraded: false,
          closedByServer,
          socket: undefined,
        });
      });
    });
    req.on('error', (error) => {
      finish();
      reject(error);
    });
    req.end();
  });
}
