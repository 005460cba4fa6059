/**
 * Network namespaces for the fault suite: a namespace joined to the root namespace by a veth pair
 * on a link-local /30 (169.254.X.1 here, 169.254.X.2 inside), so that a peer process inside it can
 * be cut off (iptables DROP, link down) without touching anything else of the machine.
 *
 * Names carry the jest worker's pid and a counter: namespace `wsh-<pid>-<n>`, veth `wsh<pid>.<n>h`
 * (root side) and `wsh<pid>.<n>n` (inside), at most 15 characters. `useNetns(cleanup)` has the
 * test's cleanup remove every namespace it created, whatever the outcome, and before the file starts removes
 * the leftovers of a crashed earlier run (names of this pattern whose pid is no longer alive).
 * Firewall rules live inside the namespace and go with it.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Cleanup } from '../helpers/cleanup';

const NETNS = /^wsh-(\d+)-(\d+)$/;
const LINK = /^wsh(\d+)\.(\d+)[hn]$/;

let counter = 0;

/** Runs a program; rejects with its stderr. */
export function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });
}

/** `ip …` in the root namespace. */
export const ip = (...args: string[]): Promise<string> => run('ip', args);

export interface Netns {
  name: string;
  /** The veth's end in the root namespace, and the one inside. */
  hostIf: string;
  nsIf: string;
  /** The server listens here (root side)… */
  hostAddr: string;
  /** …and the namespace's peer connects from here. */
  nsAddr: string;
  /** Runs a program inside the namespace. */
  exec(command: string, args: string[]): Promise<string>;
}

/** Namespaces of this process now, and veth ends in the root namespace. */
export async function ours(pid = process.pid): Promise<{ namespaces: string[]; links: string[] }> {
  const { namespaces, links } = await present();
  return {
    namespaces: namespaces.filter((n) => NETNS.exec(n)?.[1] === String(pid)),
    links: links.filter((l) => LINK.exec(l)?.[1] === String(pid)),
  };
}

async function present(): Promise<{ namespaces: string[]; links: string[] }> {
  const namespaces = (await ip('netns', 'list'))
    .split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter((name) => NETNS.test(name));
  const links = (await ip('-o', 'link', 'show'))
    .split('\n')
    .map((line) => /^\d+: ([^:@]+)/.exec(line)?.[1] ?? '')
    .filter((name) => LINK.test(name));
  return { namespaces, links };
}

/** Removes a veth (both ends go) and a namespace; either may already be gone. */
async function remove(namespace: string, hostIf?: string): Promise<void> {
  if (hostIf !== undefined) await ip('link', 'del', hostIf).catch(() => undefined);
  await ip('netns', 'del', namespace).catch(() => undefined);
}

/** Removes what a crashed earlier run of this suite left: our pattern, a pid that is no longer alive. */
async function sweepLeftovers(): Promise<void> {
  const dead = (pid: string | undefined) => pid !== undefined && pid !== String(process.pid) && !existsSync(`/proc/${pid}`);
  const { namespaces, links } = await present();
  for (const link of links) if (dead(LINK.exec(link)?.[1])) await ip('link', 'del', link).catch(() => undefined);
  for (const namespace of namespaces) if (dead(NETNS.exec(namespace)?.[1])) await remove(namespace);
}

/** A third octet that no address of the root namespace uses yet. */
async function freeOctet(): Promise<number> {
  const used = await ip('-o', '-4', 'addr', 'show');
  for (let i = 0; i < 200; i++) {
    const octet = 20 + ((process.pid + counter * 7 + i) % 200);
    if (!used.includes(` 169.254.${octet}.`)) return octet;
  }
  throw new Error('no free 169.254.X.0/30 left');
}

/**
 * Sweeps what a crashed earlier run left (before the file's tests) and returns the namespace
 * factory; each namespace is removed by `cleanup`. Create it before the scene that uses it, so
 * that the scene's server and peers are gone before their network is.
 */
export function useNetns(cleanup: Cleanup): { create(): Promise<Netns>; readonly made: number } {
  beforeAll(sweepLeftovers);
  return {
    /** How many namespaces this file created so far. */
    get made() {
      return counter;
    },
    async create() {
      const n = ++counter;
      if (n > 999) throw new Error('too many namespaces for 15-character interface names');
      const name = `wsh-${process.pid}-${n}`;
      const hostIf = `wsh${process.pid}.${n}h`;
      const nsIf = `wsh${process.pid}.${n}n`;
      cleanup.defer(() => remove(name, hostIf));
      const octet = await freeOctet();
      const hostAddr = `169.254.${octet}.1`;
      const nsAddr = `169.254.${octet}.2`;
      const exec = (command: string, args: string[]) => run('ip', ['netns', 'exec', name, command, ...args]);
      await ip('netns', 'add', name);
      await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name);
      await ip('addr', 'add', `${hostAddr}/30`, 'dev', hostIf);
      await ip('link', 'set', hostIf, 'up');
      await exec('ip', ['addr', 'add', `${nsAddr}/30`, 'dev', nsIf]);
      await exec('ip', ['link', 'set', nsIf, 'up']);
      await exec('ip', ['link', 'set', 'lo', 'up']);
      return { name, hostIf, nsIf, hostAddr, nsAddr, exec };
    },
  };
}
