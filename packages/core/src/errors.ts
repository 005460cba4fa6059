/** How an option check or an error message shows a value: strings quoted, objects by type. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}

/** Throws the `TypeError` of every option check: it names the option, the rule and the value. */
export function fail(name: string, rule: string, value: unknown): never {
  throw new TypeError(`The "${name}" option must be ${rule}: got ${describe(value)}`);
}

/** Refuses option names outside `known`, so that a typo cannot pass silently. */
export function checkKeys(options: object, known: ReadonlySet<string>, what: string): void {
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new TypeError(`Unknown ${what} option "${key}"`);
  }
}

/**
 * Throws `error`; used as `process.nextTick(rethrow, error)` so that an error of an application
 * callback surfaces as the application's own uncaught exception, outside our bookkeeping.
 */
export function rethrow(error: unknown): never {
  throw error;
}
