/**
 * Child processes of the tests: a fixture forked with an IPC channel (a `.ts` one through
 * register.js, so it runs the sources without a build), its messages recorded with the time they
 * arrived, and the process killed by the test's cleanup. One check built on it: an application
 * that closes must let its process exit by itself.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Cleanup } from './cleanup';
import { ms, now, waitFor } from './time';

/** The loader that lets a child process run a `.ts` file (see its header). */
export const REGISTER_TS = path.join(__dirname, '../../packages/core/test/fixtures/register.js');

/** A program that opens `count` ws clients to `url`, says `{ type: 'ready', ports }`, then reports their pings and closes (see its header). */
export const HELD_CLIENTS = path.join(__dirname, 'held-clients.js');

/** How a child process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** now() when 'exit' fired. */
  at: number;
}

export interface Child<M extends { type: string }> {
  process: ChildProcess;
  /** Every IPC message, with the time it arrived. */
  messages: Array<{ message: M; at: number }>;
  /** Set on 'exit'. */
  exit: Exit | null;
  /** Resolves on 'exit'. */
  exited: Promise<Exit>;
  /** Resolves once the IPC channel closed: every message the child sent has arrived. */
  disconnected: Promise<void>;
}

export interface ForkOptions {
  /** Its `process.argv.slice(2)`. */
  args?: string[];
  /** Node options; a `.ts` file also gets `--require register.js`. */
  execArgv?: string[];
  /** A command that runs node for it, such as `['ip', 'netns', 'exec', name]` (inside a network namespace). */
  wrap?: string[];
}

/**
 * Forks `file` with stdin ignored, stdout and stderr inherited and an IPC channel. The child
 * never outlives the test: `cleanup` kills it (a stopped one is continued first).
 */
export function forkChild<M extends { type: string }>(cleanup: Cleanup, file: string, { args = [], execArgv = [], wrap = [] }: ForkOptions = {}): Child<M> {
  const nodeArgv = file.endsWith('.ts') ? [...execArgv, '--require', REGISTER_TS] : execArgv;
  const subprocess = fork(file, args, {
    ...(wrap.length > 0 ? { execPath: wrap[0], execArgv: [...wrap.slice(1), process.execPath, ...nodeArgv] } : { execArgv: nodeArgv }),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const child: Child<M> = {
    process: subprocess,
    messages: [],
    exit: null,
    exited: new Promise((resolve) => {
      subprocess.on('exit', (code, signal) => resolve((child.exit = { code, signal, at: now() })));
    }),
    disconnected: new Promise((resolve) => subprocess.once('disconnect', resolve)),
  };
  subprocess.on('message', (message) => child.messages.push({ message: message as M, at: now() }));
  cleanup.defer(() => killProcess(subprocess));
  return child;
}

/** SIGCONT (a stopped child cannot die otherwise), SIGKILL, and waits for the exit; nothing if it already exited. */
export async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGCONT');
  child.kill('SIGKILL');
  await exited;
}

/**
 * The first message of `type` among those that arrived from index `from` on, waiting up to
 * `timeout` ms for it; fails early once the IPC channel closed without it.
 */
export async function childMessage<M extends { type: string }, T extends M['type']>(
  child: Child<M>,
  type: T,
  timeout: number,
  from = 0,
): Promise<{ message: Extract<M, { type: T }>; at: number }> {
  const find = () => child.messages.slice(from).find((m) => m.message.type === type);
  await waitFor(() => find() !== undefined || !child.process.connected, timeout, `a '${type}' message from the child`);
  const found = find();
  if (found === undefined) throw new Error(`the child disconnected (exit: ${JSON.stringify(child.exit)}) before sending '${type}'`);
  return found as { message: Extract<M, { type: T }>; at: number };
}

/** What a fixture that closes its application says: right before the close, then once it is done. */
export type ClosingMessage = { type: 'closing' } | { type: 'closed' };

/**
 * Forks `fixture` with `config` as JSON in `argv[2]`. The fixture runs an application, says
 * `{ type: 'closing' }` right before it closes it, and must then exit by itself (no
 * process.exit, no IPC listener): with code 0, within `config.closeTimeout` + 1 s of that
 * message. Resolves with its 'closing' and 'closed' messages.
 */
export async function expectExitByItself<M extends ClosingMessage>(
  cleanup: Cleanup,
  fixture: string,
  config: { closeTimeout: number },
): Promise<{ closing: Extract<M, { type: 'closing' }>; closed: Extract<M, { type: 'closed' }> }> {
  const child = forkChild<M>(cleanup, fixture, { args: [JSON.stringify(config)] });
  const closing = await childMessage(child, 'closing', ms(20_000));
  const limit = config.closeTimeout + ms(1000);

  await waitFor(() => child.exit !== null, limit + ms(2000), 'the child to exit by itself');

  expect(child.exit).toMatchObject({ code: 0, signal: null });
  expect(child.exit!.at - closing.at).toBeLessThanOrEqual(limit);
  const closed = await childMessage(child, 'closed', ms(1000));
  return { closing: closing.message, closed: closed.message };
}
