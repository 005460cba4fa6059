import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { APP_HEARTBEAT, READS_WATCHED, type ConnectionTable } from './connections';

// How the engine sees a tracked connection's events without a listener or closure per
// connection: while it is tracked, the `ws` object (and its raw socket) gets a prototype of the
// engine's, made once per engine and original prototype: it adds a pass-through `emit` (and, for
// `ws`, `close`) over the original ones. Besides the slot id on the `ws` object (8 bytes), this
// costs a connection no memory: an own method there would take a property slot on each object,
// and five listeners more. On `'close'` both get their original prototypes back.
//
// An object with an `emit` or `close` of its own would hide the prototype's: a `ws` gets the
// engine's methods as own properties instead (removed on `'close'`), a raw socket listeners.

/** The property that links a tracked `ws` to its slot in the engine (and a raw socket, where `ws` does not link it). */
const kId = Symbol('ws-heartbeat.id');

type Tagged<T> = T & { [kId]?: number };
type Emit = (this: never, event: string | symbol, ...args: unknown[]) => boolean;
type Close = (this: never, code?: number, reason?: string | Buffer) => void;
/** What the engine's prototypes are made over: the original prototypes of `ws` objects and raw sockets. */
type Base = { emit: Emit; close?: Close };

const emitOriginal = EventEmitter.prototype.emit as Emit;

/** What the engine does on the events the pass-through methods see. */
export interface ConnectionEvents {
  /** A message on a route with `appHeartbeat`: true when it was a heartbeat, which the engine answered and consumed. */
  appMessage(ws: WebSocket, id: number, data: RawData, isBinary: boolean): boolean;
  pong(ws: WebSocket, id: number): void;
  /** A frame arrived on a connection whose raw socket was never seen read: the runtime reads it out of sight (Bun). */
  readsUnseen(id: number): void;
  /** A close began: the application's `close()`, or the peer's FIN (undefined: on a connection no longer tracked). */
  closing(id: number | undefined): void;
  /** `ws` emitted `'close'`: forget the connection. */
  closed(id: number): void;
}

/** The pass-through methods and prototypes of one engine. */
export interface Interceptors {
  /** The engine's prototype over `base` (the original prototype of a `ws`), made on first use. */
  wsPrototype(base: Base): object;
  /** The engine's prototype over the original prototype of a raw socket, made on first use. */
  socketPrototype(base: Base): object;
  /** Whether `proto` is one of this engine's prototypes. */
  owns(proto: object | null): boolean;
  /** The symbol by which a raw socket links to its `ws` (`ws` sets one), once seen; null when a socket had none. */
  link: symbol | null | undefined;
  /** For a `ws` with an `emit` or a `close` of its own: the engine's, set as own properties. */
  readonly wsEmit: Emit;
  readonly wsClose: Close;
  /** For a raw socket with an `emit` of its own: listeners. */
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
  // Frames prove life (unless the raw socket's reads already did), pongs end a ping, 'close'
  // forgets the connection, and an 'error' nobody listens to is dropped instead of thrown (`ws`
  // closes the connection after emitting it). Returns what `emit` returns when the event goes no
  // further, undefined when it goes on to the original `emit`.
  const wsEvent = (ws: Tagged<WebSocket>, event: string | symbol, data: unknown, isBinary: unknown): boolean | undefined => {
    const id = ws[kId]!;
    switch (event) {
      case 'message':
        if ((table.traits[id]! & APP_HEARTBEAT) !== 0 && on.appMessage(ws, id, data as RawData, isBinary === true)) return true;
        if ((table.traits[id]! & READS_WATCHED) === 0) frameOnly(id);
        break;
      case 'ping':
        if ((table.traits[id]! & READS_WATCHED) === 0) frameOnly(id);
        break;
      case 'pong':
        on.pong(ws, id);
        break;
      case 'close':
        on.closed(id);
        break;
      case 'error':
        if (ws.listenerCount('error') === 0) return false;
        break;
    }
    return undefined;
  };
  // Every chunk read from the peer is a sign of life, a frame complete or not (one large frame
  // can take seconds to arrive, and the peer's pong waits behind it). The peer's FIN leaves `ws`
  // CLOSING, where it may stay forever if data is queued to a peer that stopped reading: the
  // close timeout starts there.
  const read = (id: number | undefined): void => {
    if (id === undefined || id < 0) return;
    table.lastSeen[id] = performance.now();
    table.traits[id]! |= READS_WATCHED;
  };
  const methods: Interceptors = {
    wsPrototype: (base) =>
      derived(wsPrototypes, base, () => ({
        emit(this: Tagged<WebSocket>, event: string | symbol, data?: unknown, isBinary?: unknown) {
          return wsEvent(this, event, data, isBinary) ?? (Reflect.apply(base.emit, this, arguments) as boolean);
        },
        close(this: Tagged<WebSocket>) {
          on.closing(this[kId]!);
          Reflect.apply(base.close!, this, arguments);
        },
      })),
    socketPrototype: (base) =>
      derived(socketPrototypes, base, () => ({
        emit(this: Tagged<Duplex>, event: string | symbol) {
          if (event === 'data') read(socketId(this));
          else if (event === 'end') on.closing(socketId(this));
          return Reflect.apply(base.emit, this, arguments) as boolean;
        },
      })),
    owns: (proto) => proto !== null && owned.has(proto),
    link: undefined,
    wsEmit(this: Tagged<WebSocket>, event: string | symbol, data?: unknown, isBinary?: unknown) {
      return wsEvent(this, event, data, isBinary) ?? (Reflect.apply(emitOriginal, this, arguments) as boolean);
    },
    wsClose(this: Tagged<WebSocket>) {
      on.closing(this[kId]!);
      Reflect.apply((Object.getPrototypeOf(this) as Base).close!, this, arguments);
    },
    socketOnData() {
      read(socketId(this));
    },
    socketOnEnd() {
      on.closing(socketId(this));
    },
  };
  const wsPrototypes = new Map<Base, object>();
  const socketPrototypes = new Map<Base, object>();
  const owned = new Set<object>();
  /**
   * The slot of a raw socket: its own tag, or its `ws`'s through the link `ws` keeps on it. `ws`
   * unlinks the socket when it closes, before its own `'close'` (where the engine lets go of
   * both): a late `'end'` then finds no slot.
   */
  const socketId = (socket: Tagged<Duplex>): number | undefined =>
    socket[kId] ?? (methods.link == null ? undefined : (socket as unknown as Record<symbol, Tagged<WebSocket> | undefined>)[methods.link]?.[kId]);
  /** The prototype made over `base` with the methods `own()` makes: made, and its methods, only the first time. */
  const derived = (made: Map<Base, object>, base: Base, own: () => Partial<Base>): object => {
    let proto = made.get(base);
    if (proto === undefined) {
      const properties: PropertyDescriptorMap = {};
      for (const [name, value] of Object.entries(own())) properties[name] = { value, writable: true, configurable: true };
      proto = Object.create(base, properties) as object;
      made.set(base, proto);
      owned.add(proto);
    }
    return proto;
  };
  return methods;
}

