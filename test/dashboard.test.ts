/**
 * The demo's dashboard (examples/dashboard.html) in a real Chromium, driven by playwright-core:
 * the page opens WebSockets of its own, two silent `ws` peers are opened from here, and what the
 * page shows is checked against the /ws/fast route's bound. The page's figures are read from its
 * DOM (the ids and data-attributes below), reported here by a MutationObserver the moment they
 * change, so every figure carries the time it appeared.
 */
import http from 'node:http';
import type { Browser, Page } from 'playwright-core';
import type { HeartbeatStats } from '@ws-heartbeat/core';
import { launchChromium, screenshotPath } from './helpers/browser';
import { WebSocket } from 'ws';
import { useCleanup } from './helpers/cleanup';
import { type Demo, EXIT_BOUND, FAST, SNAPSHOT_PERIOD_MS, connectToDemo, startDemo, terminateDemo } from './helpers/demo';
import { EPSILON, SLOP, ms, now, waitFor } from './helpers/time';

/** A peer terminated by the engine is on the page by the next snapshot, and the page's own delay. */
const PAGE_SLOP = SLOP + ms(100);

/** What the page shows: the numbers a reader sees, null while a figure reads "–". */
interface Figures {
  total: number | null;
  fast: number | null;
  echo: number | null;
  terminations: Record<'timeout' | 'close-timeout' | 'backpressure' | 'shutdown', number | null>;
  testSockets: string[];
}

/** Runs in the page before its own script: reports the figures to `reportFigures` whenever they change. */
const REPORT_FIGURES = `(() => {
  const number = (selector) => {
    const value = Number(document.querySelector(selector)?.textContent ?? '');
    return Number.isFinite(value) ? value : null;
  };
  const terminations = (reason) => number('[data-figure="terminations"][data-reason="' + reason + '"]');
  const read = () => ({
    total: number('#connections-total'),
    fast: number('[data-figure="connections"][data-route="/ws/fast"]'),
    echo: number('[data-figure="connections"][data-route="/ws/echo"]'),
    terminations: Object.fromEntries(['timeout', 'close-timeout', 'backpressure', 'shutdown'].map((r) => [r, terminations(r)])),
    testSockets: [...document.querySelectorAll('[data-figure="test-socket"]')].map((node) => node.dataset.state),
  });
  let last = '';
  new MutationObserver(() => {
    const figures = read();
    const json = JSON.stringify(figures);
    if (json === last) return;
    last = json;
    window.reportFigures(figures);
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
})();`;

function getStats(port: number): Promise<HeartbeatStats> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/stats', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(JSON.parse(body) as HeartbeatStats));
      })
      .on('error', reject);
  });
}


describe('the demo dashboard in Chromium', () => {
  let demo: Demo;
  let browser: Browser | undefined;
  let page: Page;
  let figures: Figures | undefined;
  const pageErrors: string[] = [];
  /** When the page first showed at least 1 and at least 2 `timeout` terminations. */
  const timeoutsShownAt: number[] = [];
  /** The silent peers' connection: none of them began before connectStart, all were open at opened. */
  let connectStart = 0;
  let opened = 0;
  let secondTimeoutShownAt = 0;

  /** The tests share one demo, one page and what they open: all closed after the last. */
  const cleanup = useCleanup('all');
  /** The two silent peers of /ws/fast, once opened. */
  let silentPeers: WebSocket[] = [];

  beforeAll(async () => {
    demo = await startDemo(cleanup);
    browser = cleanup.add(await launchChromium());
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.exposeFunction('reportFigures', (next: Figures) => {
      figures = next;
      const timeouts = next.terminations.timeout ?? 0;
      while (timeoutsShownAt.length < timeouts) timeoutsShownAt.push(now());
    });
    await page.addInitScript({ content: REPORT_FIGURES });
    await page.goto(`http://127.0.0.1:${demo.port}/`);
  });

  test('shows 7 connections, in total and on /ws/fast: 5 opened by the page, 2 from Node', async () => {
    await waitFor(() => figures?.total === 0, ms(3000), 'the page to show its first snapshot');
    await page.click('#test-connections');
    await waitFor(
      () => figures?.testSockets.length === 5 && figures.testSockets.every((state) => state === 'open'),
      ms(3000),
      "the page's 5 WebSockets to open",
    );

    connectStart = now();
    silentPeers = await Promise.all([connectToDemo(cleanup, demo.port, '/ws/fast', { autoPong: false }), connectToDemo(cleanup, demo.port, '/ws/fast', { autoPong: false })]);
    opened = now();

    await waitFor(() => figures?.total === 7 && figures.fast === 7, SNAPSHOT_PERIOD_MS + PAGE_SLOP, 'the page to show 7 connections');
    expect(figures).toMatchObject({ total: 7, fast: 7, echo: 0 });
    expect(figures?.terminations).toEqual({ timeout: 0, 'close-timeout': 0, backpressure: 0, shutdown: 0 });
  });

  test("shows the 2 silent peers' terminations, reason timeout, within /ws/fast's interval + timeout", async () => {
    const bound = FAST.interval + FAST.timeout;
    const latest = opened + bound + SNAPSHOT_PERIOD_MS + PAGE_SLOP;
    await waitFor(() => timeoutsShownAt.length >= 2, latest - now() + ms(2000), 'the page to show 2 timeouts');
    secondTimeoutShownAt = timeoutsShownAt[1]!;

    expect(timeoutsShownAt[0]!).toBeGreaterThanOrEqual(connectStart + bound - EPSILON);
    expect(secondTimeoutShownAt).toBeLessThanOrEqual(latest);
    expect(figures).toMatchObject({ total: 5, fast: 5 });
    expect(figures?.terminations).toEqual({ timeout: 2, 'close-timeout': 0, backpressure: 0, shutdown: 0 });
    await waitFor(() => silentPeers.every((ws) => ws.readyState === WebSocket.CLOSED), ms(500), 'the silent peers to be disconnected');
  });

  test("two intervals later still shows 5 connections, and the page's own 5 WebSockets are OPEN", async () => {
    const until = secondTimeoutShownAt + 2 * FAST.interval + FAST.timeout + SLOP;
    await waitFor(() => now() >= until, until - now() + ms(1000), 'two more intervals');

    expect(figures).toMatchObject({ total: 5, fast: 5, testSockets: ['open', 'open', 'open', 'open', 'open'] });
    expect(figures?.terminations.timeout).toBe(2);
    expect(await page.evaluate('window.testSockets.map((ws) => ws.readyState)')).toEqual([1, 1, 1, 1, 1]);
    // They stayed because the browser answered every ping: at least two rounds of pongs from each.
    const fast = (await getStats(demo.port)).routes['/ws/fast'];
    expect(fast?.pongsReceived).toBeGreaterThanOrEqual(2 * 5);
    expect(pageErrors).toEqual([]);

    await page.screenshot({ path: screenshotPath('dashboard.png') });
  });

  test("SIGTERM with the dashboard open: the page's WebSockets get 1001 and the demo exits by itself with code 0", async () => {
    await page.evaluate(`window.closeCodes = [];
      for (const ws of window.testSockets) ws.addEventListener('close', (event) => window.closeCodes.push(event.code));`);

    const signalled = now();
    const exit = await terminateDemo(demo);

    expect(exit).toEqual({ code: 0, signal: null });
    expect(now() - signalled).toBeLessThanOrEqual(EXIT_BOUND);
    await page.waitForFunction('window.closeCodes.length === 5', null, { timeout: ms(1000) });
    expect(await page.evaluate('window.closeCodes')).toEqual([1001, 1001, 1001, 1001, 1001]);
  });
});
