/**
 * HA scenarios 4 and 5, planned changes behind nginx:
 *
 * - A rolling restart: the three backends (Fastify, Express, Fastify) restarted one at a time on
 *   their ports, each closing with `retryWithin: 5000`. Their clients come back spread over the
 *   window (reconnects per 100 ms, against the same restart without `retryWithin`), every message
 *   they queued meanwhile is delivered in order, and no client gives up.
 * - nginx reloaded (`nginx -s reload`) with clients connected: the old worker closes their
 *   connections at `worker_shutdown_timeout`, and each client is back on the new worker within its
 *   first backoff delay.
 */
import { useCleanup } from '../helpers/cleanup';
import { SLOP, ms, waitFor } from '../helpers/time';
import { mono } from '../faults/fixture/protocol';
import { eventsOf, openMany, spread, startBackend, startBed, stopBackend, table, writeFigures, type Tracked } from './support';

const cleanup = useCleanup();
const CLIENTS = 300;
const ROUTE = { path: '/ws', interval: ms(1000), timeout: ms(500) };
const RETRY_WITHIN = ms(5000);
const RECONNECT = { minDelay: ms(500), maxDelay: ms(2000) };
const CLIENT = { pingInterval: ms(1000), pongTimeout: ms(500), connectTimeout: ms(1000), reconnect: RECONNECT };
const BUCKET = 100;

/** Reconnects per `width` ms, from the restart's start. */
function buckets(times: number[], width = BUCKET): number[] {
  const counts: number[] = [];
  for (const t of times) {
    const i = Math.floor(t / width);
    while (counts.length <= i) counts.push(0);
    counts[i] = (counts[i] ?? 0) + 1;
  }
  return counts;
}

/** A histogram line: reconnects per 500 ms of the window, as counts. */
function coarse(times: number[], width = 500): string {
  const counts: number[] = [];
  for (const t of times) {
    const i = Math.floor(t / width);
    while (counts.length <= i) counts.push(0);
    counts[i] = (counts[i] ?? 0) + 1;
  }
  return counts.map((c, i) => `${(i * width) / 1000}–${((i + 1) * width) / 1000} s: ${c}`).join(', ');
}

interface RollingRun {
  /** Each client's reconnect (its hello) after the restart of the backend it was on, ms from that restart's SIGTERM. */
  reconnects: number[];
  /** The most reconnects in one 100 ms of one restart. */
  peak: number;
  /** The most reconnects in one 500 ms of one restart. */
  peak500: number;
  /** Reconnects per 100 ms of the restart that had the most. */
  busiest: number[];
  queued: number;
  clients: Tracked[];
}

/** Three backends behind nginx, 300 clients; each backend stopped (SIGTERM) and started again on its port, one at a time. */
async function rollingRestart(retryWithin: number | undefined): Promise<RollingRun> {
  const bed = await startBed(cleanup, { routes: [ROUTE], retryWithin });
  const clients = await openMany(cleanup, (i) => bed.url(`/ws?n=${i}`), CLIENTS, CLIENT);
  let rolling = false;
  for (const [i, tracked] of clients.entries()) {
    let n = 0;
    let open = true;
    tracked.client.on('open', () => (open = true));
    // Two messages queued the moment a connection is lost (a client that keeps talking through it).
    tracked.client.on('close', ({ final }) => {
      if (rolling && open && !final) for (const _ of [1, 2]) tracked.sendQueued(`c${i}:${++n}`);
      open = false;
    });
  }
  rolling = true;
  const reconnects: number[] = [];
  let peak = 0;
  let peak500 = 0;
  let busiest: number[] = [];
  for (const [i, backend] of bed.backends.entries()) {
    const mine = clients.filter((c) => c.backend() === backend.name);
    const from = mono();
    await stopBackend(backend);
    bed.backends[i] = await startBackend(cleanup, { ...backend.config });
    const back = (c: Tracked) => eventsOf(c, 'hello', from).length > 0 && c.echoes.length === c.queued.length;
    await waitFor(() => mine.every(back), (retryWithin ?? 0) + ms(15_000), `the clients of ${backend.name} to come back with their queued messages`).catch((error: Error) => {
      const late = mine.filter((c) => !back(c)).slice(0, 3);
      throw new Error(`${error.message}: nginx: ${bed.nginx.log().slice(-2000)} ${JSON.stringify(late.map((c) => ({ events: c.events.filter((e) => e.at >= from), queued: c.queued, echoes: c.echoes })))}`);
    });
    const times = mine.map((c) => eventsOf(c, 'hello', from)[0]!.at - from);
    reconnects.push(...times);
    peak = Math.max(peak, ...buckets(times));
    peak500 = Math.max(peak500, ...buckets(times, 500));
    if (times.length > busiest.reduce((a, b) => a + b, 0)) busiest = buckets(times);
  }
  rolling = false;
  // No queued message lost, none out of order; no client gave up (a close with final: true).
  for (const tracked of clients) {
    expect(tracked.echoes).toEqual(tracked.queued);
    expect(tracked.events.filter((e) => e.type === 'close' && e.final)).toEqual([]);
  }
  return { reconnects, peak, peak500, busiest, queued: clients.reduce((sum, c) => sum + c.queued.length, 0), clients };
}

