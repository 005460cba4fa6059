/**
 * The rule that protects healthy peers from a busy server: a connection that looks dead is judged
 * only after the input that is already waiting has been read.
 *
 * A stall of this process (GC, a synchronous task) delays our timer and the peers' answers alike:
 * when the timer finally fires, their pongs may sit unread in the kernel. So a verdict waits two
 * turns of the event loop: the first turn's poll phase reads the input that arrived meanwhile, the
 * second lets `ws` deliver what it deferred. Then `decide` looks at the connection afresh.
 */
export class DeferredVerdicts {
  /** Connections whose verdict is waiting (a connection that closes meanwhile leaves it). */
  readonly #waiting = new Set<number>();
  /** Found in this turn. */
  #found: number[] = [];
  /** Found in the previous turn: judged in the next one. */
  #reading: number[] = [];
  #scheduled = false;

  /**
   * @param decide looks at a connection again, with its pending input read, and ends it if it is dead.
   * @param decided runs after each batch of verdicts.
   */
  constructor(
    private readonly decide: (id: number, now: number) => void,
    private readonly decided: () => void,
  ) {}

  /** Defers the verdict on connection `id`; a second call before it runs changes nothing. */
  defer(id: number): void {
    if (this.#waiting.has(id)) return;
    this.#waiting.add(id);
    this.#found.push(id);
    this.#schedule();
  }

  /** The connection is gone: no verdict. */
  cancel(id: number): void {
    this.#waiting.delete(id);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#turn);
  }

  readonly #turn = (): void => {
    this.#scheduled = false;
    if (this.#reading.length === 0) {
      // First turn: the poll phase before the next one reads what waited.
      [this.#reading, this.#found] = [this.#found, this.#reading];
      this.#schedule();
      return;
    }
    const now = performance.now();
    for (const id of this.#reading) {
      if (this.#waiting.delete(id)) this.decide(id, now);
    }
    this.#reading.length = 0;
    if (this.#found.length > 0) this.#schedule();
    this.decided();
  };
}
