import { WebSocket, type RawData } from 'ws';
import { rethrow } from './errors';
import type { Profile } from './routes';

const TEXT = { binary: false } as const;

/**
 * Answers an application-level heartbeat (a message from a client that cannot send ping frames)
 * on a route with `appHeartbeat`; returns true when `data` was one, which the application then
 * never sees as a `'message'`. A matcher or reply function that throws is the application's bug:
 * it surfaces as an uncaught exception of its own, outside this connection's receive path, and
 * the message is delivered as an ordinary one.
 */
export function answerAppHeartbeat(ws: WebSocket, profile: Profile, data: RawData, isBinary: boolean): boolean {
  const app = profile.options.appHeartbeat;
  if (!app) return false;
  let reply: string | Buffer | undefined;
  try {
    if (!app.match(data, isBinary)) return false;
    reply = profile.appReply ?? (typeof app.reply === 'function' ? app.reply(data) : app.reply);
  } catch (error) {
    process.nextTick(rethrow, error);
    return false;
  }
  if (reply !== undefined && ws.readyState === WebSocket.OPEN) {
    // The reply encoded once is text; other Buffers go as binary, strings as text.
    if (reply === profile.appReply) ws.send(reply, TEXT);
    else ws.send(reply);
  }
  return true;
}