describe('HA: planned changes behind nginx', () => {
  test('4. a rolling restart of three backends with close({ retryWithin: 5000 }): clients come back spread over the window, not in a burst like without it; no queued message is lost and no client gives up', async () => {
    const burst = await rollingRestart(undefined);
    await cleanup.run();
    const spreadOut = await rollingRestart(RETRY_WITHIN);

    // Every client was on a backend that restarted, and came back each time.
    for (const run of [burst, spreadOut]) expect(run.reconnects.length).toBeGreaterThanOrEqual(CLIENTS);
    // With the hint, each client's first retry is a random moment of the window the server named.
    const hinted = spreadOut.clients.flatMap((c) => eventsOf(c, 'reconnecting').filter((e) => e.hinted));
    expect(hinted.length).toBeGreaterThanOrEqual(CLIENTS);
    expect(Math.max(...hinted.map((e) => e.delay))).toBeLessThanOrEqual(RETRY_WITHIN);
    expect(burst.clients.flatMap((c) => eventsOf(c, 'reconnecting').filter((e) => e.hinted))).toEqual([]);

    // 100 to 225 clients per restart: without the hint most come back within the backoff's first
    // 500 ms, with it about a tenth in any 500 ms of the window. (Per 100 ms, the figure the table
    // gives, the same holds with more noise.)
    expect(spreadOut.peak500).toBeLessThanOrEqual(burst.peak500 / 3);
    const last = spread(spreadOut.reconnects).max;
    expect(last).toBeGreaterThan(RETRY_WITHIN / 2);

    const row = (name: string, run: RollingRun) => {
      const s = spread(run.reconnects);
      return [name, s.n, run.peak, run.peak500, `${s.p50} / ${s.p99} / ${s.max} ms`, run.queued, 0];
    };
    writeFigures('4-rolling-restart', [
      `${CLIENTS} Node clients through nginx; the three backends restarted one at a time (SIGTERM, \`close()\`, a new process on the same port). Client backoff: minDelay ${RECONNECT.minDelay} ms, maxDelay ${RECONNECT.maxDelay} ms. Reconnects counted from each backend's SIGTERM.`,
      '',
      ...table(
        ['restart', 'reconnects', 'max per 100 ms (one restart)', 'max per 500 ms (one restart)', 'reconnected after (p50 / p99 / max)', 'queued messages delivered in order', 'clients that gave up'],
        [row('without retryWithin (1001)', burst), row(`retryWithin: ${RETRY_WITHIN} (1012)`, spreadOut)],
      ),
      '',
      'Reconnects per 500 ms after a restart began, the three restarts together:',
      '',
      `- without retryWithin: ${coarse(burst.reconnects)}`,
      `- with retryWithin ${RETRY_WITHIN}: ${coarse(spreadOut.reconnects)}`,
      '',
      'Reconnects per 100 ms, in the restart that had the most (each number is 100 ms, from its SIGTERM):',
      '',
      `- without retryWithin (${burst.busiest.reduce((a, b) => a + b, 0)} clients): ${burst.busiest.join(' ')}`,
      `- with retryWithin ${RETRY_WITHIN} (${spreadOut.busiest.reduce((a, b) => a + b, 0)} clients): ${spreadOut.busiest.join(' ')}`,
    ]);
  });

  test('5. nginx -s reload with clients connected: the old worker closes their connections at worker_shutdown_timeout, and each is back on the new worker within its first backoff delay', async () => {
    const shutdownTimeout = ms(1000);
    const reconnect = { minDelay: ms(200), maxDelay: ms(2000) };
    const bed = await startBed(cleanup, { routes: [ROUTE] }, { shutdownTimeout });
    const clients = await openMany(cleanup, (i) => bed.url(`/ws?n=${i}`), 100, { ...CLIENT, reconnect });
    const [oldWorker] = bed.nginx.workers();

    const reloadedAt = mono();
    bed.nginx.reload();
    await waitFor(() => clients.every((c) => eventsOf(c, 'hello', reloadedAt).length > 0), shutdownTimeout + ms(10_000), 'every client back after the reload');
    expect(bed.nginx.workers()).not.toContain(oldWorker);

    const closedAfter: number[] = [];
    const backAfter: number[] = [];
    for (const tracked of clients) {
      const [close, ...more] = eventsOf(tracked, 'close', reloadedAt);
      if (close === undefined) throw new Error('a client saw no close after the reload');
      expect(more).toEqual([]);
      expect(close.final).toBe(false);
      closedAfter.push(close.at - reloadedAt);
      // Its first retry waits at most minDelay; that attempt reaches the new worker.
      const retries = eventsOf(tracked, 'reconnecting', reloadedAt);
      expect(retries.map((r) => r.attempt)).toEqual([1]);
      const hello = eventsOf(tracked, 'hello', reloadedAt)[0]!;
      expect(hello.at - close.at).toBeLessThanOrEqual(reconnect.minDelay + SLOP);
      backAfter.push(hello.at - close.at);
    }
    expect(Math.max(...closedAfter)).toBeLessThanOrEqual(shutdownTimeout + ms(1000));

    const closed = spread(closedAfter);
    const back = spread(backAfter);
    writeFigures('5-nginx-reload', [
      `100 Node clients through nginx (\`worker_shutdown_timeout ${shutdownTimeout}ms\`); \`nginx -s reload\`. Client backoff: minDelay ${reconnect.minDelay} ms.`,
      '',
      ...table(
        ['', 'clients', 'p50', 'p99', 'max'],
        [
          ['connection closed by the old worker, after the reload', closed.n, `${closed.p50} ms`, `${closed.p99} ms`, `${closed.max} ms`],
          ['back on the new worker (hello), after its close', back.n, `${back.p50} ms`, `${back.p99} ms`, `${back.max} ms`],
        ],
      ),
    ]);
  });
});
