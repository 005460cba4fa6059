/**
 * Time bounds for tests that run on real sockets. Every duration a test waits for or
 * asserts is written in "scaled milliseconds": `ms(200)` is 200 ms on a normal machine and
 * 200 × WSH_TIME_SCALE ms where the environment widens it (a slow or loaded machine).
 */
export const TIME_SCALE = (() => {
  const raw = process.env.WSH_TIME_SCALE;
  if (raw === undefined || raw === '') return 1;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new TypeError(`WSH_TIME_SCALE must be a positive number, got ${raw}`);
  return value;
})();

/** `n` milliseconds, widened by WSH_TIME_SCALE. */
export function ms(n: number): number {
  return Math.round(n * TIME_SCALE);
}

/** The engine's clock and performance.now() may round differently: 1 ms of granularity. */
export const EPSILON = 1;

/** How late a bound may be met: one tick of the wheel (5 ms) plus timer and loopback slop. */
export const SLOP = ms(60);

/** Longer than any test runs: a heartbeat setting that must never act in that test. */
export const NEVER = ms(30_000);

/**
 * The heartbeat the real-socket tests run with, in every process (test files, their child
 * fixtures, the fault suite's server): small, so that a bound is met within a test.
 */
export const INTERVAL = ms(200);
export const TIMEOUT = ms(100);
export const CLOSE_TIMEOUT = ms(300);

/** Resolves after `n` real milliseconds (not scaled: pass `ms(n)` for a scaled wait). */
export function sleep(n: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, n));
}

/** Blocks this process's event loop for `duration` ms, as a long synchronous job or GC pause would. */
export function busyWait(duration: number): void {
  const end = now() + duration;
  while (now() < end) {
    // Nothing: the point is that no callback runs meanwhile.
  }
}

/** Monotonic milliseconds, the clock every bound in the tests is measured with. */
export function now(): number {
  return performance.now();
}

/**
 * Polls `check` every few milliseconds until it returns true or `timeout` (real ms) passes.
 * Rejects with `message` on timeout (a function is called then, to describe what was seen).
 */
export async function waitFor(check: () => boolean, timeout: number, message: string | (() => string) = 'condition'): Promise<void> {
  const deadline = now() + timeout;
  while (!check()) {
    if (now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${typeof message === 'function' ? message() : message}`);
    await sleep(5);
  }
}

/**
 * Polls an async `read` every 20 ms until its result equals `expected` (compared as JSON) or
 * `timeout` (real ms) passes, and returns the last reading for the test to assert on. A read that
 * rejects is tried again until then.
 */
export async function settle<T>(read: () => Promise<T>, expected: T, timeout: number): Promise<T> {
  const deadline = now() + timeout;
  for (;;) {
    try {
      const last = await read();
      if (JSON.stringify(last) === JSON.stringify(expected) || now() > deadline) return last;
    } catch (error) {
      if (now() > deadline) throw error;
    }
    await sleep(20);
  }
}
