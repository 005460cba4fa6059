// The benchmark's instrumentation, on with `--trace` (off by default: it costs a little in every
// process). It answers one question about every healthy peer that was closed: who was late, the
// server writing its ping, the peer answering it, or the server reading the answer?
//
// The server records when it wrote each ping to a connection and, for ours, what the engine said
// when it ended one; each load process records when each of its peers received a ping (a `ws`
// client has written its pong by then); both record the event-loop blocks they suffered. Times
// are CLOCK_MONOTONIC milliseconds (nowMs), the same clock in every process, so the records join
// on the peer's port.
import { nowMs } from './lib.mjs';

/** How many recent ping times a record keeps per connection. */
const KEEP = 3;
/** A gap of the 10 ms probe timer longer than this is an event-loop block worth keeping. */
const BLOCK_MS = 50;

/** Appends `at` to a short list of recent times. */
export function remember(list, at) {
  list.push(at);
  if (list.length > KEEP) list.shift();
}

/**
 * Records the event-loop blocks of this process from now on: every time a 10 ms timer fired more
 * than BLOCK_MS late, `{ at, ms }` with `at` the moment the loop ran again. The timer is unref()ed.
 */
export function recordBlocks() {
  const blocks = [];
  let last = nowMs();
  setInterval(() => {
    const at = nowMs();
    const late = at - last - 10;
    if (late > BLOCK_MS) blocks.push({ at: Math.round(at), ms: Math.round(late) });
    last = at;
  }, 10).unref();
  return blocks;
}

/**
 * Joins the server's records of closed healthy peers with the load processes' records of the same
 * peers (by port). For each: how long after the server wrote its last ping the peer received it,
 * when the peer answered relative to the close, and what the engine saw.
 */
export function joinTrace(server, loads) {
  const peers = Object.assign({}, ...loads.map((load) => load.peers));
  const rows = server.closed.map((closed) => {
    const peer = peers[closed.port] ?? { pings: [] };
    const written = closed.pingsWritten.at(-1);
    const received = peer.pings.at(-1);
    return {
      port: closed.port,
      reason: closed.reason,
      closedAt: closed.at,
      // Engine's view at the end (ours only): ms since its last sign of life, and the connection's age.
      silentMs: closed.silentMs,
      // The last ping: from the server's write to the peer's receipt (the peer answers at once).
      pingWrittenToReceivedMs: written !== undefined && received !== undefined ? round(received - written) : null,
      // From the peer's answer to the close: positive means the answer was there, unread or uncounted.
      answerBeforeCloseMs: received !== undefined ? round(closed.at - received) : null,
      // From the server's write of the ping to the close: the time the peer was really given.
      closeAfterPingWrittenMs: written !== undefined ? round(closed.at - written) : null,
      pingsWritten: closed.pingsWritten.map(Math.round),
      pingsReceived: peer.pings.map(Math.round),
    };
  });
  return { closed: rows, serverBlocks: server.blocks, loadBlocks: loads.map((load) => load.blocks) };
}

const round = (value) => Math.round(value * 10) / 10;
