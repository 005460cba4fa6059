/**
 * The fault suite's harness. Every scenario runs against both adapters (`describe.each(ADAPTERS)`)
 * on a server process of its own (fixture/server.ts), next to 20 bystander connections (in a
 * process of their own, test/helpers/held-clients.js, so that a stall of the test process is no fault), and ends
 * with the same check, whatever the fault was: "nothing lost".
 *
 *   const cleanup = useCleanup();
 *   describe.each(ADAPTERS)('%s', (adapter) => {
 *     it('…', async () => {
 *       const scene = await openScene(cleanup, adapter);
 *       const injectedAt = mono();            // inject the fault, assert its own expectation
 *       …
 *     });                                     // cleanup: scene.nothingLost(), then the rest
 *   });
 *
 * Times are monotonic milliseconds shared by every process (`mono()`), so the server's reports
 * compare with the moment the test injected the fault.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Socket } from 'node:net';
import { WebSocket, type ClientOptions } from 'ws';
import { forkChild, HELD_CLIENTS, killProcess } from '../helpers/child';
import { Cleanup } from '../helpers/cleanup';
import { rawUpgrade } from '../helpers/clients';
import { CLOSE_TIMEOUT, INTERVAL, TIMEOUT, ms, sleep, waitFor } from '../helpers/time';
import { mono, type AdapterName, type FixtureCommand, type FixtureConfig, type FixtureEvent, type FixtureState } from './fixture/protocol';

export { mono, type AdapterName, type FixtureEvent, type FixtureState } from './fixture/protocol';
export { HELD_CLIENTS, killProcess } from '../helpers/child';

export const ADAPTERS: AdapterName[] = ['fastify', 'express'];

/**
 * The heartbeat of the routes for large transfers (`/ws/big`, `/ws/big-deflate`). A reader must
 * take what the kernels hold between us and it (our send buffer, up to 4 MiB, and its receive
 * window, which on loopback grows to over 10 MB for a reader of 16 MiB a second) within
 * interval + timeout, as it must in production (40 s at the defaults): two seconds here.
 */
export const TRANSFER_INTERVAL = ms(400);
export const TRANSFER_TIMEOUT = ms(1600);

export const BYSTANDERS = 20;

const SERVER = path.join(__dirname, 'fixture', 'server.ts');

/** The fixture's settings (every route's heartbeat: time.ts's INTERVAL, TIMEOUT, CLOSE_TIMEOUT); a scenario overrides what it needs. */
export const DEFAULT_CONFIG: Omit<FixtureConfig, 'adapter'> = {
  host: '127.0.0.1',
  interval: INTERVAL,
  timeout: TIMEOUT,
  closeTimeout: CLOSE_TIMEOUT,
  authTimeout: ms(500),
  authDelay: ms(300),
  routeLimit: 3,
  perClientLimit: 0,
  headersTimeout: ms(500),
  maxBufferedAmount: 1024 * 1024,
  maxPayload: 1024 * 1024,
  bigPayload: 64 * 1024 * 1024,
  transferInterval: TRANSFER_INTERVAL,
  transferTimeout: TRANSFER_TIMEOUT,
};

/** Polls `check` every 5 ms until it holds; rejects naming `what` after `timeout` ms. */
export const until: (check: () => boolean, timeout: number, what: string) => Promise<void> = waitFor;

/** A `ws` client of the test process, with what reached it. */
export interface Peer {
  ws: WebSocket;
  /** The client's own TCP port: the server reports each connection by it (`remotePort`). */
  port: number;
  /** mono() of every ping received. */
  pings: number[];
  messages: Buffer[];
  closed: { code: number; reason: string; at: number } | null;
}

/** Opens a `ws` client and resolves once it is open. */
export function openPeer(url: string, options: ClientOptions = {}): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    const peer: Peer = { ws, port: -1, pings: [], messages: [], closed: null };
    ws.on('ping', () => peer.pings.push(mono()));
    ws.on('message', (data) => peer.messages.push(Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer)));
    ws.on('close', (code, reason) => (peer.closed = { code, reason: reason.toString(), at: mono() }));
    ws.once('error', reject);
    ws.once('open', () => {
      ws.off('error', reject);
      ws.on('error', () => {});
      peer.port = (ws as unknown as { _socket: { localPort: number } })._socket.localPort;
      resolve(peer);
    });
  });
}

/** A bystander, as its own process (test/helpers/held-clients.js) reports it. */
export interface Bystander {
  /** Its local TCP port (the server's `remotePort`). */
  port: number;
  /** mono() of every ping received. */
  pings: number[];
  closed: { code: number; at: number } | null;
}

