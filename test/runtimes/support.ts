/**
 * The runtime conformance suite's support: which runtimes there are (scripts/runtimes.mjs, the one
 * list), a server fixture started under one of them, and what a raw client sees of a refused
 * upgrade. Every time is this test process's monotonic clock (`now()`): another runtime's
 * `process.hrtime` need not share it (Bun's starts at its own start), so a child only reports what
 * happened and the test times it as it arrives.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import type { Cleanup } from '../helpers/cleanup';
import { killProcess } from '../helpers/child';
import { ROOT } from '../helpers/demo';
import { ms, now, waitFor } from '../helpers/time';

export interface Runtime {
  /** node20, node22, node24, bun. */
  name: string;
  /** The binary. */
  bin: string;
  /** Its version, as pinned (the host Node: its own). */
  version: string;
}

/** The runtimes, the host Node first: what scripts/runtimes.mjs pins (the test command installs them first). */
export function listRuntimes(): Runtime[] {
  const out = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'runtimes.mjs'), '--json'], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`scripts/runtimes.mjs --json failed: ${out.stderr}`);
  return JSON.parse(out.stdout) as Runtime[];
}

export const SERVER_FIXTURE = path.join(__dirname, 'fixture', 'server.mjs');
export const CLIENT_FIXTURE = path.join(__dirname, 'fixture', 'client.mjs');

/** One line a child printed, with the time it arrived here. */
export interface Said {
  type: string;
  at: number;
  [key: string]: unknown;
}

export interface RuntimeChild {
  process: ChildProcess;
  said: Said[];
  /** Every line that was not JSON (a runtime's own warning, say), and stderr. */
  noise: string[];
  /** The first line of `type` matching `match` (already said or to come), or a rejection after `timeout`. */
  next(type: string, match?: (s: Said) => boolean, timeout?: number): Promise<Said>;
  /** Resolves with the exit code (or the signal) once the process exited. */
  exited: Promise<number | string>;
}

/** Runs `args` under `runtime` with stdout read as JSON lines; `cleanup` kills it. */
export function spawnUnder(cleanup: Cleanup, runtime: Runtime, args: string[], cwd = ROOT): RuntimeChild {
  const child = spawn(runtime.bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const said: Said[] = [];
  const noise: string[] = [];
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      const parsed = JSON.parse(line) as { type?: string; event?: string };
      said.push({ ...parsed, type: parsed.type ?? parsed.event ?? '', at: now() }); // the Python peer says "event"
    } catch {
      noise.push(line);
    }
  });
  readline.createInterface({ input: child.stderr! }).on('line', (line) => noise.push(line));
  let ended = false;
  void exited.then(() => (ended = true));
  cleanup.defer(() => killProcess(child));
  const find = (type: string, match: (s: Said) => boolean) => said.find((s) => s.type === type && match(s));
  return {
    process: child,
    said,
    noise,
    exited,
    async next(type, match = () => true, timeout = ms(5000)) {
      try {
        await waitFor(() => find(type, match) !== undefined || ended, timeout, `"${type}" from ${runtime.name} ${args[0]}`);
      } catch (error) {
        throw new Error(`${(error as Error).message}; said ${JSON.stringify(said)}; noise ${noise.join('\n')}`);
      }
      const found = find(type, match);
      if (found === undefined) throw new Error(`${runtime.name} ended without "${type}": said ${JSON.stringify(said)}; noise ${noise.join('\n')}`);
      return found;
    },
  };
}

export type ServerKind = 'core' | 'fastify' | 'express';

export interface FixtureConfig {
  interval: number;
  timeout: number;
  closeTimeout: number;
  retryWithin?: number;
}

export interface RuntimeServer extends RuntimeChild {
  port: number;
  /** What `process.versions` says it runs on, e.g. `bun 1.4.5`. */
  runtime: string;
  url(path: string): string;
  /** GET /control/<command>: its JSON answer. */
  control<T = unknown>(command: 'stats' | 'other' | 'close'): Promise<T>;
  /** Every `terminate` said so far. */
  terminations(): Said[];
}

/** Starts test/runtimes/fixture/server.mjs of `kind` under `runtime`, and waits for it to listen. */
export async function startServer(cleanup: Cleanup, runtime: Runtime, kind: ServerKind, config: FixtureConfig): Promise<RuntimeServer> {
  const child = spawnUnder(cleanup, runtime, [SERVER_FIXTURE, kind, JSON.stringify(config)]);
  const ready = await child.next('ready', undefined, ms(20_000));
  const port = ready.port as number;
  return {
    ...child,
    port,
    runtime: ready.runtime as string,
    url: (p) => `ws://127.0.0.1:${port}${p}`,
    async control(command) {
      const res = await fetch(`http://127.0.0.1:${port}/control/${command}`);
      if (!res.ok) throw new Error(`/control/${command}: ${res.status}`);
      return (await res.json()) as never;
    },
    terminations: () => child.said.filter((s) => s.type === 'terminate'),
  };
}

export interface RawAnswer {
  /** The status of the answer's first line, 0 if none came. */
  status: number;
  /** Everything the server sent. */
  raw: string;
  /** The server closed its side (FIN or reset) within the wait, while ours stayed open. */
  closedByServer: boolean;
}

/**
 * Sends an upgrade request for `path` over a plain TCP socket (ours never half-closes) and
 * collects everything the server sends until it closes its side or `wait` passes.
 */
export function rawAnswer(port: number, requestPath: string, wait = ms(2000)): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const raw = Buffer.concat(chunks).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0), raw, closedByServer });
    };
    const timer = setTimeout(() => finish(false), wait);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', () =>
      socket.write(
        `GET ${requestPath} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
  });
}
