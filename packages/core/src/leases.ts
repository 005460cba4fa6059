import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

/** What a lease counts against, besides the router's own limits: a route's. */
export interface LeasedRoute {
  readonly maxConnections: number;
  /** Open connections plus upgrades in progress. */
  connections: number;
}

/** One counted connection, from the limit check until its socket or its `ws` closes. */
export interface Lease {
  readonly route: LeasedRoute;
  /** Set only when the per-client limit is on. */
  readonly address: string | undefined;
  released: boolean;
}

type Closable = Duplex | WebSocket;

/**
 * The router's connection limits. Every upgrade that passed the path and origin checks takes a
 * lease, counted against the router's limit, its route's and its client address's; the lease is
 * released exactly once: when the upgrade is refused or abandoned, or when what holds it (the
 * socket, then the `ws`) closes.
 */
export class Leases {
  #connections = 0;
  readonly #perClient = new Map<string, number>();
  readonly #held = new WeakMap<Closable, Lease>();
  /** One listener for every holder: `this` is the socket or `ws` that closed. */
  readonly #holderOnClose: (this: Closable) => void;

  constructor(
    private readonly maxConnections: number,
    private readonly maxConnectionsPerClient: number,
  ) {
    const leases = this;
    this.#holderOnClose = function holderOnClose() {
      const lease = leases.#held.get(this);
      if (lease === undefined) return;
      leases.#held.delete(this);
      leases.release(lease);
    };
  }

  /** Counts a connection against every limit, or returns the status that refuses it: 503, or 429 per client. */
  take(route: LeasedRoute, req: IncomingMessage): Lease | number {
    if (this.#connections >= this.maxConnections || route.connections >= route.maxConnections) return 503;
    let address: string | undefined;
    if (this.maxConnectionsPerClient !== Infinity) {
      address = req.socket.remoteAddress ?? '';
      const count = this.#perClient.get(address) ?? 0;
      if (count >= this.maxConnectionsPerClient) return 429;
      this.#perClient.set(address, count + 1);
    }
    this.#connections += 1;
    route.connections += 1;
    return { route, address, released: false };
  }

  /** Gives a lease back; a second call does nothing. */
  release(lease: Lease): void {
    if (lease.released) return;
    lease.released = true;
    this.#connections -= 1;
    lease.route.connections -= 1;
    const { address } = lease;
    if (address === undefined) return;
    const count = (this.#perClient.get(address) ?? 1) - 1;
    if (count > 0) this.#perClient.set(address, count);
    else this.#perClient.delete(address);
  }

  /** `holder` gives `lease` back when it closes (one already closed gives it back now). */
  holdUntilClose(holder: Closable, lease: Lease): void {
    if ((holder as Duplex).closed === true) {
      this.release(lease);
      return;
    }
    this.#held.set(holder, lease);
    holder.once('close', this.#holderOnClose);
  }

  /** The socket became a `ws`: from now on the `ws`'s close gives the lease back. */
  handOver(socket: Duplex, ws: WebSocket, lease: Lease): void {
    socket.removeListener('close', this.#holderOnClose);
    this.#held.delete(socket);
    this.holdUntilClose(ws, lease);
  }
}
