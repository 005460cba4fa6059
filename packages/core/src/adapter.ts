// What every framework adapter needs of core beyond the router, so that no adapter holds a rule
// of its own: the engine options built from the adapter's options, with one rule for the logger.
import { Heartbeat } from './heartbeat';
import type { HeartbeatEngineOptions, HeartbeatLogger } from './types';

/** The engine of an adapter's router, and the logger it writes to (`false`: none). */
export interface AdapterEngine {
  /** What the adapter passes as the router's `heartbeat` option. */
  heartbeat: Heartbeat | HeartbeatEngineOptions | undefined;
  /** The logger the engine writes to, for the adapter's own lines; `false` when there is none, or when a shared `Heartbeat` was given. */
  logger: HeartbeatLogger | false;
}

/**
 * Builds the router's `heartbeat` option from an adapter's `heartbeat` option and the logger
 * given beside it. One rule for the logger, in every adapter:
 * - `heartbeat.logger` and the adapter's own `logger` option are one setting: giving both throws
 *   a `TypeError`; the one given wins;
 * - `fallback` (the framework's own logger, such as Fastify's `app.log`) applies when neither is;
 * - a shared `Heartbeat` keeps the logger it was made with: a `logger` beside one throws (use
 *   `logEvents(heartbeat, logger)`), and `fallback` is not applied to it.
 * Anything but an options object or a `Heartbeat` is passed on as it is, for the router to refuse.
 */
export function adapterEngine(heartbeat: unknown, logger?: HeartbeatLogger | false, fallback?: HeartbeatLogger): AdapterEngine {
  if (heartbeat instanceof Heartbeat) {
    if (logger !== undefined) throw new TypeError('A shared Heartbeat keeps the logger it was made with: give the logger to it (or use logEvents()), not beside it');
    return { heartbeat, logger: false };
  }
  if (heartbeat !== undefined && (typeof heartbeat !== 'object' || heartbeat === null)) {
    return { heartbeat: heartbeat as HeartbeatEngineOptions, logger: false };
  }
  const options = (heartbeat ?? {}) as HeartbeatEngineOptions;
  if (logger !== undefined && 'logger' in options) {
    throw new TypeError('Set the logger once: either the "logger" option or "heartbeat.logger", not both');
  }
  const chosen = 'logger' in options ? options.logger : logger ?? fallback;
  if (chosen === undefined) return { heartbeat, logger: false } as AdapterEngine;
  // The engine checks the logger it is given; an invalid one throws there.
  return { heartbeat: { ...options, logger: chosen }, logger: chosen === false ? false : chosen };
}
