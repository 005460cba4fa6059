/**
 * The one way a test leaves nothing behind. `useCleanup()` gives a test file a stack of cleanup
 * steps and runs it after each test (or, with 'all', after the file's tests):
 *
 *   const cleanup = useCleanup();
 *   test('…', async () => {
 *     const server = cleanup.add(await startEchoServer());   // server.close() after the test
 *     cleanup.defer(() => socket.destroy());                  // any other step
 *   });
 *
 * Steps run last-in first-out, each awaited; a step that throws does not skip the others, and
 * once all have run the first error is thrown (all of them, as an AggregateError, if several).
 */

/** Anything with a `close()`; its result is awaited. */
export interface Closable {
  close(): unknown;
}

export class Cleanup {
  readonly #steps: Array<() => unknown> = [];

  /** Runs `step` at cleanup time, before every step deferred earlier. */
  defer(step: () => unknown): void {
    this.#steps.push(step);
  }

  /** Closes `closable` at cleanup time; returns it. */
  add<T extends Closable>(closable: T): T {
    this.#steps.push(() => closable.close());
    return closable;
  }

  /** Runs every step deferred so far (newest first), then throws what they threw, if anything. */
  async run(): Promise<void> {
    const errors: unknown[] = [];
    while (this.#steps.length > 0) {
      try {
        await this.#steps.pop()!();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanup steps failed`);
  }
}

/**
 * A cleanup stack run by `afterEach` ('each', the default) or by `afterAll` ('all', for what a
 * `beforeAll` opened). Call it at the level (file or describe) whose tests it serves.
 */
export function useCleanup(after: 'each' | 'all' = 'each'): Cleanup {
  const cleanup = new Cleanup();
  const hook = after === 'each' ? afterEach : afterAll;
  hook(() => cleanup.run());
  return cleanup;
}
