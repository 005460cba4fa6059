/**
 * @ws-heartbeat/client in a real Chromium: the demo's /client page loads the browser build
 * (/client.js, one ES module) and keeps a connection to /ws/fast. The test makes the demo process
 * vanish (SIGSTOP: nothing is closed, only the heartbeat can tell), kills it, and starts it again
 * on the same port; the page must declare the server dead within its bound and come back each time.
 * The page records every client event with its time (ms since the epoch, the clock
 * performance.timeOrigin + performance.now() reads in this process too).
 */
import type { Browser, Page } from 'playwright-core';
import { launchChromium, screenshotPath } from './helpers/browser';
import { useCleanup } from './helpers/cleanup';
import { type Demo, startDemo } from './helpers/demo';
import { EPSILON, SLOP, ms } from './helpers/time';

/** The page's heartbeat settings (from its query string), and its backoff. */
const PING = ms(400);
const PONG = ms(400);
const MAX_DELAY = ms(400);

interface PageEvent {
  type: 'open' | 'heartbeat' | 'dead' | 'close' | 'reconnecting';
  at: number;
  reason?: string;
  code?: number;
}

function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

describe('@ws-heartbeat/client in Chromium, against the demo', () => {
  let demo: Demo;
  let browser: Browser | undefined;
  let page: Page;
  const pageErrors: string[] = [];

  const events = (): Promise<PageEvent[]> => page.evaluate('window.clientEvents') as Promise<PageEvent[]>;
  async function waitForEvent(check: (all: PageEvent[]) => boolean, timeout: number, message: string): Promise<PageEvent[]> {
    let all: PageEvent[] = [];
    const deadline = epochNow() + timeout;
    while (!check((all = await events()))) {
      if (epochNow() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${message}: ${JSON.stringify(all)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return all;
  }
  const count = (all: PageEvent[], type: PageEvent['type']): number => all.filter((e) => e.type === type).length;

  /** The tests share the page and the demo (restarted by some of them): all closed after the last. */
  const cleanup = useCleanup('all');

  beforeAll(async () => {
    demo = await startDemo(cleanup);
    browser = cleanup.add(await launchChromium());
    page = await browser.newPage({ viewport: { width: 960, height: 640 } });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`http://127.0.0.1:${demo.port}/client?route=/ws/fast&ping=${PING}&pong=${PONG}&minDelay=${ms(100)}&maxDelay=${MAX_DELAY}`);
  });

  test('the page loads the client from the demo, opens, and its heartbeats are answered by the engine', async () => {
    const all = await waitForEvent((e) => count(e, 'heartbeat') >= 2, 3 * PING + ms(3000), 'two heartbeats');
    expect(count(all, 'open')).toBe(1);
    expect(await page.textContent('#status')).toBe('OPEN');
    expect(pageErrors).toEqual([]);
  });

  test('a demo process that vanishes (SIGSTOP) is shown dead within pingInterval + pongTimeout of its last answer', async () => {
    demo.child.kill('SIGSTOP');
    const stoppedAt = epochNow();
    const all = await waitForEvent((e) => count(e, 'dead') >= 1, PING + PONG + ms(2000), 'the page to declare the server dead');
    const dead = all.find((e) => e.type === 'dead')!;
    const lastAnswer = Math.max(...all.filter((e) => (e.type === 'heartbeat' || e.type === 'open') && e.at <= dead.at).map((e) => e.at));
    expect(dead.reason).toBe('timeout');
    expect(dead.at - lastAnswer).toBeGreaterThanOrEqual(PING + PONG - EPSILON);
    expect(dead.at - lastAnswer).toBeLessThanOrEqual(PING + PONG + SLOP);
    expect(dead.at - stoppedAt).toBeLessThanOrEqual(PING + PONG + SLOP);
    await waitForEvent((e) => count(e, 'reconnecting') >= 1, ms(1000), 'reconnecting');
    expect(await page.textContent('#status')).toBe('RECONNECTING');
  });

  test('killed and started again on the same port, the demo gets the page back', async () => {
    const { port } = demo;
    demo.child.kill('SIGKILL');
    await demo.exited;
    demo = await startDemo(cleanup, port);
    const all = await waitForEvent((e) => count(e, 'open') >= 2 && count(e, 'heartbeat') >= 3, MAX_DELAY + PING + ms(5000), 'the page to reconnect');
    expect(all[all.length - 1]!.type).not.toBe('dead');
    expect(await page.textContent('#status')).toBe('OPEN');
  });

  test('a demo process that is killed outright is shown dead at once (the connection dropped), and again the page comes back', async () => {
    const { port } = demo;
    const before = await events();
    const killedAt = epochNow();
    demo.child.kill('SIGKILL');
    const all = await waitForEvent((e) => count(e, 'dead') > count(before, 'dead'), ms(2000), 'the page to see the server die');
    const dead = all.filter((e) => e.type === 'dead').pop()!;
    expect(dead.reason).toBe('connection-lost');
    expect(dead.at - killedAt).toBeLessThanOrEqual(SLOP + ms(100));
    await demo.exited;
    demo = await startDemo(cleanup, port);
    await waitForEvent((e) => count(e, 'open') > count(before, 'open'), MAX_DELAY + ms(5000), 'the page to reconnect');
    await waitForEvent((e) => count(e, 'heartbeat') > count(before, 'heartbeat'), PING + ms(2000), 'a heartbeat on the new connection');
    expect(await page.textContent('#status')).toBe('OPEN');
    expect(pageErrors).toEqual([]);
    await page.screenshot({ path: screenshotPath('client.png') });
  });
});
