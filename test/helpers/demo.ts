/**
 * The demo server (examples/server.mjs) as users run it: a child process on PORT=0 (or a given port) with the
 * default HOST, importing the built plugin from packages/fastify/dist (and through it
 * packages/core/dist). Shared by the demo's HTTP/WebSocket test and its browser test.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import WebSocket from 'ws';
import { killProcess } from './child';
import type { Cleanup } from './cleanup';
import { ms, now } from './time';

export const ROOT = join(__dirname, '..', '..');
const SERVER = join(ROOT, 'examples', 'server.mjs');
const URL_LINE = /http:\/\/127\.0\.0\.1:(\d+)/;

/** The /ws/fast route's settings, as examples/server.mjs declares them. */
export const FAST = { interval: 1000, timeout: 500, closeTimeout: 1000 };
/** How often the demo's /events feed sends a stats snapshot (examples/feed.mjs). */
export const SNAPSHOT_PERIOD_MS = 500;
/** How long the demo may take to exit after SIGTERM: the slowest route's closeTimeout and a margin. */
export const EXIT_BOUND = FAST.closeTimeout + ms(1000);

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

export interface Demo {
  child: ChildProcessWithoutNullStreams;
  port: number;
  /** Its stdout, line by line, as it comes. */
  lines: string[];
  /** Its stderr, line by line, as it comes (warnings). */
  errorLines: string[];
  exited: Promise<Exit>;
}

export interface StartDemoOptions {
  /** Added to the demo's environment (`REDIS_URL` makes it a cluster node); HOST is never passed on. */
  env?: Record<string, string>;
}

/** Starts the demo (on `port`, or one the system picks), killed by `cleanup`; resolves once it printed its URL line. */
export function startDemo(cleanup: Cleanup, port = 0, { env: extraEnv = {} }: StartDemoOptions = {}): Promise<Demo> {
  const packages = ['core', 'fastify', 'client', ...(extraEnv.REDIS_URL === undefined ? [] : ['cluster'])];
  for (const name of packages) {
    if (!existsSync(join(ROOT, 'packages', name, 'dist', 'index.js'))) {
      throw new Error(`packages/${name}/dist is missing: build the packages first (\`pnpm run build\`)`);
    }
  }
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv, PORT: String(port) };
  delete env.HOST;
  if (extraEnv.REDIS_URL === undefined) delete env.REDIS_URL;
  const child = spawn(process.execPath, [SERVER], { cwd: ROOT, env });
  cleanup.defer(() => killProcess(child));
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const lines: string[] = [];
  const errorLines: string[] = [];
  let stderr = '';
  let pendingError = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    const parts = (pendingError + chunk).split('\n');
    pendingError = parts.pop() ?? '';
    errorLines.push(...parts);
  });
  return new Promise((resolve, reject) => {
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        const match = URL_LINE.exec(line);
        if (match) resolve({ child, port: Number(match[1]), lines, errorLines, exited });
      }
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`demo exited (code ${code}, signal ${signal}) before printing its URL:\n${stderr}`)),
    );
    setTimeout(() => reject(new Error(`demo printed no URL within ${ms(10_000)} ms:\n${lines.join('\n')}\n${stderr}`)), ms(10_000)).unref();
  });
}

/** Sends SIGTERM; resolves with the exit, or with 'still running' once `EXIT_BOUND` has passed. */
export async function terminateDemo(demo: Demo): Promise<Exit | 'still running'> {
  let exitTimer: NodeJS.Timeout | undefined;
  demo.child.kill('SIGTERM');
  try {
    return await Promise.race([
      demo.exited,
      new Promise<'still running'>((resolve) => (exitTimer = setTimeout(resolve, EXIT_BOUND, 'still running'))),
    ]);
  } finally {
    clearTimeout(exitTimer);
  }
}

/** Opens a `ws` client to the demo's `path`, terminated by `cleanup`; resolves once it is open. */
export function connectToDemo(cleanup: Cleanup, port: number, path: string, options?: WebSocket.ClientOptions): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, options);
  cleanup.defer(() => ws.terminate());
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

export interface EventStream {
  status: number;
  type: string | undefined;
  /** Resolves with the next event named `event` (earlier events of other names are skipped). */
  next(event: string): Promise<{ event: string; data: string }>;
  /** True once the server ended the response. */
  readonly ended: boolean;
}

/** A GET on an SSE route, parsed into events (`event:` and `data:` lines, a blank line after each); `cleanup` ends it. */
export function openEvents(cleanup: Cleanup, port: number, path = '/events'): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path, agent: false, headers: { Accept: 'text/event-stream' } }, (res) => {
      const queue: { event: string; data: string }[] = [];
      const waiters: (() => void)[] = [];
      let ended = false;
      let pending = '';
      res.setEncoding('utf8').on('data', (chunk: string) => {
        pending += chunk;
        let end: number;
        while ((end = pending.indexOf('\n\n')) !== -1) {
          const block = pending.slice(0, end);
          pending = pending.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice('event: '.length);
            else if (line.startsWith('data: ')) data.push(line.slice('data: '.length));
          }
          if (data.length > 0) queue.push({ event, data: data.join('\n') });
          for (const wake of waiters.splice(0)) wake();
        }
      });
      res.on('close', () => {
        ended = true;
        for (const wake of waiters.splice(0)) wake();
      });
      resolve({
        status: res.statusCode ?? 0,
        type: res.headers['content-type'],
        get ended() {
          return ended;
        },
        async next(event) {
          const deadline = now() + ms(2000);
          for (;;) {
            const index = queue.findIndex((item) => item.event === event);
            if (index !== -1) return queue.splice(0, index + 1)[index]!;
            if (ended) throw new Error(`the stream ended before a "${event}" event`);
            if (now() > deadline) throw new Error(`no "${event}" event within ${ms(2000)} ms`);
            await new Promise<void>((wake) => {
              waiters.push(wake);
              setTimeout(wake, ms(100));
            });
          }
        },
      });
    });
    cleanup.defer(() => request.destroy());
    request.on('error', reject);
  });
}
