/**
 * Fault suite, peers: the engine tells live peers from dead ones, whatever the peer is.
 *
 * On both adapters, next to the scene's 20 bystanders:
 * 1. healthy idle peers (`ws`, and Python `websockets` with a keepalive of its own) survive 10
 *    intervals, answering pings, and still echo;
 * 2. a peer that stops answering (a `ws` client with `autoPong: false`; a process SIGSTOPped) is
 *    terminated, reason `timeout`, inside `interval + timeout` and never earlier;
 * 3. a Python client whose reader parked (max_queue=1, never recv()) is terminated for `timeout`;
 * 4. a peer that writes but never reads, flooded on `/ws/slow`, is terminated for `backpressure`
 *    while the server's memory stays bounded;
 * 5. a server stall of 3 × (interval + timeout) terminates no healthy peer;
 * 6. unsolicited pongs are proof of life (RFC 6455 §5.5.3), a silent raw peer is not.
 *
 * Helper processes: peers/py_peer.py (Debian's python3-websockets 10.4) and test/helpers/held-clients.js.
 */
import path from 'node:path';
import readline from 'node:readline';
import { WebSocket } from 'ws';
import { maskedFrame, OPCODE, type Opcode } from '../helpers/clients';
import { useCleanup } from '../helpers/cleanup';
import { EPSILON, INTERVAL, SLOP, TIMEOUT, ms, sleep } from '../helpers/time';
import { ADAPTERS, echo, HELD_CLIENTS, mono, openScene, rawPeer, readFrames, until, type Peer, type Scene } from './support';

const PYTHON = '/usr/bin/python3';
const PY_PEER = path.join(__dirname, 'peers', 'py_peer.py');

/** A silent peer is terminated this long after its last frame. */
const BOUND = INTERVAL + TIMEOUT;
/** How long a test waits for something that must happen inside a bound, before it fails. */
const PATIENCE = BOUND + ms(2000);
/** Ten intervals: the window of the "stays alive" scenarios. */
const TEN_INTERVALS = 10 * INTERVAL;
/** Fewest pings in ten intervals if every cycle is late by SLOP. */
const MIN_PINGS = Math.floor(TEN_INTERVALS / (INTERVAL + SLOP));

/** `!flood fresh` on /ws/slow: a new 64 KiB chunk every 5 ms (12.8 MB/s), to a 1 MiB limit. */
const FLOOD_RATE = (64 * 1024) / 5;
const MAX_BUFFERED = 1024 * 1024;
/** Memory is measured from when this much is queued: the kernel's socket buffers are full then. */
const QUEUED = 64 * 1024;
/**
 * How much the server's memory may grow from then until the verdict. Every new chunk stays queued,
 * the limit is passed after less than MAX_BUFFERED of them, and the route looks at queues at least
 * every min(interval, 1 s), so at most one such period (plus SLOP) of the flood is queued beyond
 * the limit. Plus 2 MiB of heap noise (the flood's write requests, IPC, the bystanders). In all:
 * 6.25 MiB at scale 1, 12.75 MiB at scale 3 (measured at scale 1: 1.2–1.8 MiB; with the limit
 * applied 16 times too late, 17–18 MiB).
 */
const MEMORY_BOUND = MAX_BUFFERED + FLOOD_RATE * (Math.min(INTERVAL, 1000) + SLOP) + 2 * 1024 * 1024;

interface Said {
  event: string;
  at: number;
  [field: string]: unknown;
}

/** The Python peer (killed after the test) and the JSON lines it printed. */
function python(scene: Scene, ...args: string[]): { said: Said[]; next(event: string, timeout: number): Promise<Said> } {
  const child = scene.spawn(PYTHON, [PY_PEER, ...args]);
  const said: Said[] = [];
  let ended = false;
  child.once('close', () => (ended = true));
  readline.createInterface({ input: child.stdout! }).on('line', (line) => said.push(JSON.parse(line) as Said));
  const find = (event: string) => said.find((s) => s.event === event) ?? said.find((s) => s.event === 'error');
  return {
    said,
    async next(event, timeout) {
      await until(() => find(event) !== undefined || ended, timeout, `"${event}" from the Python peer`);
      const found = find(event);
      if (found === undefined || found.event === 'error') throw new Error(`the Python peer ended without "${event}": ${JSON.stringify(said)}`);
      return found;
    },
  };
}

/** A raw peer that reads what the server sends; `pings()` are the times its ping frames arrived. */
async function readingRawPeer(scene: Scene): Promise<{ port: number; send(opcode: Opcode): void; pings(): number[] }> {
  const { socket, port } = await rawPeer(scene);
  const read = readFrames(socket);
  return {
    port,
    send: (opcode) => socket.write(maskedFrame(opcode)),
    pings: () => read.frames.filter((f) => f.opcode === OPCODE.ping).map((f) => f.at),
  };
}

/** `fn` every `period` ms until the test is over. */
function every(scene: Scene, period: number, fn: () => void): void {
  const timer = setInterval(fn, period);
  scene.cleanup.defer(() => clearInterval(timer));
}

