/**
 * The HA suite's test bed: three backends (fixture/backend.ts: Fastify, Express, Fastify) in
 * processes of their own behind a real nginx (test/helpers/nginx.ts), and clients of
 * @ws-heartbeat/client whose every event is recorded with the time it happened (mono(), the clock
 * of every process). Each scenario writes its figures to test-results/ha/<scenario>.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import WebSocket from 'ws';
import { HeartbeatClient, type HeartbeatClientOptions } from '@ws-heartbeat/client';
import { childMessage, forkChild, type Child } from '../helpers/child';
import type { Cleanup } from '../helpers/cleanup';
import { ROOT } from '../helpers/demo';
import { startNginx, type NginxOptions, type TestNginx } from '../helpers/nginx';
import { ms, sleep, waitFor } from '../helpers/time';
import { mono } from '../faults/fixture/protocol';
import type { BackendConfig, BackendMessage } from './fixture/backend';

const BACKEND = path.join(__dirname, 'fixture', 'backend.ts');
/** The mix of the upstream: two Fastify applications and one Express application. */
const ADAPTERS = ['fastify', 'express', 'fastify'] as const;

export interface Backend {
  name: string;
  config: BackendConfig;
  child: Child<BackendMessage>;
  port: number;
  /** The cluster node's id, with `redis`. */
  id?: string;
}

export async function startBackend(cleanup: Cleanup, config: BackendConfig): Promise<Backend> {
  const child = forkChild<BackendMessage>(cleanup, BACKEND, { args: [JSON.stringify(config)] });
  const { message } = await childMessage(child, 'ready', ms(20_000));
  return { name: config.name, config: { ...config, port: message.port }, child, port: message.port, id: message.id };
}

/** SIGTERM (the backend closes, with its `retryWithin` if set), waits until it exited by itself. */
export async function stopBackend(backend: Backend): Promise<void> {
  backend.child.process.kill('SIGTERM');
  await backend.child.exited;
}

export interface Bed {
  backends: Backend[];
  nginx: TestNginx;
  /** `ws://127.0.0.1:<nginx>` + `path` */
  url(path: string): string;
}

/** Three backends with the same settings (names b0, b1, b2) and nginx in front of them. */
export async function startBed(
  cleanup: Cleanup,
  backend: Omit<BackendConfig, 'name' | 'adapter' | 'port'>,
  nginx: Omit<NginxOptions, 'upstreams'> = {},
): Promise<Bed> {
  const backends = await Promise.all(ADAPTERS.map((adapter, i) => startBackend(cleanup, { ...backend, name: `b${i}`, adapter, port: 0 })));
  const proxy = await startNginx(cleanup, { ...nginx, upstreams: backends.map((b) => b.port) });
  return { backends, nginx: proxy, url: (p) => `${proxy.url}${p}` };
}

export type ClientEvent =
  | { type: 'open'; at: number }
  | { type: 'hello'; at: number; backend: string }
  | { type: 'dead'; at: number; reason: string }
  | { type: 'close'; at: number; code: number; reason: string; final: boolean }
  | { type: 'reconnecting'; at: number; attempt: number; delay: number; hinted: boolean }
  | { type: 'error'; at: number; message: string };

/** A @ws-heartbeat/client through the proxy, and everything it saw. */
export interface Tracked {
  client: HeartbeatClient;
  /** mono() when the client was made: its first attempt began. */
  createdAt: number;
  events: ClientEvent[];
  /** Every message but the hellos, in order of arrival (the backends echo what the client sent). */
  echoes: string[];
  /** The backend of the current (or last) connection. */
  backend(): string | undefined;
  /** `client.send(text)` at a moment the client is not open: the message must be queued. */
  sendQueued(text: string): void;
  /** The texts sent with sendQueued, in order. */
  queued: string[];
}

export function openTracked(cleanup: Cleanup, url: string, options: HeartbeatClientOptions = {}): Tracked {
  const createdAt = mono();
  const client = new HeartbeatClient(url, { WebSocket: WebSocket as never, queueSize: 100, ...options });
  cleanup.defer(() => client.close());
  const events: ClientEvent[] = [];
  const echoes: string[] = [];
  const queued: string[] = [];
  client.on('open', () => events.push({ type: 'open', at: mono() }));
  client.on('message', ({ data }) => {
    const text = String(data);
    const hello = text.startsWith('{"type":"hello"') ? (JSON.parse(text) as { backend: string }) : undefined;
    if (hello) events.push({ type: 'hello', at: mono(), backend: hello.backend });
    else echoes.push(text);
  });
  client.on('dead', ({ reason }) => events.push({ type: 'dead', at: mono(), reason }));
  client.on('close', ({ code, reason, final }) => events.push({ type: 'close', at: mono(), code, reason, final }));
  client.on('reconnecting', ({ attempt, delay, hinted }) => events.push({ type: 'reconnecting', at: mono(), attempt, delay, hinted }));
  client.on('error', ({ error }) => events.push({ type: 'error', at: mono(), message: (error as { message?: string })?.message ?? String(error) }));
  return {
    client,
    createdAt,
    events,
    echoes,
    queued,
    backend: () => events.filter((e): e is Extract<ClientEvent, { type: 'hello' }> => e.type === 'hello').at(-1)?.backend,
    sendQueued(text) {
      if (client.readyState === 1) throw new Error('sendQueued: the client is open, the message would not be queued');
      if (!client.send(text)) throw new Error('sendQueued: the queue is full');
      queued.push(text);
    },
  };
}

