import { createHash, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { createClient, ErrorReply, TimeoutError, TimeoutReadError, type RedisClientType } from '@redis/client';
import { checkKeys, type Heartbeat, type HeartbeatLogger, type PresenceCluster } from '@ws-heartbeat/core';
import type { WebSocket } from 'ws';
import { CHANGE, LEAVE, REGISTER, STATS, TICK } from './scripts';
import { parseStats, snapshotOf, type ClusterStats } from './stats';

export type { ClusterStats, NodeRouteStats, NodeStats } from './stats';

/** Thrown (as a rejection) by a presence read or write while Redis cannot be reached. */
export class ClusterUnavailableError extends Error {
  override readonly name = 'ClusterUnavailableError';
}

export interface ClusterOptions {
  /** Where Redis is: a `redis://` URL. @default 'redis://127.0.0.1:6379' */
  url?: string;
  /** Every key and channel starts with `{prefix}`. @default 'wsh' */
  prefix?: string;
  /** How often the node renews its lease, publishes its snapshot and reaps dead nodes, ms. @default 10_000 */
  interval?: number;
  /** A node whose lease was not renewed for `interval + timeout` is dead. @default 5_000 */
  timeout?: number;
  /** A key whose last connection left is announced `offline` this long after, unless one comes back, ms. @default 0 */
  offlineGrace?: number;
  /** How long a Redis command may take before it is rejected, ms. @default 2_000 */
  commandTimeout?: number;
  /** The engine whose figures the node publishes. */
  heartbeat?: Heartbeat;
  /** What `stats()` calls this node: a `host:port`, a pod's name. @default `<hostname>:<pid>` */
  name?: string;
  /**
   * Where the node says that Redis became unreachable (warn) or reachable again (info): a
   * pino-compatible logger, or `false` for silence.
   * @default the engine's logger (Fastify's `app.log` through the plugin); without one, a Node process warning
   */
  logger?: HeartbeatLogger | false;
}

export interface ClusterEvents {
  /** A key came online somewhere in the cluster (its first connection). */
  online: [key: string];
  /** A key's last connection in the cluster left (after `offlineGrace`), or its node died. */
  offline: [key: string];
  /** Redis became unreachable (`false`) or reachable again (`true`). */
  available: [available: boolean];
}

const DEFAULTS = { url: 'redis://127.0.0.1:6379', prefix: 'wsh', interval: 10_000, timeout: 5_000, offlineGrace: 0, commandTimeout: 2_000 } as const;
const KNOWN = new Set([...Object.keys(DEFAULTS), 'heartbeat', 'logger', 'name']);

/** Merges `options` over the defaults and checks each value: a `TypeError` names the option and the value. */
function resolve(options: ClusterOptions): Required<Omit<ClusterOptions, 'heartbeat' | 'logger'>> {
  if (typeof options !== 'object' || options === null) throw new TypeError(`The cluster options must be an object: got ${String(options)}`);
  checkKeys(options, KNOWN, '@ws-heartbeat/cluster');
  const merged = { ...DEFAULTS, ...options };
  const fail = (name: string, rule: string, value: unknown): never => {
    throw new TypeError(`The "${name}" option must be ${rule}: got ${String(value)}`);
  };
  if (typeof merged.url !== 'string' || !/^rediss?:\/\//.test(merged.url)) fail('url', 'a redis:// or rediss:// URL', merged.url);
  if (typeof merged.prefix !== 'string' || merged.prefix === '' || /[{}]/.test(merged.prefix)) fail('prefix', 'a non-empty string without braces', merged.prefix);
  for (const name of ['interval', 'timeout', 'commandTimeout'] as const) {
    const value = merged[name];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 1 || value > 2 ** 31 - 1) fail(name, 'a number of milliseconds from 1 to 2147483647', value);
  }
  const { logger, name = `${hostname()}:${process.pid}` } = options;
  if (typeof name !== 'string' || name === '' || name.length > 200) fail('name', 'a string of 1 to 200 characters', name);
  if (logger !== undefined && logger !== false && (typeof logger !== 'object' || logger === null || typeof logger.warn !== 'function' || typeof logger.info !== 'function')) {
    fail('logger', 'a logger with warn and info methods (pino-compatible), or false', logger);
  }
  const grace = merged.offlineGrace;
  if (typeof grace !== 'number' || !Number.isFinite(grace) || grace < 0 || grace > 2 ** 31 - 1) fail('offlineGrace', 'a number of milliseconds from 0 to 2147483647', grace);
  return { url: merged.url, prefix: merged.prefix, interval: merged.interval, timeout: merged.timeout, offlineGrace: merged.offlineGrace, commandTimeout: merged.commandTimeout, name };
}

type Script = { source: string; sha: string };
function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}
const SCRIPTS = { register: script(REGISTER), tick: script(TICK), change: script(CHANGE), leave: script(LEAVE), stats: script(STATS) };

