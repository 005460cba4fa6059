import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { refuseUnmatched } from './http';
import type { UpgradeServer } from './router-options';

/** Handles one upgrade; false when no route matches (the socket is then untouched). */
export type TakeUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => boolean;

/**
 * One `'upgrade'` listener per server, for a router or an adapter served on several servers. An
 * upgrade that `take` does not take goes to `refuseUnmatched()`: left to another listener, or
 * answered 404 (503 once `closing()` is true).
 */
export class UpgradeListeners {
  readonly #removers = new Map<UpgradeServer, () => void>();

  constructor(
    private readonly take: TakeUpgrade,
    private readonly closing: () => boolean,
  ) {}

  /** Adds the listener to `server`, once; returns the function that removes it again. */
  add(server: UpgradeServer): () => void {
    const existing = this.#removers.get(server);
    if (existing) return existing;
    const { take, closing } = this;
    const serverOnUpgrade = function serverOnUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      if (!take(req, socket, head)) refuseUnmatched(server, socket, closing() ? 503 : 404);
    };
    server.on('upgrade', serverOnUpgrade);
    const remove = (): void => {
      server.removeListener('upgrade', serverOnUpgrade);
      if (this.#removers.get(server) === remove) this.#removers.delete(server);
    };
    this.#removers.set(server, remove);
    return remove;
  }

  /** Removes every listener added. */
  removeAll(): void {
    for (const remove of [...this.#removers.values()]) remove();
  }
}
