/**
 * Network faults, in a Linux network namespace (netns.ts): a peer that vanishes without a FIN —
 * every packet of its namespace dropped by iptables, or its link taken down — is terminated with
 * reason `timeout` no later than interval + timeout after the fault (plus SLOP) and never before
 * interval + timeout after its last answer, and its server-side connection is gone; the
 * bystanders lose nothing. The file leaves no namespace, veth or rule of its own behind.
 *
 * Needs root, `ip` and `iptables`. The server listens on the root side of the veth; the
 * bystanders reach that local address from the root namespace.
 */
import path from 'node:path';
import { useCleanup } from '../helpers/cleanup';
import { EPSILON, INTERVAL, SLOP, TIMEOUT, ms } from '../helpers/time';
import { ours, useNetns, type Netns } from './netns';
import { ADAPTERS, openScene, until, type Scene } from './support';

const PEER = path.join(__dirname, 'peers', 'netns-peer.js');

const cleanup = useCleanup();
const netns = useNetns(cleanup);

/** The namespace's peer: its port (the server's `remotePort`) and when it received pings. */
interface NsPeer {
  port: number;
  pings: number[];
}

/** Starts a `ws` client inside the namespace; resolves once its connection is open. */
async function nsPeer(scene: Scene, ns: Netns): Promise<NsPeer> {
  const child = scene.spawn('ip', ['netns', 'exec', ns.name, process.execPath, PEER, scene.url('/ws/echo')]);
  const peer: NsPeer = { port: -1, pings: [] };
  const said: string[] = [];
  let rest = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    for (const line of lines) {
      said.push(line);
      const message = JSON.parse(line) as { open?: number; ping?: number };
      if (message.open !== undefined) peer.port = message.open;
      if (message.ping !== undefined) peer.pings.push(message.ping);
    }
  });
  await until(() => peer.port !== -1 || child.exitCode !== null, ms(10_000), 'the namespace peer to connect');
  if (peer.port === -1) throw new Error(`the namespace peer exited (${child.exitCode}): ${said.join(' ')}`);
  return peer;
}

/** Ways for the namespace to vanish without a FIN; each resolves once the fault is in place. */
const FAULTS: Array<[string, (ns: Netns) => Promise<unknown>]> = [
  [
    'its packets dropped (iptables DROP)',
    async (ns) => {
      await ns.exec('iptables', ['-A', 'INPUT', '-j', 'DROP']);
      await ns.exec('iptables', ['-A', 'OUTPUT', '-j', 'DROP']);
    },
  ],
  ['its link down', (ns) => ns.exec('ip', ['link', 'set', ns.nsIf, 'down'])],
];

describe.each(ADAPTERS)('%s', (adapter) => {
  it.each(FAULTS)('a peer that vanishes without FIN (%s) is terminated with reason timeout and its connection is gone', async (_, vanish) => {
    const ns = await netns.create(); // before the scene: removed once its server and peer are gone
    const scene = await openScene(cleanup, adapter, { host: ns.hostAddr });
    const peer = await nsPeer(scene, ns);
    const connection = await scene.server.next('connection', (e) => e.remotePort === peer.port, ms(2000));
    expect(connection.remoteAddress).toBe(ns.nsAddr);
    await until(() => peer.pings.length > 0, INTERVAL + SLOP + ms(2000), 'the namespace peer to answer a ping');

    const lastAnswer = Math.max(...peer.pings); // its pong reached the server after this
    await vanish(ns);
    const injectedAt = scene.inject(); // the fault is in place: the last frame came before
    expect(scene.server.terminations(peer.port)).toEqual([]);

    const terminated = await scene.server.next('terminate', (e) => e.remotePort === peer.port, INTERVAL + TIMEOUT + SLOP + ms(2000));
    expect(terminated.reason).toBe('timeout');
    expect(terminated.at - injectedAt).toBeLessThanOrEqual(INTERVAL + TIMEOUT + SLOP);
    expect(terminated.at - lastAnswer).toBeGreaterThanOrEqual(INTERVAL + TIMEOUT - EPSILON);
    const gone = await scene.server.next('gone', (e) => e.remotePort === peer.port, ms(1000));
    expect(gone.at).toBeGreaterThanOrEqual(terminated.at);
    expect(scene.server.terminations(peer.port)).toHaveLength(1);
  });
});

it('leaves no namespace, veth or firewall rule of this worker behind', async () => {
  expect(netns.made).toBe(ADAPTERS.length * FAULTS.length); // it runs last
  // Rules were only ever added inside the namespaces: they went with them.
  expect(await ours()).toEqual({ namespaces: [], links: [] });
});