/**
 * One process's membership of a cluster of ws-heartbeat servers that share presence through
 * Redis. The node holds a lease that it renews every `interval`; a node that stops renewing is
 * reaped by the others `interval + timeout` later, at most one `interval` after that, and its
 * keys go offline exactly once.
 */
export class Cluster extends EventEmitter<ClusterEvents> implements PresenceCluster {
  /** This node's id: unique per process start. */
  readonly id = randomUUID();
  readonly #options: Required<Omit<ClusterOptions, 'heartbeat' | 'logger'>>;
  #heartbeat: Heartbeat | undefined;
  readonly #logger: HeartbeatLogger | false | undefined;
  readonly #client: RedisClientType;
  readonly #subscriber: RedisClientType;
  readonly #keys: { nodes: string; presence: string; grace: string; events: string; info: string; nodeKeys: string };
  /** Connections per key on this node: what the node re-registers when its lease was lost. */
  readonly #held = new Map<string, number>();
  readonly #byConnection = new WeakMap<WebSocket, Set<string>>();
  readonly #connectionOnClose: (this: WebSocket) => void;
  #timer: NodeJS.Timeout | undefined;
  #registered = false;
  /** Whether Redis answers; `undefined` until the first connection succeeds or fails. */
  #available: boolean | undefined;
  #subscribed = false;
  #startup: Promise<void> | undefined;
  /** Resolves `start()`: once registered and subscribed, or once Redis is found unreachable. */
  #started: (() => void) | undefined;
  /** Counts the changes to `#held`, so that a registration knows whether it missed one. */
  #version = 0;
  /** Counts the registrations: Redis ignores a command of an older one that arrives late. */
  #epoch = 0;
  #registering: Promise<void> | undefined;
  readonly #startedAt = Date.now();
  #closed: Promise<void> | undefined;

