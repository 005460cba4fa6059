/**
 * The engine's one timer: armed for the next moment that holds work, `unref()`ed so that it never
 * keeps the process alive, and measuring how late each firing was (a measure of event-loop stalls).
 */
export class TickTimer {
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer is due (Infinity: not armed). */
  #at = Infinity;
  #lastLateMs = 0;
  #maxLateMs = 0;

  /** `fired` runs at each firing, with the time and how late it came, in ms. */
  constructor(private readonly fired: (now: number, lateMs: number) => void) {}

  /** How late the latest firing was, ms. */
  get lastLateMs(): number {
    return this.#lastLateMs;
  }

  /** How late the latest firing was at worst since the timer was made, ms. */
  get maxLateMs(): number {
    return this.#maxLateMs;
  }

  /**
   * Arms the timer for `at`, unless it is already armed for no later; `Infinity` clears it. A time
   * already past means "at once", and lateness counts from now: not from a moment at which no timer
   * was armed (or the first work after an idle spell would read as a stall).
   */
  arm(at: number, now: number): void {
    if (at === Infinity) {
      this.clear();
      return;
    }
    const due = Math.max(at, now);
    if (this.#timer !== undefined && this.#at <= due) return;
    this.clear();
    this.#at = due;
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(due - now)));
    this.#timer.unref();
  }

  clear(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#at = Infinity;
  }

  readonly #fire = (): void => {
    const now = performance.now();
    const late = Math.max(0, now - this.#at);
    this.#timer = undefined;
    this.#at = Infinity;
    this.#lastLateMs = late;
    if (late > this.#maxLateMs) this.#maxLateMs = late;
    this.fired(now, late);
  };
}
