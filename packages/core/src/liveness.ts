import { WebSocket } from 'ws';
import type { SendBacklog } from './backlog';
import { CLOSING, IDLE_ONLY, OPEN, PING_OUT, type ConnectionTable } from './connections';
import { TICK_MS, type ResolvedOptions } from './options';
import type { RouteTable } from './routes';
import type { TerminateReason } from './types';

// The liveness rule, in one place: when a connection is pinged, when it is judged, and what
// proves that its peer is alive. The engine (heartbeat.ts) keeps the state and does the acts.

/** How often a route with `maxBufferedAmount` re-reads its connections' queues, at most. */
const BUFFER_CHECK_MS = 1_000;
/** How often, at most, a connection with bytes queued to it is looked at for progress of that queue. */
const PROGRESS_CHECK_MS = 250;
/** How much earlier than its due time a new connection's first ping may go, at most, to keep ticks even. */
const FIRST_PING_SPREAD_MS = 2_500;

/**
 * The window before its due time in which a new connection's first ping may be placed: connections
 * that arrive together would otherwise be pinged together every interval from then on.
 */
export function firstPingSpread(options: ResolvedOptions): number {
  return Math.min(options.interval / 4, FIRST_PING_SPREAD_MS);
}
/**
 * While bytes are queued to a peer, how often its queue is looked at: a quarter of the timeout, at
 * most {@link PROGRESS_CHECK_MS}, never less than a tick. Queue progress is seen this late at most,
 * which is all it adds to the bound of a peer that vanishes in the middle of a download.
 */
function progressCheck(options: ResolvedOptions): number {
  return Math.max(TICK_MS, Math.min(options.timeout / 4, PROGRESS_CHECK_MS));
}
/**
 * When a connection pinged at `pingAt`, whose last sign of life came at `lastSeen`, is judged:
 * `timeout` after the ping was due, or after it was sent if that was later (a ping sent late, after
 * a stall, still gets its full timeout).
 */
function verdictDue(pingAt: number, lastSeen: number, options: ResolvedOptions): number {
  return Math.max(pingAt, lastSeen + options.interval) + options.timeout;
}

/** What the rule asks of the engine. */
export interface LivenessActs {
  /** True once the engine is closing: a connection's close timeout then counts as `'shutdown'`. */
  readonly closing: boolean;
  /** Pings the connection; returns when the ping was written. */
  ping(id: number, ws: WebSocket): number;
  /** Ends a connection that looks dead: now when `final`, else once its pending input was read. Returns Infinity. */
  judge(id: number, final: boolean, reason: TerminateReason): number;
}

export class Liveness {
  constructor(
    private readonly table: ConnectionTable,
    private readonly routes: RouteTable,
    private readonly backlog: SendBacklog,
    private readonly engine: LivenessActs,
  ) {}

  /**
   * Decides what a due connection needs and returns when to look at it again (`Infinity`: not
   * in the wheel any more). With `final` false, a connection that looks dead becomes a suspect
   * whose verdict waits until pending input has been read; with `final` true it is ended.
   *
   * In order: CLOSING for `closeTimeout` → ended; more than `maxBufferedAmount` queued to the peer
   * → ended (`backpressure`); our queue to the peer moved since the last look → a sign of life
   * now (one that lasts while the kernels deliver their tail, when the queue has just emptied);
   * a sign of life after the latest ping answers it; a ping still unanswered `timeout` after
   * it was due (or sent, if later) → ended (`timeout`); otherwise a ping once one is due: an
   * interval after the last sign of life (`idleOnly`), or after the previous ping.
   */
  readonly check = (id: number, now: number, final = false): number => {
    const { table } = this;
    const ws = table.ws[id]!;
    const { options } = this.routes.at(table.profile[id]!);
    if (table.state[id] === OPEN && ws.readyState !== WebSocket.OPEN) {
      // CLOSING without a call we could see; start the close timeout from here.
      table.state[id] = CLOSING;
      table.closingAt[id] = now;
    }
    if (table.state[id] === CLOSING) {
      const deadline = table.closingAt[id]! + options.closeTimeout;
      if (now < deadline) return deadline;
      return this.engine.judge(id, final, this.engine.closing ? 'shutdown' : 'close-timeout');
    }
    if (options.maxBufferedAmount !== false && ws.bufferedAmount > options.maxBufferedAmount) {
      return this.engine.judge(id, true, 'backpressure');
    }
    const socket = table.socket[id];
    // The peer's kernel took some of what we queued to it: alive, even if its answer to our ping
    // still waits behind megabytes we sent before the ping. When it moved is only known to be
    // since the last look, so it counts as now: never earlier than it happened. When the queue has
    // just emptied, the peer is still reading what the kernels hold for it, and that counts on
    // until it would have read it at the rate it was reading (see SendBacklog).
    let formed = false;
    if (socket !== undefined) {
      const alive = this.backlog.look(id, socket, now, options.interval + options.timeout, ws);
      if (alive > table.lastSeen[id]!) table.lastSeen[id] = alive;
      else formed = Number.isNaN(alive);
    }
    const lastSeen = table.lastSeen[id]!;
    let pinged = (table.flags[id]! & PING_OUT) !== 0;
    if (pinged && lastSeen >= table.pingAt[id]!) {
      pinged = false; // any sign of life after the ping answers it
      table.flags[id]! &= ~PING_OUT;
    }
    // While a ping is out, the connection is looked at again at least once per interval (not only
    // at its deadline), so that when a timeout longer than the interval is configured, an answer
    // is noticed in time to send the next ping on schedule. Reads themselves stay one store.
    let next: number;
    if (pinged) {
      const deadline = verdictDue(table.pingAt[id]!, lastSeen, options);
      if (now < deadline) next = Math.min(deadline, now + options.interval);
      // A queue to the peer that formed since the last look may be moving: one more look tells.
      else if (formed) next = now + progressCheck(options);
      else return this.engine.judge(id, final, 'timeout');
    } else {
      const trackedAt = table.trackedAt[id]!;
      const anchor = (table.traits[id]! & IDLE_ONLY) !== 0 ? lastSeen : Math.max(table.pingAt[id]!, trackedAt);
      const due = anchor + options.interval - TICK_MS;
      // A connection that showed nothing since it was tracked (and was never pinged) may get its
      // first ping in the check it was spread to (see track()).
      if (now >= due || (anchor === trackedAt && now >= due - firstPingSpread(options))) {
        // Pinged in the tick that ends at or after the due time: the verdict then falls due at
        // exactly t0 + interval + timeout.
        next = Math.min(verdictDue(this.engine.ping(id, ws), lastSeen, options), now + options.interval);
      } else {
        next = due;
      }
    }
    if (options.maxBufferedAmount !== false) next = Math.min(next, now + Math.min(options.interval, BUFFER_CHECK_MS));
    // A queue is watched while it holds bytes, and so is one about to form: `ws` still holds
    // bytes for the peer (messages it is compressing, or has yet to hand to the socket).
    if (this.backlog.queued(id) || ws.bufferedAmount > 0) next = Math.min(next, now + progressCheck(options));
    return next;
  };
}
