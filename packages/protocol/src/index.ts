/**
 * The wire protocol between a ws-heartbeat server (`@ws-heartbeat/core` and its adapters) and
 * `@ws-heartbeat/client`: the one place where the application-level ping and pong, the close
 * codes of a shutdown and the retry hint are written and read. Both sides import it, so neither
 * can change a message without the other.
 *
 * No dependencies and no Node APIs: the client's browser build bundles this module.
 */

/**
 * The text message a client sends as an application-level heartbeat (a browser cannot send a
 * ping frame). The engine's default `appHeartbeat` matches exactly these bytes.
 */
export const APP_PING = '{"type":"ping"}';

/** The server's heartbeat settings, in ms, as its pong carries them. */
export interface ServerSettings {
  /** The server pings a connection that sent nothing for this long. */
  interval: number;
  /** The server ends a connection that did not answer its ping within this long. */
  timeout: number;
}

/** Every pong {@link formatAppPong} writes begins with these characters; no other message does. */
const APP_PONG_PREFIX = '{"type":"pong"';

/**
 * The engine's default answer to {@link APP_PING}: a JSON text that names the server's settings,
 * so that a client can match them. {@link parseAppPong} reads it back.
 */
export function formatAppPong(settings: ServerSettings): string {
  return `${APP_PONG_PREFIX},"interval":${JSON.stringify(settings.interval)},"timeout":${JSON.stringify(settings.timeout)}}`;
}

/**
 * Reads a received message as the engine's pong: its settings; `undefined` for a pong that
 * carries none (a server whose `appHeartbeat.reply` is `{"type":"pong"}`, say); `false` for any
 * other message. A message that is not a pong costs one prefix comparison, nothing more.
 * (Text frames arrive as strings, in browsers and from `ws` alike.)
 */
export function parseAppPong(data: unknown): ServerSettings | undefined | false {
  if (typeof data !== 'string' || !data.startsWith(APP_PONG_PREFIX)) return false;
  try {
    const { interval, timeout } = JSON.parse(data) as { interval?: unknown; timeout?: unknown };
    return typeof interval === 'number' && typeof timeout === 'number' ? { interval, timeout } : undefined;
  } catch {
    return false;
  }
}

/** Going Away (RFC 6455 §7.4.1): the close code of a server that shuts down. */
export const CLOSE_GOING_AWAY = 1001;
/** Internal Error: the close code of a connection whose server-side handler failed. */
export const CLOSE_INTERNAL_ERROR = 1011;
/** Service Restart (IANA close code registry): a shutdown that names a window to come back in. */
export const CLOSE_SERVICE_RESTART = 1012;

/** The close reason of a shutdown without a retry hint. */
export const SHUTDOWN_REASON = 'Server shutting down';

/** The close reason of a restart that asks clients to come back within `retryWithin` ms. */
export function formatRetryHint(retryWithin: number): string {
  return `Server restarting, retry within ${retryWithin} ms`;
}

const RETRY_HINT = /retry within (\d+) ms/;

/**
 * The window, in ms, within which the server asked its clients to reconnect, read from a close
 * frame that {@link shutdownClose} wrote; `undefined` for any other close.
 */
export function parseRetryHint(code: number, reason: string): number | undefined {
  if (code !== CLOSE_GOING_AWAY && code !== CLOSE_SERVICE_RESTART) return undefined;
  const match = RETRY_HINT.exec(reason);
  return match ? Number(match[1]) : undefined;
}

/** A close frame's code and reason. */
export interface CloseFrame {
  code: number;
  reason: string;
}

/**
 * The close frame a shutting-down server sends: {@link CLOSE_GOING_AWAY} and
 * {@link SHUTDOWN_REASON}; or, given `retryWithin` (ms), {@link CLOSE_SERVICE_RESTART} and the
 * retry hint. The value is not checked here (core checks it where the option is given).
 */
export function shutdownClose(retryWithin?: number): CloseFrame {
  if (retryWithin === undefined) return { code: CLOSE_GOING_AWAY, reason: SHUTDOWN_REASON };
  return { code: CLOSE_SERVICE_RESTART, reason: formatRetryHint(retryWithin) };
}
