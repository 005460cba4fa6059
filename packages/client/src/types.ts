// The client's public types: the WebSocket it drives, its events and its states.

/** The part of a WebSocket (the browser's, `ws`, Node's global one) that the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType?: string;
  send(data: never): void;
  close(code?: number, reason?: string): void;
  /** `ws` has it: ends the TCP connection at once, without a closing handshake. */
  terminate?(): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** A WebSocket constructor: `globalThis.WebSocket` in a browser, `require('ws')` in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Data the client can send: what the platform's `WebSocket.send()` takes. */
export type SendData = string | ArrayBufferLike | ArrayBufferView | Blob;

/** Why the client declared the server dead. */
export type DeadReason = 'timeout' | 'connection-lost';

export interface ClientEventMap {
  /** The connection is open. */
  open: { type: 'open'; url: string };
  /** An application message arrived (heartbeat answers are not delivered). */
  message: { type: 'message'; data: unknown };
  /**
   * A connection ended. `final` is true when the client will not reconnect (`close()` was called,
   * reconnect is off, or `maxRetries` is spent).
   */
  close: { type: 'close'; code: number; reason: string; wasClean: boolean; final: boolean };
  /** The server answered a heartbeat message after `rtt` ms; `server` holds its settings, when it sent them. */
  heartbeat: { type: 'heartbeat'; rtt: number; server: { interval: number; timeout: number } | undefined };
  /** The server is gone: it did not answer a heartbeat within `pongTimeout`, or the connection dropped. */
  dead: { type: 'dead'; reason: DeadReason; silentMs: number };
  /** The client will connect again after `delay` ms; `attempt` counts from 1. `hinted`: the server named the window. */
  reconnecting: { type: 'reconnecting'; attempt: number; delay: number; hinted: boolean };
  /** The socket reported an error (a 'close' follows). */
  error: { type: 'error'; error: unknown };
}

export type ClientEventType = keyof ClientEventMap;
export type ClientListener<K extends ClientEventType> = (event: ClientEventMap[K]) => void;

/** The client's state, as `WebSocket.readyState` numbers it; RECONNECTING counts as CONNECTING. */
export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSING = 2;
export const CLOSED = 3;
