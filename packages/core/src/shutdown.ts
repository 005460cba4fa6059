import { shutdownClose, type CloseFrame } from '@ws-heartbeat/protocol';
import { fail } from './errors';
import type { CloseOptions } from './types';

/**
 * Checks the options of a `close()` (the engine's, the router's, an adapter's) and returns their
 * `retryWithin`. Throws a `TypeError` for anything but an object whose `retryWithin`, if given, is
 * a positive whole number of ms: adapters call it where the option is given, so that a wrong value
 * is refused at set-up rather than at shutdown.
 */
export function checkCloseOptions(options: CloseOptions): number | undefined {
  if (typeof options !== 'object' || options === null) fail('close options', 'an object', options);
  const { retryWithin } = options;
  if (retryWithin !== undefined && (typeof retryWithin !== 'number' || !Number.isSafeInteger(retryWithin) || retryWithin <= 0)) {
    fail('retryWithin', 'a positive whole number of milliseconds', retryWithin);
  }
  return retryWithin;
}

/**
 * The close frame a shutdown sends: 1001 `Server shutting down`, or with `retryWithin`, 1012 and
 * the retry hint of `@ws-heartbeat/protocol`. Throws a `TypeError` for invalid options.
 */
export function shutdownFrame(options: CloseOptions = {}): CloseFrame {
  return shutdownClose(checkCloseOptions(options));
}