/** The slot id of a tracked `ws`; undefined for one no engine tracks (-1: one that was untracked). */
export function idOf(ws: WebSocket): number | undefined {
  return (ws as Tagged<WebSocket>)[kId];
}

/** Routes the events of `ws` and its raw socket through the engine's `methods`, for the connection `id`. */
export function intercept(ws: WebSocket, socket: Duplex | undefined, id: number, methods: Interceptors): void {
  (ws as Tagged<WebSocket>)[kId] = id;
  if (Object.hasOwn(ws, 'emit') || Object.hasOwn(ws, 'close')) {
    ws.emit = methods.wsEmit;
    ws.close = methods.wsClose;
  } else {
    Object.setPrototypeOf(ws, methods.wsPrototype(Object.getPrototypeOf(ws) as Base));
  }
  if (socket === undefined) return;
  // `ws` links its raw socket to itself by a symbol of its own: found once, the socket needs no tag.
  methods.link ??= Object.getOwnPropertySymbols(socket).find((key) => (socket as unknown as Record<symbol, unknown>)[key] === ws) ?? null;
  if (methods.link === null || (socket as unknown as Record<symbol, unknown>)[methods.link] !== ws) (socket as Tagged<Duplex>)[kId] = id;
  if (Object.hasOwn(socket, 'emit')) {
    socket.on('data', methods.socketOnData);
    socket.on('end', methods.socketOnEnd);
  } else {
    Object.setPrototypeOf(socket, methods.socketPrototype(Object.getPrototypeOf(socket) as Base));
  }
}

/** Gives `ws` and its socket their own prototypes (or methods) back. */
export function release(ws: WebSocket, socket: Duplex | undefined, methods: Interceptors): void {
  const proto = Object.getPrototypeOf(ws) as object | null;
  if (methods.owns(proto)) {
    Object.setPrototypeOf(ws, Object.getPrototypeOf(proto));
  } else {
    Reflect.deleteProperty(ws, 'close');
    Reflect.deleteProperty(ws, 'emit');
  }
  (ws as Tagged<WebSocket>)[kId] = -1;
  if (socket === undefined) return;
  const socketProto = Object.getPrototypeOf(socket) as object | null;
  if (methods.owns(socketProto)) {
    Object.setPrototypeOf(socket, Object.getPrototypeOf(socketProto));
  } else {
    socket.removeListener('data', methods.socketOnData);
    socket.removeListener('end', methods.socketOnEnd);
  }
  if (Object.hasOwn(socket, kId)) (socket as Tagged<Duplex>)[kId] = -1;
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
