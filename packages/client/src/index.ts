/**
 * @ws-heartbeat/client: a WebSocket client that can tell when its server is gone, and comes back.
 *
 * Browsers answer the server's ping frames but cannot send any, so a browser app cannot see a
 * dead server: its socket sits OPEN for minutes. This client sends the application-level
 * heartbeat that the server engine's `appHeartbeat` answers, declares the server dead when no
 * answer comes, and reconnects with exponential backoff and full jitter, or within the window the
 * server named when it shut down. Its messages are those of `@ws-heartbeat/protocol`, its only
 * dependency. It runs in browsers (the browser build is one ES module with the protocol bundled
 * in) and in Node (with `ws`, or the global `WebSocket` where Node has one).
 */

import { parseAppPong, parseRetryHint } from '@ws-heartbeat/protocol';
import { backoffDelay, DEFAULTS, LATE_TIMER_MS, positive, RECONNECT_DEFAULTS, type HeartbeatClientOptions, type ReconnectOptions } from './options.js';
import { CLOSED, CLOSING, CONNECTING, OPEN, type ClientEventMap, type ClientEventType, type ClientListener, type DeadReason, type SendData, type WebSocketConstructor, type WebSocketLike } from './types.js';

export { backoffDelay, LATE_TIMER_MS } from './options.js';
export type { HeartbeatClientOptions, ReconnectOptions } from './options.js';
export { CLOSED, CLOSING, CONNECTING, OPEN } from './types.js';
export type { ClientEventMap, ClientEventType, ClientListener, DeadReason, SendData, WebSocketConstructor, WebSocketLike } from './types.js';

/** The window, in ms, within which the server asked its clients to reconnect; undefined without one. */
export const retryHint: (code: number, reason: string) => number | undefined = parseRetryHint;

function ignore(): void {}

/**
 * A WebSocket that keeps itself alive.
 *
 * @example
 * const client = new HeartbeatClient('wss://example.com/ws', { queueSize: 100 });
 * client.on('message', ({ data }) => console.log(data));
 * client.on('dead', ({ reason }) => console.log('server gone:', reason));
 * client.send('hello'); // queued until the connection is open
 */
export class HeartbeatClient {
  readonly url: string;
  /** The latest heartbeat round-trip time, in ms. */
  rtt: number | undefined;