/**
 * When each attempt that ended with reason `'connect timeout'` began, and how long it lasted: an
 * attempt begins when the client is made, or `delay` after a 'reconnecting' event.
 */
export function timedOutAttempts(tracked: Tracked): Array<{ began: number; lasted: number }> {
  let began = tracked.createdAt;
  const attempts: Array<{ began: number; lasted: number }> = [];
  for (const event of tracked.events) {
    if (event.type === 'reconnecting') began = event.at + event.delay;
    if (event.type === 'close' && event.reason === 'connect timeout') attempts.push({ began, lasted: event.at - began });
  }
  return attempts;
}

/** Opens `n` tracked clients and waits until each has its hello. */
export async function openMany(cleanup: Cleanup, url: (i: number) => string, n: number, options?: HeartbeatClientOptions): Promise<Tracked[]> {
  const clients = Array.from({ length: n }, (_, i) => openTracked(cleanup, url(i), options));
  await waitFor(() => clients.every((c) => c.backend() !== undefined), ms(20_000), `${n} clients to be greeted`);
  return clients;
}

/** The events of `type` at or after `since`. */
export function eventsOf<T extends ClientEvent['type']>(tracked: Tracked, type: T, since = 0): Array<Extract<ClientEvent, { type: T }>> {
  return tracked.events.filter((e): e is Extract<ClientEvent, { type: T }> => e.type === type && e.at >= since);
}

/** The value below which `p` (0..1) of `values` fall (nearest rank). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** `p50 / p99 / max` of `values`, in whole ms. */
export function spread(values: number[]): { p50: number; p99: number; max: number; n: number } {
  const round = (v: number) => Math.round(v);
  return { p50: round(percentile(values, 0.5)), p99: round(percentile(values, 0.99)), max: round(Math.max(...values)), n: values.length };
}

/** Writes a scenario's figures (markdown lines) to test-results/ha/<name>.md, for docs/HA.md. */
export function writeFigures(name: string, lines: string[]): void {
  const dir = path.join(ROOT, 'test-results', 'ha');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `${name}.md`), `${lines.join('\n')}\n`);
}

/** A markdown table. */
export function table(head: string[], rows: Array<Array<string | number>>): string[] {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

/** Epoch milliseconds as a page reads them (performance.timeOrigin + performance.now()). */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** The demo's /client page in Chromium, through the proxy: its events and the backends that greeted it. */
export interface BrowserClient {
  page: Page;
  /** Every hello the page's client received, in mono() time. */
  hellos(): Promise<Array<{ backend: string; at: number }>>;
  /** The page's client events (open, heartbeat, dead, close, reconnecting), in mono() time. */
  events(): Promise<Array<{ type: string; at: number; reason?: string; code?: number }>>;
  /** Waits up to `timeout` ms for a hello at or after `since` (mono()) from a backend other than `notFrom`. */
  helloAfter(since: number, timeout: number, notFrom?: string): Promise<{ backend: string; at: number }>;
}

/**
 * Opens `http://<nginx>/client?…` (examples/client.html, served by a backend through nginx) and
 * waits for its first hello. `query` is the page's: route, ping, pong, minDelay, maxDelay.
 */
export async function openPage(cleanup: Cleanup, browser: Browser, bed: Bed, query: Record<string, string | number>): Promise<BrowserClient> {
  const page = await browser.newPage();
  cleanup.defer(() => page.close());
  // The page makes its client at load and names it window.heartbeatClient: catch the hellos from the first.
  await page.addInitScript({
    content: `
      window.hellos = [];
      let held;
      Object.defineProperty(window, 'heartbeatClient', {
        configurable: true,
        get: () => held,
        set(client) {
          held = client;
          client.on('message', ({ data }) => {
            if (typeof data === 'string' && data.startsWith('{"type":"hello"')) {
              window.hellos.push({ backend: JSON.parse(data).backend, at: performance.timeOrigin + performance.now() });
            }
          });
        },
      });`,
  });
  const search = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]));
  await page.goto(`http://127.0.0.1:${bed.nginx.port}/client?${search}`);
  // A page time minus this is mono() time (both clocks are monotonic since their origin).
  const offset = epochNow() - mono();
  const toMono = <T extends { at: number }>(list: T[]): T[] => list.map((e) => ({ ...e, at: e.at - offset }));
  const client: BrowserClient = {
    page,
    hellos: async () => toMono((await page.evaluate('window.hellos')) as Array<{ backend: string; at: number }>),
    events: async () => toMono((await page.evaluate('window.clientEvents')) as Array<{ type: string; at: number }>),
    async helloAfter(since, timeout, notFrom) {
      const deadline = mono() + timeout;
      for (;;) {
        const hello = (await client.hellos()).find((h) => h.at >= since && h.backend !== notFrom);
        if (hello) return hello;
        if (mono() > deadline) throw new Error(`the page was not greeted by a backend${notFrom ? ` other than ${notFrom}` : ''}: ${JSON.stringify(await client.events())}`);
        await sleep(20);
      }
    },
  };
  await client.helloAfter(0, ms(20_000));
  return client;
}
