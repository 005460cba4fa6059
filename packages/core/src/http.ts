import type { EventEmitter } from 'node:events';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/** Extra response headers; they override the defaults of the same name. */
export type ResponseHeaders = Record<string, string | number>;

/**
 * The `'error'` listener every socket gets before the upgrade is decided: an error (a reset by
 * the peer, a write after it left) ends that socket and nothing else.
 */
export function socketOnError(this: Duplex): void {
  this.destroy();
}

function socketOnFinish(this: Duplex): void {
  this.destroy();
}

/**
 * Refuses an upgrade the way `ws` does: writes a complete HTTP/1.1 response (status line with the
 * standard reason phrase, `Connection: close`, `Content-Type: text/html`, `Content-Length`, the
 * reason phrase as body), ends the socket and destroys it once the response is written.
 * Does nothing to a socket that is already destroyed; destroys a socket that can no longer be
 * written to.
 */
export function abortHandshake(socket: Duplex, status: number, headers?: ResponseHeaders): void {
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    throw new TypeError(`status must be an integer from 100 to 599: got ${String(status)}`);
  }
  if (socket.destroyed) return;
  if (socket.listenerCount('error') === 0) socket.on('error', socketOnError);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const reason = STATUS_CODES[status] ?? '';
  const all: ResponseHeaders = {
    Connection: 'close',
    'Content-Type': 'text/html',
    'Content-Length': Buffer.byteLength(reason),
    ...headers,
  };
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (const name of Object.keys(all)) head += `${name}: ${all[name]!}\r\n`;
  socket.once('finish', socketOnFinish);
  socket.end(`${head}\r\n${reason}`);
}

/**
 * The rule for an upgrade that matches none of an adapter's routes, applied from its one
 * `'upgrade'` listener on `server`: when the server has another `'upgrade'` listener, the socket
 * is that listener's and is left untouched; otherwise it is refused with `status` (404, or 503
 * while shutting down) and destroyed.
 */
export function refuseUnmatched(server: EventEmitter, socket: Duplex, status = 404): void {
  if (!upgradeBelongsElsewhere(server)) abortHandshake(socket, status);
}

/**
 * Whether an upgrade that matches none of an adapter's routes belongs to another `'upgrade'`
 * listener of `server` (the adapter's own being one of them): then the adapter leaves it alone.
 */
export function upgradeBelongsElsewhere(server: EventEmitter): boolean {
  return server.listenerCount('upgrade') > 1;
}
