import { WebSocket } from 'ws';
import type { SendBacklog } from './backlog';
import { CLOSING, IDLE_ONLY, OPEN, PING_OUT, type ConnectionTable } from './connections';
import { TICK_MS, type ResolvedOptions } from './options';
import type { RouteTable } from './routes';
import type { TerminateReason } from './types';

// The liveness rule, in one place: when a connection is pinged, when it is judged, and what
// proves that its peer is alive. The engine (heartbeat.ts) keeps the state and does the acts.

/** How often the queues of the connections on routes with `maxBufferedAmount` are re-read: {@link Liveness.sweepBuffers}. */
export const BUFFER_CHECK_MS = 1_000;
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
/** The fewest pings a tick should hold before the engine spreads them over more ticks. */
const PINGS_PER_TICK = 128;

/**
 * Which ticks first pings go to, as grids of ticks to try in turn: every `step`-th tick of the
 * first grid while one in the spread window holds fewer than {@link PINGS_PER_TICK}, then of the
 * next; then any tick (the wheel's `leastLoaded`). A tick costs a timer wakeup and an event-loop
 * turn whatever it holds (and its answers, if it holds few, come back one wakeup each): 1,000
 * connections on a 1 s interval in 5 ms ticks would wake the process 200 times a second for
 * 5 pings each. Each step divides the ticks of an interval, so that a connection pinged on a grid
 * stays on it.
 *
 * - The coarse grid has about one tick per {@link PINGS_PER_TICK} connections in an interval: the
 *   fewest wakeups, for connections that arrive over time.
 * - The fine grid has that many ticks in the spread window alone, for connections that arrive
 *   together (every client reconnecting after a deploy): on the coarse grid only the few ticks in
 *   their window would take them, and the rest would go one by one to every tick of it.
 *
 * With many connections both are every tick. Pings themselves may go early (the verdict is
 * anchored to the last sign of life, not to the ping), verdicts never do.
 */
export function pingGrids(options: ResolvedOptions, connections: number): number[] {
  const perInterval = Math.round(options.interval / TICK_MS);
  const windowTicks = Math.floor(firstPingSpread(options) / TICK_MS);
  const ticksNeeded = Math.max(1, Math.ceil(connections / PINGS_PER_TICK));
  const coarse = gridStep(perInterval, Math.min(Math.floor(perInterval / ticksNeeded), windowTicks));
  const fine = gridStep(perInterval, Math.floor(windowTicks / ticksNeeded));
  return fine > 1 && fine < coarse ? [coarse, fine] : [coarse];
}

/** The largest step up to `most` that divides the `perInterval` ticks of an interval (1: every tick). */
function gridStep(perInterval: number, most: number): number {
  for (let step = most; step > 1; step--) if (perInterval % step === 0) return step;
  return 1;
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
  /** The start of the least loaded tick from `from` to `to`, on the first of the grids of `steps` ticks with one there that holds fewer than `full` (the wheel's `leastLoaded`). */
  leastLoaded(from: number, to: number, steps: readonly number[], full: number): number;
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
   * Where a connection that was never pinged is looked at first: the least loaded tick of the grid
   * (see {@link pingGrids}) in the spread window before its first ping is `due`. Connections that
   * arrive together would otherwise be pinged together every interval from then on (each keeps
   * its tick).
   */
  firstLook(id: number, due: number): number {
    const { options } = this.routes.at(this.table.profile[id]!);
    return this.engine.leastLoaded(due - firstPingSpread(options), due, pingGrids(options, this.table.count), PINGS_PER_TICK);
  }

  /**
   * A pong answered the ping out to connection `id`: when it needs its next look, if that answer
   * was all the planned look waited for (no queue to the peer to watch): when its next ping falls
   * due. Then each connection is looked at once per interval, not twice. `undefined`: keep the
   * look already planned.
   */
  readonly answered = (id: number): number | undefined => {
    const { table } = this;
    if (this.watchesQueue(id, table.ws[id]!)) return undefined;
    return this.anchor(id) + this.routes.at(table.profile[id]!).options.interval - TICK_MS;
  };

  /**
   * What the next ping of connection `id` is due an interval after: the beat of the latest ping
   * (see `beatAt`), or with `idleOnly` the last sign of life, unless that sign was the answer to
   * the latest ping itself. An idle connection then keeps its tick, however long its answers take;
   * anchored to their arrival, it would move to a later tick with each, into other connections'.
   */
  private anchor(id: number): number {
    const { table } = this;
    const beat = Math.max(table.beatAt[id]!, table.trackedAt[id]!);
    if ((table.traits[id]! & IDLE_ONLY) === 0) return beat;
    const lastSeen = table.lastSeen[id]!;
    // The answer arrived at pingAt + latestRtt (a float32: exact to well under a microsecond).
    return Math.abs(lastSeen - table.pingAt[id]! - table.latestRtt[id]!) < 0.001 ? beat : lastSeen;
  }

  /**
   * Ends every open connection among ids `from` to `to` (excluded) with more than its route's
   * `maxBufferedAmount` queued to the peer (`backpressure`). The engine reads the whole table
   * every {@link BUFFER_CHECK_MS}, in slices (see SweepRounds): tight passes over the table cost far
   * less than a look per connection per second in the wheel, and connections are otherwise looked
   * at only when a ping or a verdict falls due (every 30 s by default).
   */
  readonly sweepBuffers = (from: number, to: number): void => {
    const { table } = this;
    for (let id = from; id < to; id++) {
      if (table.state[id] !== OPEN) continue;
      const queued = table.ws[id]!.bufferedAmount;
      if (queued === 0) continue;
      const max = this.routes.at(table.profile[id]!).options.maxBufferedAmount;
      if (max !== false && queued > max) this.engine.judge(id, true, 'backpressure');
    }
  };

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
   * interval after the last sign of life (`idleOnly`), or after the previous ping was due.
   * `tickAt` is the start of the wheel's tick that the look was due in (`now` may be later).
   */
  readonly check = (id: number, now: number, final = false, tickAt = now - TICK_MS): number => {
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
      const due = this.anchor(id) + options.interval - TICK_MS;
      // A connection never pinged gets its first ping in the check it was spread to (see
      // track()), up to that much before it is due.
      const first = table.beatAt[id] === 0;
      if (now >= due || (first && now >= due - firstPingSpread(options))) {
        // Pinged in the tick that ends at or after the due time: the verdict then falls due at
        // exactly t0 + interval + timeout. The next ping is due an interval after this tick's
        // end, however late the tick came (see `beatAt`).
        next = Math.min(verdictDue(this.engine.ping(id, ws), lastSeen, options), now + options.interval);
        table.beatAt[id] = tickAt + TICK_MS;
      } else if (first) {
        // It showed life since it was spread (most clients send a first message right after they
        // connect): spread again, before the new due time, or connections that arrived together
        // would be pinged together from then on.
        next = this.firstLook(id, due);
      } else {
        next = due;
      }
    }
    // A queue is watched while it holds bytes, and so is one about to form: `ws` still holds
    // bytes for the peer (messages it is compressing, or has yet to hand to the socket).
    if (this.watchesQueue(id, ws)) next = Math.min(next, now + progressCheck(options));
    return next;
  };

  /** Whether bytes are queued to the peer, or about to be (`ws` still holds some): its queue is watched. */
  private watchesQueue(id: number, ws: WebSocket): boolean {
    return this.backlog.queued(id) || ws.bufferedAmount > 0;
  }
}
