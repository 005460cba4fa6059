import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { APP_HEARTBEAT, READS_WATCHED, type ConnectionTable } from './connections';

// How the engine sees a tracked connection's events without a listener or closure per
// connection: pass-through `emit` and `close` methods, shared by every connection of an engine,
// set as own properties of the `ws` object (and an `emit` on its raw socket). An own property
// costs no memory there; five listeners would. They are removed on `'close'`.

/** The property that links a tracked `ws` (and its raw socket) to its slot in the engine. */
const kId = Symbol('ws-heartbeat.id');

type Tagged<T> = T & { [kId]?: number };

const emitOriginal = EventEmitter.prototype.emit;

/** What the engine does on the events the pass-through methods see. */
export interface ConnectionEvents {
  /** A message on a route with `appHeartbeat`: true when it was a heartbeat, which the engine answered and consumed. */
  appMessage(ws: WebSocket, id: number, data: RawData, isBinary: boolean): boolean;
  pong(ws: WebSocket, id: number): void;
  /** A frame arrived on a connection whose raw socket was never seen read: the runtime reads it out of sight (Bun). */
  readsUnseen(id: number): void;
  /** A close began: the application's `close()`, or the peer's FIN. */
  closing(id: number): void;
  /** `ws` emitted `'close'`: forget the connection. */
  closed(id: number): void;
}

/** The pass-through methods of one engine. */
export interface Interceptors {
  readonly wsEmit: (this: Tagged<WebSocket>, event: string | symbol, ...args: unknown[]) => boolean;
  readonly wsClose: (this: Tagged<WebSocket>, code?: number, reason?: string | Buffer) => void;
  readonly socketEmit: (this: Tagged<Duplex>, event: string | symbol, ...args: unknown[]) => boolean;
  /** For a socket that already has an `emit` of its own: listeners instead. */
  readonly socketOnData: (this: Tagged<Duplex>) => void;
  readonly socketOnEnd: (this: Tagged<Duplex>) => void;
}

/**
 * Builds an engine's pass-through methods. Proofs of life are stores into `table.lastSeen`, done
 * here: one store per read, or per frame where reads are not watched.
 */
export function interceptors(table: ConnectionTable, on: ConnectionEvents): Interceptors {
  /** A frame where no read of the socket was seen: the frame is the sign of life. */
  const frameOnly = (id: number): void => {
    table.lastSeen[id] = performance.now();
    if (table.socket[id] !== undefined) on.readsUnseen(id);
  };
  return {
    // Frames prove life (unless the raw socket's reads already did), pongs end a ping, 'close'
    // forgets the connection, and an 'error' nobody listens to is dropped instead of thrown (`ws`
    // closes the connection after emitting it).
    wsEmit(event, data, isBinary) {
      const id = this[kId]!;
      switch (event) {
        case 'message':
          if ((table.traits[id]! & APP_HEARTBEAT) !== 0 && on.appMessage(this, id, data as RawData, isBinary === true)) return true;
          if ((table.traits[id]! & READS_WATCHED) === 0) frameOnly(id);
          break;
        case 'ping':
          if ((table.traits[id]! & READS_WATCHED) === 0) frameOnly(id);
          break;
        case 'pong':
          on.pong(this, id);
          break;
        case 'close':
          on.closed(id);
          break;
        case 'error':
          if (this.listenerCount('error') === 0) return false;
          break;
      }
      return Reflect.apply(emitOriginal, this, arguments) as boolean;
    },
    wsClose(code, reason) {
      on.closing(this[kId]!);
      Object.getPrototypeOf(this).close.call(this, code, reason);
    },
    // Every chunk read from the peer is a sign of life, a frame complete or not (one large frame
    // can take seconds to arrive, and the peer's pong waits behind it). The peer's FIN leaves `ws`
    // CLOSING, where it may stay forever if data is queued to a peer that stopped reading: the
    // close timeout starts there.
    socketEmit(event) {
      if (event === 'data') {
        const id = this[kId]!;
        table.lastSeen[id] = performance.now();
        table.traits[id]! |= READS_WATCHED;
      } else if (event === 'end') on.closing(this[kId]!);
      return Reflect.apply(Object.getPrototypeOf(this).emit, this, arguments) as boolean;
    },
    socketOnData() {
      const id = this[kId]!;
      table.lastSeen[id] = performance.now();
      table.traits[id]! |= READS_WATCHED;
    },
    socketOnEnd() {
      on.closing(this[kId]!);
    },
  };
}

/** The slot id of a tracked `ws`; undefined for one no engine tracks (-1: one that was untracked). */
export function idOf(ws: WebSocket): number | undefined {
  return (ws as Tagged<WebSocket>)[kId];
}

/** Routes the events of `ws` and its raw socket through `methods`, for the connection `id`. */
export function intercept(ws: WebSocket, socket: Duplex | undefined, id: number, methods: Interceptors): void {
  (ws as Tagged<WebSocket>)[kId] = id;
  ws.emit = methods.wsEmit;
  ws.close = methods.wsClose;
  if (socket === undefined) return;
  (socket as Tagged<Duplex>)[kId] = id;
  if (Object.hasOwn(socket, 'emit')) {
    socket.on('data', methods.socketOnData);
    socket.on('end', methods.socketOnEnd);
  } else {
    socket.emit = methods.socketEmit;
  }
}

/** Gives `ws` and its socket their own methods back. */
export function release(ws: WebSocket, socket: Duplex | undefined, methods: Interceptors): void {
  Reflect.deleteProperty(ws, 'close');
  Reflect.deleteProperty(ws, 'emit');
  (ws as Tagged<WebSocket>)[kId] = -1;
  if (socket === undefined) return;
  if (socket.emit === methods.socketEmit) {
    Reflect.deleteProperty(socket, 'emit');
  } else {
    socket.removeListener('data', methods.socketOnData);
    socket.removeListener('end', methods.socketOnEnd);
  }
  (socket as Tagged<Duplex>)[kId] = -1;
}

/** The raw socket `ws` keeps for a connection; `ws` does not expose it publicly. */
export function socketOf(ws: WebSocket): Duplex | undefined {
  return (ws as unknown as { _socket?: Duplex | null })._socket ?? undefined;
}

/**
 * Whether a ping may be written straight to `socket`: it is the socket of a server-side `ws`
 * (whose frames are unmasked) and still writable. `ws` writes each frame whole, in one
 * synchronous call, so a control frame written between two of its writes is in the right place
 * (RFC 6455 §5.4 allows one even between the fragments of a message).
 */
export function pingsDirectly(ws: WebSocket, socket: Duplex | undefined): socket is Duplex {
  const internals = ws as unknown as { _isServer?: boolean; _sender?: unknown };
  // `_sender`: the frames of `ws` go through the same socket writes as ours. Bun's `ws` has none
  // (its frames leave by a native path that a write to the socket could land in the middle of).
  return socket !== undefined && socket.writable && socketOf(ws) === socket && internals._isServer === true && internals._sender != null;
}

/** The peer's address of a raw socket (a `net.Socket` under `ws`), if it has one. */
export function addressOf(socket: Duplex | undefined): string | undefined {
  return (socket as Partial<Socket> | undefined)?.remoteAddress;
}
