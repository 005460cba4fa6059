/**
 * Fault suite: peers that never finish the closing handshake. Every connection that enters
 * CLOSING is destroyed by the route's `closeTimeout` (reason `close-timeout`), no earlier than
 * CLOSE_TIMEOUT after it entered CLOSING and at most SLOP after that, and its state is freed: the
 * server reports it gone, the engine no longer counts it, and the raw peer sees the server close.
 * A peer that half-closes with nothing queued to it needs no timeout: `ws` answers its FIN at once.
 */
import type { Socket } from 'node:net';
import { closePayload, maskedFrame, OPCODE } from '../helpers/clients';
import { useCleanup } from '../helpers/cleanup';
import { CLOSE_TIMEOUT, SLOP, ms, sleep } from '../helpers/time';
import { ADAPTERS, BYSTANDERS, mono, openScene, rawPeer, readFrames, until, type Scene, type ServerFrames } from './support';

const MiB = 1024 * 1024;

/** Waits for the server's close frame on a peer that reads. */
async function closeFrameOf(read: ServerFrames): Promise<number> {
  await until(() => read.closeCode() !== undefined, ms(2000), "the server's close frame");
  return read.frames.find((f) => f.opcode === OPCODE.close)!.at;
}

/**
 * The connection of `port` entered CLOSING between `from` and `by` (mono()): expects it destroyed
 * by the close timeout within [from + CLOSE_TIMEOUT, by + CLOSE_TIMEOUT + SLOP], once, then gone,
 * forgotten by the engine, and the server's close seen by the peer (`read`, or read from now on).
 */
async function expectCloseTimeout(scene: Scene, socket: Socket, port: number, from: number, by = from, read?: ServerFrames): Promise<void> {
  const { server } = scene;
  const terminated = await server.next('terminate', (e) => e.remotePort === port, CLOSE_TIMEOUT + SLOP + ms(1000));
  expect(terminated.reason).toBe('close-timeout');
  expect(terminated.at - from).toBeGreaterThanOrEqual(CLOSE_TIMEOUT);
  expect(terminated.at - by).toBeLessThanOrEqual(CLOSE_TIMEOUT + SLOP);
  await server.next('gone', (e) => e.remotePort === port, ms(1000));
  expect(server.terminations(port)).toHaveLength(1);
  expect((await server.state()).size).toBe(BYSTANDERS);
  const seen = read ?? readFrames(socket);
  await until(() => seen.closedAt !== null, ms(2000), 'the peer to see the server close');
}

const cleanup = useCleanup();
describe.each(ADAPTERS)('%s', (adapter) => {
  it('close frame then silence: a peer that sends a close frame and then nothing is destroyed by closeTimeout', async () => {
    const scene = await openScene(cleanup, adapter);
    const { socket, port } = await rawPeer(scene);
    const from = scene.inject();
    socket.write(maskedFrame(OPCODE.close, closePayload(1000)));
    await expectCloseTimeout(scene, socket, port, from);
  });

  it('server close then silence: a peer that never answers our close frame is destroyed by closeTimeout', async () => {
    const scene = await openScene(cleanup, adapter);
    const { socket, port } = await rawPeer(scene);
    const read = readFrames(socket);
    const from = scene.inject();
    socket.write(maskedFrame(OPCODE.text, '!close'));
    const by = await closeFrameOf(read);
    expect(read.closeCode()).toBe(1000);
    await expectCloseTimeout(scene, socket, port, from, by, read);
  });

  it('FIN only: a peer that half-closes without a close frame, nothing queued to it, is gone at once (no timeout needed)', async () => {
    const scene = await openScene(cleanup, adapter);
    const { socket, port } = await rawPeer(scene);
    const finAt = scene.inject();
    socket.end();
    const gone = await scene.server.next('gone', (e) => e.remotePort === port, CLOSE_TIMEOUT + SLOP + ms(1000));
    expect(gone.at - finAt).toBeLessThan(SLOP);
    expect(gone.code).toBe(1006);
    expect(scene.server.terminations(port)).toEqual([]);
    expect((await scene.server.state()).size).toBe(BYSTANDERS);
    const read = readFrames(socket);
    await until(() => read.closedAt !== null, ms(2000), 'the peer to see the server close');
  });

  it('FIN only while ≥ 8 MiB is queued to the peer: destroyed by closeTimeout', async () => {
    const scene = await openScene(cleanup, adapter);
    const { socket, port } = await rawPeer(scene);
    socket.write(maskedFrame(OPCODE.text, `!send ${16 * MiB}`));
    const deadline = mono() + ms(3000);
    let queued: number;
    while ((queued = await scene.server.command<number>({ cmd: 'buffered', port })) < 8 * MiB) {
      if (mono() > deadline) throw new Error(`only ${queued} bytes queued to the peer`);
      await sleep(ms(20));
    }
    const from = scene.inject();
    socket.end();
    await expectCloseTimeout(scene, socket, port, from);
  });

  it('a peer that ignores our close and keeps sending is still destroyed by closeTimeout', async () => {
    const scene = await openScene(cleanup, adapter);
    const { socket, port } = await rawPeer(scene);
    const read = readFrames(socket);
    const delivered = (await scene.server.state()).delivered['/ws/echo']!;
    const from = scene.inject();
    socket.write(maskedFrame(OPCODE.text, '!close'));
    const by = await closeFrameOf(read);
    let sent = 0;
    const chatter = setInterval(() => {
      if (read.closedAt === null) socket.write(maskedFrame(OPCODE.text, `still here ${++sent}`));
    }, 5);
    scene.cleanup.defer(() => clearInterval(chatter));
    await expectCloseTimeout(scene, socket, port, from, by, read);
    // They reached the application while the connection was CLOSING (1: the `!close` itself).
    expect((await scene.server.state()).delivered['/ws/echo']! - delivered - 1).toBeGreaterThan(10);
  });
});