  readonly #options: {
    connectTimeout: number;
    protocols: string | string[] | undefined;
    WebSocket: WebSocketConstructor;
    heartbeatMessage: string;
    queueSize: number;
    binaryType: string | undefined;
    reconnect: Required<ReconnectOptions> | false;
  };
  #pingInterval: number;
  #pongTimeout: number;
  readonly #ownPingInterval: boolean;
  readonly #ownPongTimeout: boolean;
  readonly #listeners = new Map<ClientEventType, Set<(event: never) => void>>();
  readonly #queue: SendData[] = [];

  #ws: WebSocketLike | undefined;
  #state: number = CONNECTING;
  #closedByUser = false;
  #attempt = 0;
  #openedAt = 0;
  #lastReceived = 0;
  /** When the outstanding heartbeat message was sent; 0 when none is out. */
  #probeSentAt = 0;
  /** A late timer already earned the connection one more probe. */
  #reprobed = false;
  /** One timer at a time: the heartbeat check while open, the reconnect delay while closed. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerDue = 0;

  constructor(url: string, options: HeartbeatClientOptions = {}) {
    if (typeof url !== 'string') throw new TypeError(`The url must be a string: got ${String(url)}`);
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (typeof WebSocketImpl !== 'function') {
      throw new TypeError('No WebSocket constructor: pass the "WebSocket" option (in Node 20: require("ws"))');
    }
    const reconnect = options.reconnect === false ? false : { ...RECONNECT_DEFAULTS, ...options.reconnect };
    if (reconnect) {
      positive('reconnect.minDelay', reconnect.minDelay);
      positive('reconnect.maxDelay', reconnect.maxDelay);
      positive('reconnect.resetAfter', reconnect.resetAfter);
      if (typeof reconnect.factor !== 'number' || !(reconnect.factor >= 1) || !Number.isFinite(reconnect.factor)) {
        throw new TypeError(`The "reconnect.factor" option must be a finite number ≥ 1: got ${String(reconnect.factor)}`);
      }
      if (reconnect.maxRetries !== Infinity && !(Number.isInteger(reconnect.maxRetries) && reconnect.maxRetries >= 0)) {
        throw new TypeError(`The "reconnect.maxRetries" option must be a whole number ≥ 0 or Infinity: got ${String(reconnect.maxRetries)}`);
      }
    }
    const queueSize = options.queueSize ?? DEFAULTS.queueSize;
    if (!Number.isInteger(queueSize) || queueSize < 0) throw new TypeError(`The "queueSize" option must be a whole number ≥ 0: got ${String(queueSize)}`);
    this.url = url;
    this.#ownPingInterval = options.pingInterval !== undefined;
    this.#ownPongTimeout = options.pongTimeout !== undefined;
    this.#pingInterval = positive('pingInterval', options.pingInterval ?? DEFAULTS.pingInterval);
    this.#pongTimeout = positive('pongTimeout', options.pongTimeout ?? DEFAULTS.pongTimeout);
    this.#options = {
      connectTimeout: positive('connectTimeout', options.connectTimeout ?? DEFAULTS.connectTimeout),
      protocols: options.protocols,
      WebSocket: WebSocketImpl,
      heartbeatMessage: options.heartbeatMessage ?? DEFAULTS.heartbeatMessage,
      queueSize,
      binaryType: options.binaryType,
      reconnect,
    };
    this.#connect();
  }

  /** CONNECTING (also while waiting to reconnect), OPEN, CLOSING or CLOSED. */
  get readyState(): number {
    return this.#state;
  }

  /** The heartbeat settings in force: the options, or the server's where the options left them open. */
  get settings(): { pingInterval: number; pongTimeout: number } {
    return { pingInterval: this.#pingInterval, pongTimeout: this.#pongTimeout };
  }

  /** Messages waiting for the connection to open. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Sends now when open; otherwise queues (up to `queueSize`). Returns false when the message was
   * neither sent nor queued (no queue, queue full, or the client is closed).
   */
  send(data: SendData): boolean {
    if (this.#state === OPEN && this.#ws) {
      this.#ws.send(data as never);
      return true;
    }
    if (this.#closedByUser || this.#queue.length >= this.#options.queueSize) return false;
    this.#queue.push(data);
    return true;
  }

  /** Closes the connection for good: no reconnect, the queue is dropped. Safe to call twice. */
  close(code = 1000, reason = ''): void {
    if (this.#closedByUser) return;
    this.#closedByUser = true;
    this.#queue.length = 0;
    this.#clearTimer();
    const ws = this.#ws;
    if (ws && (ws.readyState === CONNECTING || ws.readyState === OPEN)) {
      this.#state = CLOSING;
      ws.close(code, reason);
    } else {
      this.#state = CLOSED;
      if (!ws) this.#emit('close', { type: 'close', code, reason, wasClean: true, final: true });
    }
  }

  /** Adds a listener; returns the function that removes it. */
  on<K extends ClientEventType>(type: K, listener: ClientListener<K>): () => void {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener as (event: never) => void);
    return () => this.off(type, listener);
  }

  off<K extends ClientEventType>(type: K, listener: ClientListener<K>): void {
    this.#listeners.get(type)?.delete(listener as (event: never) => void);
  }

  /** The DOM-style spelling of {@link on}. */
  addEventListener<K extends ClientEventType>(type: K, listener: ClientListener<K>): void {
    this.on(type, listener);
  }

  removeEventListener<K extends ClientEventType>(type: K, listener: ClientListener<K>): void {
    this.off(type, listener);
  }

  #emit<K extends ClientEventType>(type: K, event: ClientEventMap[K]): void {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as ClientListener<K>)(event);
      } catch (error) {
        // A listener's bug must not stop the heartbeat: report it as the platform reports errors.
        setTimeout(() => {
          throw error;
        }, 0);
      }
    }
  }

  #connect(): void {
    this.#state = CONNECTING;
    let ws: WebSocketLike;
    try {
      ws = new this.#options.WebSocket(this.url, this.#options.protocols);
    } catch (error) {
      this.#emit('error', { type: 'error', error });
      this.#lost(1006, '', false);
      return;
    }
    if (this.#options.binaryType !== undefined) ws.binaryType = this.#options.binaryType;
    this.#ws = ws;
    ws.onopen = () => this.#onOpen(ws);
    ws.onmessage = (event) => this.#onMessage(ws, event.data);
    ws.onerror = (error) => {
      if (this.#ws === ws) this.#emit('error', { type: 'error', error });
    };
    ws.onclose = (event) => {
      if (this.#ws === ws) this.#lost(event.code, event.reason, event.wasClean);
    };
    this.#arm(performance.now() + this.#options.connectTimeout);
  }

  /** The attempt's upgrade got no answer within connectTimeout: give it up, as a failed attempt. */
  #connectTimedOut(): void {
    const ws = this.#ws!;
    this.#abandon(ws);
    this.#emit('error', { type: 'error', error: new Error(`The WebSocket did not open within ${this.#options.connectTimeout} ms (connectTimeout)`) });
    this.#lost(1006, 'connect timeout', false);
  }

  /** Drops a socket without waiting for it: none of its later events reach the client. */
  #abandon(ws: WebSocketLike): void {
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = ignore; // a late error of the abandoned socket must not surface
    if (typeof ws.terminate === 'function') ws.terminate();
    else ws.close(4000, 'heartbeat timeout');
  }

  #onOpen(ws: WebSocketLike): void {
    if (this.#ws !== ws) return;
    if (this.#closedByUser) {
      ws.close(1000, '');
      return;
    }
    const now = performance.now();
    this.#state = OPEN;
    this.#openedAt = now;
    this.#lastReceived = now;
    this.#probeSentAt = 0;
    this.#reprobed = false;
    this.#emit('open', { type: 'open', url: this.url });
    while (this.#queue.length > 0 && this.#state === OPEN) ws.send(this.#queue.shift() as never);
    if (this.#state !== OPEN) return;
    // Settings left to the server are learnt from its first answer: ask at once.
    if (!this.#ownPingInterval || !this.#ownPongTimeout) this.#probe(now);
    else this.#arm(now + this.#pingInterval);
  }

  #onMessage(ws: WebSocketLike, data: unknown): void {
    if (this.#ws !== ws) return;
    const now = performance.now();
    this.#lastReceived = now;
    const pong = parseAppPong(data);
    if (pong) this.#matchServer(pong);
    const probeSentAt = this.#probeSentAt;
    // The heartbeat is answered (any message counts): the next one is due an interval from now.
    // A pong that comes after an application message answered it brings the server's settings:
    // the timer armed by that message used the interval from before them, so arm it again.
    if (probeSentAt > 0 || pong) {
      this.#probeSentAt = 0;
      this.#reprobed = false;
      this.#arm(now + this.#pingInterval);
    }
    if (pong === false) {
      this.#emit('message', { type: 'message', data });
    } else if (probeSentAt > 0) {
      this.rtt = now - probeSentAt;
      this.#emit('heartbeat', { type: 'heartbeat', rtt: this.rtt, server: pong });
    }
  }

  /** Takes the server's settings for those the options left open. */
  #matchServer(server: { interval: number; timeout: number }): void {
    if (!this.#ownPingInterval && server.interval > 0) this.#pingInterval = server.interval;
    if (!this.#ownPongTimeout && server.timeout > 0) this.#pongTimeout = server.timeout;
  }

  #arm(at: number): void {
    this.#clearTimer();
    this.#timerDue = at;
    this.#timer = setTimeout(this.#onTimer, Math.max(0, at - performance.now()));
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    if (this.#state === OPEN) this.#check();
    else if (this.#ws !== undefined) {
      if (!this.#closedByUser) this.#connectTimedOut();
    } else if (!this.#closedByUser) this.#connect();
  };

  /** The heartbeat rule, run by the one timer while the connection is open. */
  #check(): void {
    const now = performance.now();
    const late = now - this.#timerDue > Math.min(LATE_TIMER_MS, this.#pongTimeout / 2);
    // Timers may fire a little early by this clock: neither the heartbeat nor the verdict comes
    // before its time (so the verdict is never before pingInterval + pongTimeout of silence).
    if (this.#probeSentAt === 0) {
      if (now - this.#lastReceived >= this.#pingInterval) this.#probe(now);
      else this.#arm(this.#lastReceived + this.#pingInterval);
      return;
    }
    const due = this.#probeSentAt + this.#pongTimeout;
    if (now < due) {
      this.#arm(due);
      return;
    }
    if (late && !this.#reprobed) {
      // This timer fired long after it was due: the tab was throttled or the machine slept, and the
      // answer may be waiting unread. Ask again, and give the server a full pongTimeout.
      this.#reprobed = true;
      this.#probe(now);
      return;
    }
    this.#dead('timeout', now - this.#lastReceived);
  }

  #probe(now: number): void {
    this.#probeSentAt = now;
    try {
      this.#ws!.send(this.#options.heartbeatMessage as never);
    } catch {
      // The socket is closing: its 'close' follows.
    }
    this.#arm(now + this.#pongTimeout);
  }

  /** The server did not answer: abandon the socket without waiting for a closing handshake. */
  #dead(reason: DeadReason, silentMs: number): void {
    const ws = this.#ws!;
    this.#emit('dead', { type: 'dead', reason, silentMs });
    this.#abandon(ws);
    this.#lost(1006, 'heartbeat timeout', false, true);
  }

  /**
   * A connection ended: report it, then reconnect unless the client is done. `deadReported`: the
   * heartbeat already declared the server dead.
   */
  #lost(code: number, reason: string, wasClean: boolean, deadReported = false): void {
    this.#clearTimer();
    const now = performance.now();
    const { reconnect } = this.#options;
    const wasOpen = this.#state === OPEN;
    if (reconnect && wasOpen && now - this.#openedAt >= reconnect.resetAfter) this.#attempt = 0;
    this.#ws = undefined;
    this.#probeSentAt = 0;
    const final = this.#closedByUser || !reconnect || this.#attempt >= reconnect.maxRetries;
    if (wasOpen && !deadReported && !wasClean && !this.#closedByUser) {
      this.#emit('dead', { type: 'dead', reason: 'connection-lost', silentMs: now - this.#lastReceived });
    }
    this.#state = final ? CLOSED : CONNECTING;
    this.#emit('close', { type: 'close', code, reason, wasClean, final });
    if (final || !reconnect) return;
    this.#attempt += 1;
    const hint = retryHint(code, reason);
    const delay = hint !== undefined ? Math.random() * hint : backoffDelay(this.#attempt, reconnect);
    this.#emit('reconnecting', { type: 'reconnecting', attempt: this.#attempt, delay, hinted: hint !== undefined });
    if (this.#closedByUser) return;
    this.#arm(now + delay);
  }
}