/** The server's 'connection' event of a client port. */
function connectionOf(scene: Scene, port: number) {
  return scene.server.next('connection', (e) => e.remotePort === port, ms(2000));
}

/** The server's first termination of a client port. */
function terminationOf(scene: Scene, port: number, timeout = PATIENCE) {
  return scene.server.next('terminate', (e) => e.remotePort === port, timeout);
}

const cleanup = useCleanup();

describe.each(ADAPTERS)('%s', (adapter) => {
  it('healthy idle peers survive 10 intervals: a ws client and a Python websockets client with its own keepalive answer pings and still echo', async () => {
    const scene = await openScene(cleanup, adapter);
    const py = python(scene, 'healthy', scene.url('/ws/echo'), String(INTERVAL), String(TEN_INTERVALS));
    const opening = mono();
    const peer = await scene.peer('/ws/echo');
    const pyPort = (await py.next('open', ms(10_000))).port as number;

    await sleep(Math.max(0, opening + TEN_INTERVALS - mono()));
    // Each ping after the first was only sent because the one before was answered.
    const pings = peer.pings.filter((t) => t <= opening + TEN_INTERVALS).length;
    expect(pings).toBeGreaterThanOrEqual(MIN_PINGS);
    expect(pings).toBeLessThanOrEqual(10);
    expect(peer.closed).toBeNull();
    await echo(peer, 'still here');

    const report = await py.next('report', TEN_INTERVALS + ms(5000));
    expect(report).toMatchObject({ open: true, echoed: true });
    expect(report.pingsSent).toBeGreaterThanOrEqual(MIN_PINGS);
    expect(report.pingsAnswered).toBeGreaterThanOrEqual((report.pingsSent as number) - 1); // the last may be in flight
    expect((await py.next('closed', ms(5000))).code).toBe(1000);

    expect(scene.server.terminations(peer.port)).toEqual([]);
    expect(scene.server.terminations(pyPort)).toEqual([]);
  });

  it('a peer that stops answering is terminated inside the bound: a ws client with autoPong false, interval + timeout from its open, never earlier', async () => {
    const scene = await openScene(cleanup, adapter);
    const opening = scene.inject();
    const peer = await scene.peer('/ws/echo', { autoPong: false });
    const opened = await connectionOf(scene, peer.port);

    const end = await terminationOf(scene, peer.port);
    expect(end.reason).toBe('timeout');
    expect(end.at - opened.at).toBeGreaterThanOrEqual(BOUND - EPSILON);
    expect(end.at - opening).toBeLessThanOrEqual(BOUND + SLOP);
    await until(() => peer.closed !== null, ms(2000), 'the silent peer to see its connection end');
    expect(peer.closed!.code).toBe(1006);
    expect(peer.pings).toHaveLength(1);
  });

  it('a peer that stops answering is terminated inside the bound: a SIGSTOPped process holding a ws client, no later than interval + timeout after the stop', async () => {
    const scene = await openScene(cleanup, adapter);
    const child = scene.fork(HELD_CLIENTS, [scene.url('/ws/echo'), '1']);
    let port = -1;
    let pings = 0;
    let stoppedAt = Infinity;
    child.on('message', (m: { type: string; ports?: number[] }) => {
      if (m.type === 'ready') port = m.ports![0]!;
      // Stopped right after it answered a ping: its last frame is as late as it can be.
      if (m.type === 'ping' && ++pings === 2) {
        child.kill('SIGSTOP');
        stoppedAt = scene.inject();
      }
    });
    await until(() => port !== -1, ms(10_000), 'the held peer to open');
    await until(() => stoppedAt !== Infinity, 3 * BOUND, 'the held peer to answer two pings');

    const end = await terminationOf(scene, port);
    expect(end.reason).toBe('timeout');
    expect(end.at).toBeGreaterThan(stoppedAt);
    expect(end.at - stoppedAt).toBeLessThanOrEqual(BOUND + SLOP);
  });

  it('a Python websockets client that stops reading (max_queue=1, never recv) is terminated with reason timeout inside the bound after it stopped reading', async () => {
    const scene = await openScene(cleanup, adapter);
    const py = python(scene, 'stall', scene.url('/ws/echo'), String(BOUND + ms(5000)));
    const port = (await py.next('open', ms(10_000))).port as number;
    // Its last frame is the last `!send`, written at `lastSendAt`, before its reader stopped.
    const { lastSendAt } = (await py.next('sent', ms(5000))) as Said & { lastSendAt: number };
    scene.inject();
    // Its reader parked with one message queued; what follows (the third message, our pings) stays unread.
    expect(await py.next('stalled', ms(5000))).toMatchObject({ queued: 1, parked: true });

    const end = await terminationOf(scene, port);
    expect(end.reason).toBe('timeout');
    expect(end.at - lastSendAt).toBeGreaterThanOrEqual(BOUND - EPSILON);
    expect(end.at - lastSendAt).toBeLessThanOrEqual(BOUND + SLOP);
    expect(await py.next('closed', ms(5000))).toMatchObject({ code: 1006, queued: 1, pongsSent: 0 });
  });

  it('a slow reader on /ws/slow that sends !flood and then stops reading is terminated with reason backpressure, and the server memory stays bounded', async () => {
    const scene = await openScene(cleanup, adapter);
    // rawPeer leaves the socket paused: this peer never reads again. It keeps writing
    // unsolicited pongs, so it is alive and only its backlog can end it.
    const { socket, port } = await rawPeer(scene, '/ws/slow');
    every(scene, INTERVAL / 2, () => socket.write(maskedFrame(OPCODE.pong)));
    scene.inject();
    // Fresh chunks: a queued chunk is memory of its own (the plain flood queues one shared buffer).
    socket.write(maskedFrame(OPCODE.text, '!flood fresh'));

    // Until the kernel's buffers are full (their size is the machine's), nothing queues.
    const deadline = mono() + ms(10_000);
    let queued = 0;
    while (queued < QUEUED) {
      queued = await scene.server.command<number>({ cmd: 'buffered', port });
      if (queued < 0 || mono() > deadline) throw new Error(`never saw ${QUEUED} bytes queued to the slow reader (last: ${queued})`);
    }
    const start = await scene.server.command<number>({ cmd: 'peakStart' });
    const end = await terminationOf(scene, port, ms(10_000));
    const peak = await scene.server.command<number>({ cmd: 'peakStop' });
    expect(end.reason).toBe('backpressure');
    expect(peak - start).toBeLessThan(MEMORY_BOUND);
  });

  it('a server busy-wait of 3 × (interval + timeout) terminates no healthy peer', async () => {
    const scene = await openScene(cleanup, adapter);
    const stall = 3 * BOUND;
    // Five more healthy peers. The ping that triggers the stall is answered a little later (well
    // within the timeout), so that its answer reaches the server while it is busy.
    const answerLate = TIMEOUT / 2;
    let armed = false;
    let busy: Promise<number> | undefined;
    let lateAnswerAt = Infinity;
    const extras: Peer[] = [];
    for (let i = 0; i < 5; i++) {
      const peer = await scene.peer('/ws/echo', { autoPong: false });
      peer.ws.on('ping', (data) => {
        if (!armed) return peer.ws.pong(data);
        armed = false;
        scene.inject();
        busy = scene.server.command<number>({ cmd: 'busy', ms: stall }, stall + ms(10_000));
        setTimeout(() => {
          if (peer.ws.readyState !== WebSocket.OPEN) return;
          peer.ws.pong(data);
          lateAnswerAt = mono();
        }, answerLate);
      });
      extras.push(peer);
    }
    // Inject right after the bystanders were pinged: at the next ping after they all had one.
    const mark = mono();
    await until(() => scene.bystanders.every((b) => b.pings.some((t) => t > mark)), PATIENCE, 'every bystander to be pinged');
    armed = true;
    await until(() => busy !== undefined, PATIENCE, 'a ping to an extra peer');
    const resumedAt = await busy!;
    // The answer left while the server was busy: its verdict fell due with the answer unread.
    expect(lateAnswerAt).toBeGreaterThan(resumedAt - stall);
    expect(lateAnswerAt).toBeLessThan(resumedAt);

    // Afterwards: every extra peer pinged again (and still there a full bound later), nobody ended.
    await until(() => extras.every((p) => p.closed !== null || p.pings.some((t) => t > resumedAt)), PATIENCE, 'every extra peer to be pinged after the stall');
    await sleep(BOUND + SLOP);
    expect(scene.server.of('terminate')).toEqual([]);
    expect(extras.map((p) => p.closed)).toEqual(extras.map(() => null));
    await Promise.all(extras.map((p, i) => echo(p, `extra ${i}`)));
  });

  it('unsolicited pongs count as liveness: a raw peer that never answers pings but sends a pong every interval/2 is never pinged-then-terminated over 10 intervals; a raw peer that sends nothing is', async () => {
    const scene = await openScene(cleanup, adapter);
    const opening = scene.inject();
    const [living, silent] = await Promise.all([readingRawPeer(scene), readingRawPeer(scene)]);
    living.send(OPCODE.pong);
    every(scene, INTERVAL / 2, () => living.send(OPCODE.pong));
    const silentOpened = await connectionOf(scene, silent.port);

    const end = await terminationOf(scene, silent.port);
    expect(end.reason).toBe('timeout');
    expect(end.at - silentOpened.at).toBeGreaterThanOrEqual(BOUND - EPSILON);
    expect(end.at - opening).toBeLessThanOrEqual(BOUND + SLOP);
    expect(silent.pings()).toHaveLength(1);

    await sleep(Math.max(0, opening + TEN_INTERVALS - mono()));
    expect(scene.server.terminations(living.port)).toEqual([]);
    expect(scene.server.of('gone').filter((g) => g.remotePort === living.port)).toEqual([]);
    expect(living.pings()).toEqual([]);
  });
});