  constructor(options: ClusterOptions = {}) {
    super();
    this.#options = resolve(options);
    this.#heartbeat = options.heartbeat;
    this.#logger = options.logger;
    const p = `{${this.#options.prefix}}`;
    this.#keys = { nodes: `${p}:nodes`, presence: `${p}:presence`, grace: `${p}:grace`, events: `${p}:events`, info: `${p}:node:${this.id}`, nodeKeys: `${p}:node:${this.id}:keys` };
    this.#client = createClient({
      url: this.#options.url,
      disableOfflineQueue: true,
      // A connection attempt that gets no answer (a partition) is given up after a command's
      // time, and tried again, so that one succeeds soon after the network is back.
      socket: { connectTimeout: this.#options.commandTimeout, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, this.#options.interval) },
    }) as RedisClientType;
    this.#subscriber = this.#client.duplicate();
    this.#subscriber.on('error', () => {});
    // Subscribes once Redis answers; after a reconnection the client subscribes again by itself.
    this.#subscriber.on('ready', () => void this.#subscribe());
    // An error is the connection's loss, or a failed attempt: the client reconnects with backoff.
    this.#client.on('error', (error: unknown) => this.#setAvailable(false, error));
    this.#client.on('end', () => this.#setAvailable(false));
    this.#client.on('ready', () => {
      this.#setAvailable(true);
      void this.#tick();
    });
    const cluster = this;
    this.#connectionOnClose = function connectionOnClose() {
      const keys = cluster.#byConnection.get(this);
      if (keys === undefined) return;
      cluster.#byConnection.delete(this);
      for (const key of keys) void cluster.#change(key, -1);
    };
  }

  /**
   * Connects to Redis and registers the node; `heartbeat` (or the `heartbeat` option) is the engine
   * whose figures the node publishes. Resolves even while Redis is down: it keeps retrying. The
   * adapters and `UpgradeRouter` call it when given the cluster.
   */
  start(heartbeat?: Heartbeat): Promise<void> {
    if (heartbeat !== undefined) this.#heartbeat = heartbeat;
    this.#startup ??= this.#closed
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          this.#started = resolve;
          this.#timer = setInterval(() => void this.#tick(), this.#options.interval);
          this.#timer.unref();
          this.#client.connect().catch(() => {});
          this.#subscriber.connect().catch(() => {});
        });
    return this.#startup;
  }

  /** Ties `ws` to `key` until it closes; joining twice is a no-op. */
  async join(ws: WebSocket, key: string): Promise<void> {
    let keys = this.#byConnection.get(ws);
    if (keys === undefined) {
      keys = new Set();
      this.#byConnection.set(ws, keys);
      ws.once('close', this.#connectionOnClose);
    }
    if (keys.has(key)) return;
    keys.add(key);
    // Never rejects: while Redis is unreachable the join is kept here and sent when it is back.
    await this.#change(key, 1);
  }

  /** Unties `ws` from `key`. */
  async leave(ws: WebSocket, key: string): Promise<void> {
    const keys = this.#byConnection.get(ws);
    if (keys === undefined || !keys.delete(key)) return;
    await this.#change(key, -1);
  }

  /** Whether any connection in the cluster holds `key`. */
  async isOnline(key: string): Promise<boolean> {
    return (await this.#call(['HEXISTS', this.#keys.presence, key])) === 1;
  }

  /** How many connections in the cluster hold `key`. */
  async connections(key: string): Promise<number> {
    const value = await this.#call(['HGET', this.#keys.presence, key]);
    return value === null ? 0 : Number(value);
  }

  /** How many keys are online in the cluster. */
  async count(): Promise<number> {
    return Number(await this.#call(['HLEN', this.#keys.presence]));
  }

  /** One page of the online keys that start with `prefix`; `cursor` '0' starts, and a returned '0' ends. */
  async list(prefix: string, cursor = '0', pageSize = 100): Promise<{ cursor: string; keys: string[] }> {
    const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    const [next, flat] = (await this.#call(['HSCAN', this.#keys.presence, cursor, 'MATCH', pattern, 'COUNT', String(pageSize)])) as [string, string[]];
    const keys: string[] = [];
    for (let i = 0; i < flat.length; i += 2) keys.push(flat[i]!);
    return { cursor: next, keys };
  }

  /**
   * Every live node's latest snapshot (connections per route, terminations by reason, RTT and
   * event-loop p99, overload, age, lease age) and the cluster's totals. One Redis call, O(nodes).
   * Figures are as of each node's latest interval.
   */
  async stats(): Promise<ClusterStats> {
    return parseStats((await this.#eval(SCRIPTS.stats, [], [])) as unknown[]);
  }

  /** Leaves the cluster at once: the node's keys go offline now, its lease is removed. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      clearInterval(this.#timer);
      this.#started?.();
      if (this.#client.isReady) await this.#eval(SCRIPTS.leave, [], [this.id]).catch(() => {});
      await Promise.all([this.#client, this.#subscriber].map((client) => (client.isOpen ? client.close() : Promise.resolve())));
    })();
    return this.#closed;
  }

  #setAvailable(available: boolean, error?: unknown): void {
    if (available === this.#available) return;
    this.#available = available;
    if (!available) {
      // Whatever Redis held may be gone (a restart without persistence): register again when back.
      this.#registered = false;
      this.#started?.();
      const message = (error as { message?: unknown } | undefined)?.message;
      const why = typeof message === 'string' && message !== '' ? ` (${message})` : '';
      this.#warn(`Redis at ${this.#where()} is unreachable${why}: WebSockets are served without presence, and the node reconnects with a backoff of at most ${this.#options.interval} ms`);
    } else {
      this.#info(`Redis at ${this.#where()} is reachable: the node registers`);
    }
    if (!this.#closed) this.emit('available', available);
  }

  /** The URL without its credentials. */
  #where(): string {
    const url = new URL(this.#options.url);
    return `${url.protocol}//${url.host}`;
  }

  #warn(message: string): void {
    const logger = this.#logger ?? this.#heartbeat?.logger ?? false;
    if (logger !== false) logger.warn({ cluster: this.id }, `ws-heartbeat cluster: ${message}`);
    else if (this.#logger === undefined) process.emitWarning(message, 'ClusterWarning');
  }

  #info(message: string): void {
    const logger = this.#logger ?? this.#heartbeat?.logger ?? false;
    if (logger !== false) logger.info({ cluster: this.id }, `ws-heartbeat cluster: ${message}`);
  }

  async #subscribe(): Promise<void> {
    if (this.#subscribed || this.#closed) return;
    try {
      await this.#subscriber.subscribe(this.#keys.events, (message: string) => {
        const space = message.indexOf(' ');
        const type = message.slice(0, space);
        if (type === 'online' || type === 'offline') this.emit(type, message.slice(space + 1));
      });
      this.#subscribed = true;
      if (this.#registered) this.#started?.();
    } catch {
      // Lost again before it answered: the next 'ready' subscribes.
    }
  }

  /**
   * Counts a connection of `key` in or out, here and in Redis. The node's own count is the truth:
   * when Redis cannot take the change (down, slow, the lease lost), the next tick registers the
   * node again with what it holds, within one interval.
   */
  async #change(key: string, delta: number): Promise<void> {
    const count = (this.#held.get(key) ?? 0) + delta;
    if (count > 0) this.#held.set(key, count);
    else this.#held.delete(key);
    this.#version += 1;
    if (!this.#registered || this.#closed) return;
    try {
      const result = await this.#eval(SCRIPTS.change, [this.#keys.info, this.#keys.nodeKeys], [key, String(delta), String(this.#options.offlineGrace), String(this.#epoch)]);
      if (result === -1) this.#registered = false;
    } catch {
      this.#registered = false;
    }
  }

  /** Once per interval: renew the lease (or register again), publish the snapshot, reap the dead. */
  async #tick(): Promise<void> {
    if (!this.#client.isReady || this.#closed) return;
    try {
      if (!this.#registered) await this.#register();
      const { interval, timeout, offlineGrace } = this.#options;
      const [renewed] = (await this.#eval(SCRIPTS.tick, [this.#keys.info], [this.id, String(interval + timeout), snapshotOf(this.#heartbeat), String(offlineGrace), String(interval)])) as [number, string[]];
      // The lease was gone (reaped after a partition, or Redis lost its data): register again now.
      if (renewed === 0) await this.#register();
    } catch (error) {
      // Redis is slow or gone: the next tick tries again. A command sent but never answered may
      // sit on a connection that the network lost without a word (a partition: TCP retransmits
      // with a growing backoff, for minutes): open a new one, so that the node is back within an
      // interval of Redis answering again. The old connection's late commands are of an older
      // epoch: Redis ignores them.
      if (error instanceof ClusterUnavailableError && error.cause instanceof TimeoutReadError) this.#reconnect();
    }
  }

  #reconnect(): void {
    if (this.#closed || !this.#client.isOpen) return;
    this.#client.destroy();
    this.#setAvailable(false);
    this.#client.connect().catch(() => {});
  }

  /**
   * Registers the node with everything it holds now (see the REGISTER script). Joins and leaves
   * that happen meanwhile stay local; if there were any, it registers again with them.
   */
  #register(): Promise<void> {
    this.#registering ??= (async () => {
      try {
        const { interval, timeout, offlineGrace } = this.#options;
        // Loaded first (Redis may have restarted empty): a join's script must not fall back to EVAL
        // and so run after a read the application sent after it.
        await Promise.all(Object.values(SCRIPTS).map((s) => this.#call(['SCRIPT', 'LOAD', s.source])));
        for (;;) {
          const version = this.#version;
          const held: string[] = [];
          for (const [key, count] of this.#held) held.push(key, String(count));
          const info = ['name', this.#options.name, 'host', hostname(), 'pid', String(process.pid), 'startedAt', String(this.#startedAt)];
          this.#epoch += 1;
          await this.#eval(SCRIPTS.register, [this.#keys.info, this.#keys.nodeKeys], [this.id, String(interval + timeout), String(offlineGrace), String(this.#epoch), String(this.#held.size), ...held, ...info]);
          if (version === this.#version) break;
        }
        this.#registered = true;
        if (this.#subscribed) this.#started?.();
      } finally {
        this.#registering = undefined;
      }
    })();
    return this.#registering;
  }

  /** Runs a script by its SHA, loading it on the first NOSCRIPT. KEYS: nodes, presence, grace, events, then `keys`; ARGV: prefix, then `args`. */
  async #eval(s: Script, keys: string[], args: string[]): Promise<unknown> {
    const { nodes, presence, grace, events } = this.#keys;
    const allKeys = [nodes, presence, grace, events, ...keys];
    const argv = [`{${this.#options.prefix}}`, ...args];
    try {
      return await this.#call(['EVALSHA', s.sha, String(allKeys.length), ...allKeys, ...argv]);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return this.#call(['EVAL', s.source, String(allKeys.length), ...allKeys, ...argv]);
    }
  }

  /**
   * Sends one command. It rejects with `ClusterUnavailableError` at once while Redis is not
   * connected or when the connection is lost, and after `commandTimeout` when Redis does not
   * answer (slow, paused, cut off); a
   * command that timed out after it was sent may still run, so only idempotent work is retried
   * (every write goes through REGISTER's sync of differences again).
   */
  async #call(args: string[]): Promise<unknown> {
    if (!this.#client.isReady) throw new ClusterUnavailableError('Redis is not reachable');
    const { commandTimeout } = this.#options;
    try {
      return await this.#client.sendCommand(args, { timeout: commandTimeout, rejectInFlight: true });
    } catch (error) {
      if (error instanceof TimeoutError || error instanceof TimeoutReadError) {
        throw new ClusterUnavailableError(`Redis did not answer within ${commandTimeout} ms`, { cause: error });
      }
      // Redis's own answer (a script's error) is the caller's; anything else is the connection's loss.
      if (error instanceof ErrorReply) throw error;
      throw new ClusterUnavailableError('The connection to Redis was lost', { cause: error });
    }
  }
}
