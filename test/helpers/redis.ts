/**
 * A real redis-server of the test's own (Debian's `redis-server`, installed by
 * scripts/system-deps.mjs), on a free port of 127.0.0.1, without persistence, stopped by the
 * test's cleanup. Never a mock.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { Cleanup } from './cleanup';
import { ms, now } from './time';

export interface TestRedis {
  port: number;
  url: string;
  process: ChildProcess;
  /** now() when the server said it accepts connections. */
  readyAt: number;
  /** Stops the server (SIGKILL: its data is gone, as after a crash). */
  kill(): Promise<void>;
}

export interface RedisOptions {
  /** The port (a restart reuses its predecessor's); a free one if not given. */
  port?: number;
  /** Addresses it listens on besides 127.0.0.1 (a network namespace's veth end). */
  bind?: string[];
}

/** A port that was free a moment ago (redis-server cannot take port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts redis-server; resolves once it accepts connections. DEBUG is allowed from local
 * connections (`DEBUG SLEEP`: a stalled Redis).
 */
export async function startRedis(cleanup: Cleanup, { port, bind = [] }: RedisOptions = {}): Promise<TestRedis> {
  const chosen = port ?? (await freePort());
  const args = ['--port', String(chosen), '--bind', '127.0.0.1', ...bind, '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local'];
  // Without a password, Redis answers only loopback clients unless told otherwise.
  if (bind.length > 0) args.push('--protected-mode', 'no');
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  cleanup.defer(kill);
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start within ${ms(10_000)} ms:\n${output}`)), ms(10_000));
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`redis-server could not be started (is the redis-server package installed?): ${error.message}`));
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const readyAt = now();
  child.stdout!.resume();
  return { port: chosen, url: `redis://127.0.0.1:${chosen}`, process: child, readyAt, kill };
}