type BystanderMessage =
  | { type: 'ready'; ports: number[] }
  | { type: 'ping'; i: number; at: number }
  | { type: 'closed'; i: number; code: number; at: number }
  | { type: 'echoed'; id: number; failed: number[] }
  | { type: 'error'; message: string };

/**
 * The 20 bystanders of a scene, in a process of their own, so that a stall of the test process
 * (GC, a big synchronous job) cannot make them miss a ping and look like a fault of the server.
 */
export class Bystanders {
  readonly list: Bystander[] = [];
  readonly #child: ChildProcess;
  readonly #echoes = new Map<number, number[]>();
  #nextId = 1;
  #error: string | undefined;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (message: BystanderMessage) => {
      if (message.type === 'ready') for (const port of message.ports) this.list.push({ port, pings: [], closed: null });
      else if (message.type === 'ping') this.list[message.i]!.pings.push(message.at);
      else if (message.type === 'closed') this.list[message.i]!.closed = { code: message.code, at: message.at };
      else if (message.type === 'echoed') this.#echoes.set(message.id, message.failed);
      else this.#error = message.message;
    });
  }

  /** Forks the process (killed by `cleanup`) and waits until its `count` clients to `url` are open. */
  static async open(cleanup: Cleanup, url: string, count: number): Promise<Bystanders> {
    const child = forkChild<BystanderMessage>(cleanup, HELD_CLIENTS, { args: [url, String(count)] }).process;
    const bystanders = new Bystanders(child);
    await until(() => bystanders.list.length === count || bystanders.#error !== undefined || child.exitCode !== null, ms(10_000), 'the bystanders to open');
    if (bystanders.list.length !== count) throw new Error(`the bystanders did not open: ${bystanders.#error ?? `exit ${child.exitCode}`}`);
    return bystanders;
  }

  /** Every bystander sends a message; resolves with those whose echo did not come back in time. */
  async echo(timeout = ms(2000)): Promise<number[]> {
    const id = this.#nextId++;
    this.#child.send({ cmd: 'echo', id, timeout });
    await until(() => this.#echoes.has(id), timeout + ms(2000), 'the bystanders to echo');
    return this.#echoes.get(id)!;
  }

  /** Every bystander sends a close frame (1000). */
  close(): void {
    if (this.#child.connected) this.#child.send({ cmd: 'close' });
  }
}

/** Sends `text` and waits until it comes back. */
export async function echo(peer: Peer, text: string, timeout = ms(2000)): Promise<void> {
  const expected = Buffer.from(text);
  const before = peer.messages.length;
  peer.ws.send(text);
  await until(() => peer.messages.slice(before).some((m) => m.equals(expected)), timeout, `the echo of ${JSON.stringify(text)} on port ${peer.port}`);
}

/** The server process of one scenario. */
export class FaultServer {
  readonly events: FixtureEvent[] = [];
  exit: { code: number | null; signal: NodeJS.Signals | null; at: number } | null = null;
  port = 0;
  /** `'upgrade'` listeners on the HTTP server before the adapter was attached. */
  baseline = 0;
  #nextId = 1;

  constructor(
    readonly adapter: AdapterName,
    readonly config: FixtureConfig,
    readonly child: ChildProcess,
  ) {
    child.on('message', (event: FixtureEvent) => this.events.push(event));
    child.on('exit', (code, signal) => (this.exit = { code, signal, at: mono() }));
  }

  /** `ws://host:port<path>`. */
  url(path: string): string {
    return `ws://${this.config.host}:${this.port}${path}`;
  }

  of<K extends FixtureEvent['type']>(type: K): Extract<FixtureEvent, { type: K }>[] {
    return this.events.filter((e): e is Extract<FixtureEvent, { type: K }> => e.type === type);
  }

  /** The server's terminations of the connection whose client port is `port`. */
  terminations(port: number): Extract<FixtureEvent, { type: 'terminate' }>[] {
    return this.of('terminate').filter((e) => e.remotePort === port);
  }

  /** Waits for the first event of `type` that `match` accepts. */
  async next<K extends FixtureEvent['type']>(
    type: K,
    match: (e: Extract<FixtureEvent, { type: K }>) => boolean,
    timeout: number,
  ): Promise<Extract<FixtureEvent, { type: K }>> {
    let found: Extract<FixtureEvent, { type: K }> | undefined;
    await until(() => (found = this.of(type).find(match)) !== undefined || this.exit !== null, timeout, `a '${type}' event from the ${this.adapter} server`);
    if (found === undefined) throw new Error(`the ${this.adapter} server exited (${JSON.stringify(this.exit)}) before a '${type}' event`);
    return found;
  }

  /** Sends a command and resolves with its reply. */
  async command<T>(command: DistributiveOmit<FixtureCommand, 'id'>, timeout = ms(10_000)): Promise<T> {
    const id = this.#nextId++;
    this.child.send({ ...command, id });
    const reply = await this.next('reply', (e) => e.id === id, timeout);
    return reply.value as T;
  }

  state(): Promise<FixtureState> {
    return this.command<FixtureState>({ cmd: 'state' });
  }

  /** Every uncaught exception, unhandled rejection and warning the server process reported. */
  faults(): string[] {
    return this.of('fault').map((f) => `${f.kind}: ${f.message}`);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Starts the server process of `adapter` (killed by `cleanup`) and waits until it listens. */
export async function startServer(cleanup: Cleanup, adapter: AdapterName, overrides: Partial<Omit<FixtureConfig, 'adapter'>> = {}): Promise<FaultServer> {
  const config: FixtureConfig = { ...DEFAULT_CONFIG, ...overrides, adapter };
  const child = forkChild<FixtureEvent>(cleanup, SERVER, { args: [JSON.stringify(config)], execArgv: ['--expose-gc'] }).process;
  const server = new FaultServer(adapter, config, child);
  const ready = await server.next('ready', () => true, ms(20_000));
  server.port = ready.port;
  server.baseline = ready.baselineListeners;
  return server;
}

/** One scenario: the server, its bystanders, and everything else the test opened. */
export class Scene {
  /** The process of the 20 bystanders (set by `openScene()`). */
  bystanderProcess: Bystanders | undefined;
  /** What the test opened in the scene: run in the middle of the nothing-lost check (see there). */
  readonly cleanup = new Cleanup();
  /** When the fault was injected; bystanders must be pinged after it. Set by `inject()`. */
  injectedAt: number;
  #checked = false;

  constructor(readonly server: FaultServer) {
    this.injectedAt = mono();
  }

  get bystanders(): Bystander[] {
    return this.bystanderProcess?.list ?? [];
  }

  get adapter(): AdapterName {
    return this.server.adapter;
  }

  url(path: string): string {
    return this.server.url(path);
  }

  /** Notes the moment of the fault and returns it. */
  inject(): number {
    this.injectedAt = mono();
    return this.injectedAt;
  }

  /** Opens a client that is terminated after the test. */
  async peer(path: string, options?: ClientOptions): Promise<Peer> {
    const peer = await openPeer(this.url(path), options);
    this.cleanup.defer(() => peer.ws.terminate());
    return peer;
  }

  /** Forks a helper process that is killed after the test (continued first if stopped). */
  fork(file: string, args: string[], execArgv: string[] = []): ChildProcess {
    return forkChild(this.cleanup, file, { args, execArgv }).process;
  }

  /** Spawns a program (Python, ip netns exec …) that is killed after the test. */
  spawn(command: string, args: string[]): ChildProcess {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    this.cleanup.defer(() => killProcess(child));
    return child;
  }

  /**
   * Nothing lost: no uncaught exception, unhandled rejection or warning in the server process;
   * every bystander still open, pinged after the fault and answered an echo; once they close the
   * engine tracks nothing; the `'upgrade'` listener count was the adapter's one, and is back to
   * its baseline after the application closed; the server process then exits by itself.
   */
  async nothingLost(): Promise<void> {
    if (this.#checked) return;
    this.#checked = true;
    const { server } = this;
    const since = this.injectedAt;
    await until(
      () => this.bystanders.every((b) => b.closed !== null || b.pings.some((t) => t > since)),
      INTERVAL + TIMEOUT + ms(1000),
      'every bystander to be pinged after the fault',
    );
    expect(this.bystanders.filter((b) => b.closed !== null).map((b) => b.closed)).toEqual([]);
    expect(await this.bystanderProcess!.echo()).toEqual([]);
    this.bystanderProcess!.close();
    await this.cleanup.run();
    await until(() => this.bystanders.every((b) => b.closed !== null), ms(2000), 'the bystanders to close');
    let state = await server.state();
    const deadline = mono() + CLOSE_TIMEOUT + ms(1000);
    while (state.size !== 0 && mono() < deadline) {
      await sleep(ms(20));
      state = await server.state();
    }
    expect(state.size).toBe(0);
    expect(state.upgradeListeners).toBe(server.baseline + 1);
    await this.closeServer();
  }

  /**
   * Closes the application and expects the process to exit by itself with code 0 within
   * `within` ms, having left the `'upgrade'` listeners as it found them and reported no fault.
   * Returns when the close began and when the process exited.
   */
  async closeServer(within = ms(3000)): Promise<{ closingAt: number; closed: number; exitedAt: number }> {
    const { server } = this;
    this.#checked = true;
    const closingAt = mono();
    server.child.send({ cmd: 'close', id: 0 });
    const closed = await server.next('closed', () => true, within);
    await until(() => server.exit !== null, within, `the ${server.adapter} server process to exit by itself`);
    expect(server.faults()).toEqual([]);
    expect(closed.upgradeListeners).toBe(server.baseline);
    expect(server.exit).toMatchObject({ code: 0, signal: null });
    return { closingAt, closed: closed.at, exitedAt: server.exit!.at };
  }
}

/**
 * Opens a scene for `adapter`: its server and its bystanders. At cleanup the scene gets its
 * nothing-lost check (unless the test closed the server itself, in which case only the process
 * checks apply) and what the test opened in it is closed; then `cleanup` kills the bystanders
 * and the server.
 */
export async function openScene(cleanup: Cleanup, adapter: AdapterName, overrides?: Partial<Omit<FixtureConfig, 'adapter'>>): Promise<Scene> {
  const server = await startServer(cleanup, adapter, overrides);
  const scene = new Scene(server);
  scene.bystanderProcess = await Bystanders.open(cleanup, server.url('/ws/echo'), BYSTANDERS);
  cleanup.defer(async () => {
    try {
      await scene.nothingLost();
    } finally {
      await scene.cleanup.run();
    }
  });
  scene.inject();
  return scene;
}

/**
 * A raw TCP peer of `scene` on `path` (clients.ts `rawUpgrade`: paused, half-open allowed),
 * destroyed after the test; resolves once the server reported the connection. `port` is the
 * peer's local port, by which the server's events name the connection.
 */
export async function rawPeer(scene: Scene, path = '/ws/echo'): Promise<{ socket: Socket; port: number }> {
  const { socket } = await rawUpgrade(scene.server.port, path);
  scene.cleanup.defer(() => socket.destroy());
  const port = socket.localPort!;
  await scene.server.next('connection', (e) => e.remotePort === port, ms(2000));
  return { socket, port };
}

/** One frame from the server, as a raw peer read it. */
export interface ServerFrame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
  /** mono() when its last byte arrived. */
  at: number;
}

/** What a raw peer read from the server since `readFrames()`. */
export interface ServerFrames {
  frames: ServerFrame[];
  /** mono() when the server ended the connection (FIN, reset or close); null while it is open. */
  closedAt: number | null;
  /** The status code of the server's first close frame; undefined if none came (yet). */
  closeCode(): number | undefined;
}

/**
 * Reads a raw peer's socket from now on (resuming it) and parses the server's (unmasked) frames.
 * Bytes are only joined once a whole frame has arrived, so a large message costs one copy.
 */
export function readFrames(socket: Socket): ServerFrames {
  const read: ServerFrames = {
    frames: [],
    closedAt: null,
    closeCode() {
      const close = this.frames.find((f) => f.opcode === 0x8);
      return close === undefined || close.payload.length < 2 ? undefined : close.payload.readUInt16BE(0);
    },
  };
  let chunks: Buffer[] = [];
  let length = 0;
  /** Header size and frame size of the frame at the start of `chunks`, once its header is in. */
  const frameSize = (head: Buffer): [number, number] | undefined => {
    if (head.length < 2) return undefined;
    const short = head[1]! & 0x7f;
    const headerSize = short === 126 ? 4 : short === 127 ? 10 : 2;
    if (head.length < headerSize) return undefined;
    const size = short === 126 ? head.readUInt16BE(2) : short === 127 ? Number(head.readBigUInt64BE(2)) : short;
    return [headerSize, headerSize + size];
  };
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    length += chunk.length;
    for (;;) {
      const sizes = frameSize(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, Math.min(length, 10)));
      if (sizes === undefined || length < sizes[1]) return;
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
      read.frames.push({ fin: (all[0]! & 0x80) !== 0, opcode: all[0]! & 0x0f, payload: all.subarray(sizes[0], sizes[1]), at: mono() });
      chunks = length > sizes[1] ? [all.subarray(sizes[1])] : [];
      length -= sizes[1];
    }
  });
  const closed = () => (read.closedAt ??= mono());
  socket.on('end', closed);
  socket.on('close', closed);
  socket.on('error', closed);
  if (socket.readableEnded || socket.destroyed) closed(); // it already happened, unread
  socket.resume();
  return read;
}
