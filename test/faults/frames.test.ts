/**
 * Fault suite: frames a well-behaved client never sends. Each ends only the connection that sent
 * it, the way `ws` ends it, and never the server: a ping flood is cut off by `ws`'s limit of
 * unanswered automatic pongs; a frame that breaks RFC 6455 gets a close frame 1002 (1007 for bad
 * UTF-8); a decompression bomb gets 1009 before it costs memory or reaches the application. A
 * legal 125-byte ping is answered with its own payload. Bystanders are checked by nothingLost.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { constants, deflateRawSync } from 'node:zlib';
import { closePayload, maskedFrame, OPCODE } from '../helpers/clients';
import { useCleanup } from '../helpers/cleanup';
import { INTERVAL, ms } from '../helpers/time';
import { ADAPTERS, BYSTANDERS, openScene, rawPeer, readFrames, until, type Scene } from './support';

const MiB = 1024 * 1024;

/** A masked frame whose first byte (FIN, RSV1-3, opcode) is `byte0`, whatever it says. */
function frame(byte0: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const bytes = maskedFrame(OPCODE.binary, payload);
  bytes[0] = byte0;
  return bytes;
}

/** The connection of `port` is gone on the server and the engine tracks only the bystanders. */
async function expectFreed(scene: Scene, port: number): Promise<void> {
  await scene.server.next('gone', (e) => e.remotePort === port, ms(2000));
  expect((await scene.server.state()).size).toBe(BYSTANDERS);
}

const FIN = 0x80;
const INVALID: Array<{ what: string; bytes: Buffer; code: number }> = [
  { what: 'a ping with a 126-byte payload (control frames carry at most 125)', bytes: frame(FIN | OPCODE.ping, Buffer.alloc(126)), code: 1002 },
  { what: 'a fragmented ping (FIN clear)', bytes: frame(OPCODE.ping, 'x'), code: 1002 },
  { what: 'RSV1 set without an extension', bytes: frame(FIN | 0x40 | OPCODE.text, 'x'), code: 1002 },
  { what: 'RSV2 set', bytes: frame(FIN | 0x20 | OPCODE.text, 'x'), code: 1002 },
  { what: 'RSV3 set', bytes: frame(FIN | 0x10 | OPCODE.text, 'x'), code: 1002 },
  { what: 'reserved opcode 0x3', bytes: frame(FIN | 0x3, 'x'), code: 1002 },
  { what: 'reserved opcode 0xB', bytes: frame(FIN | 0xb, 'x'), code: 1002 },
  { what: 'a close frame with a 1-byte payload', bytes: frame(FIN | OPCODE.close, Buffer.from([0x03])), code: 1002 },
  { what: 'close code 999', bytes: maskedFrame(OPCODE.close, closePayload(999)), code: 1002 },
  { what: 'close code 1005', bytes: maskedFrame(OPCODE.close, closePayload(1005)), code: 1002 },
  { what: 'close code 1006', bytes: maskedFrame(OPCODE.close, closePayload(1006)), code: 1002 },
  { what: 'close code 5000', bytes: maskedFrame(OPCODE.close, closePayload(5000)), code: 1002 },
  { what: 'bad UTF-8 in a close reason', bytes: maskedFrame(OPCODE.close, Buffer.concat([closePayload(1000), Buffer.from([0xc3, 0x28])])), code: 1007 },
];

/**
 * 128 MiB of zeros, deflated as permessage-deflate sends a message (sync flush, tail removed).
 * Made once before any scene opens: deflating takes this process up to a second, and a test
 * process that stalls inside a scene cannot answer its bystanders' pings.
 */
let bomb: Buffer;
beforeAll(() => {
  bomb = deflateRawSync(Buffer.alloc(128 * MiB), { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4);
});

const cleanup = useCleanup();
describe.each(ADAPTERS)('%s', (adapter) => {
  it('a ping flood (10,000 pings in one write) ends that connection, at once, by ws’s limit on unsent pongs (1006)', async () => {
    const scene = await openScene(cleanup, adapter);
    const { socket, port } = await rawPeer(scene);
    const read = readFrames(socket);
    const flood = Buffer.concat(Array.from({ length: 10_000 }, () => maskedFrame(OPCODE.ping)));
    const floodedAt = scene.inject();
    socket.write(flood);
    const gone = await scene.server.next('gone', (e) => e.remotePort === port, ms(2000));
    expect(gone.code).toBe(1006); // terminated: no close frame
    // At once: well before the heartbeat could end it (interval + timeout after the flood).
    expect(gone.at - floodedAt).toBeLessThan(INTERVAL);
    await until(() => read.closedAt !== null, ms(2000), 'the flooder to see the server close');
    // ws 8.23 answers at most maxPendingAutoPongs (60) pings whose pongs are not yet written.
    expect(read.frames.filter((f) => f.opcode === OPCODE.pong).length).toBeLessThanOrEqual(60);
    expect((await scene.server.state()).size).toBe(BYSTANDERS);
  });

  it.each(INVALID)('$what: the server closes that connection with $code', async ({ bytes, code }) => {
    const scene = await openScene(cleanup, adapter);
    const { socket, port } = await rawPeer(scene);
    const read = readFrames(socket);
    scene.inject();
    socket.write(bytes);
    await until(() => read.closeCode() !== undefined, ms(2000), "the server's close frame");
    expect(read.closeCode()).toBe(code);
    socket.end();
    await expectFreed(scene, port);
  });

  it('a 125-byte ping is answered with a pong carrying the same payload', async () => {
    const scene = await openScene(cleanup, adapter);
    const { socket } = await rawPeer(scene);
    const read = readFrames(socket);
    const payload = randomBytes(125);
    scene.inject();
    socket.write(maskedFrame(OPCODE.ping, payload));
    await until(() => read.frames.some((f) => f.opcode === OPCODE.pong), ms(2000), 'the pong');
    const pong = read.frames.find((f) => f.opcode === OPCODE.pong)!;
    expect(pong.fin).toBe(true);
    expect(pong.payload).toEqual(payload);
  });

  it('a decompression bomb (128 MiB of zeros) over maxPayload on /ws/deflate is closed with 1009: nothing delivered, memory growth under 20 MiB', async () => {
    const scene = await openScene(cleanup, adapter);
    const peer = await scene.peer('/ws/deflate', { perMessageDeflate: true });
    expect(peer.ws.extensions).toContain('permessage-deflate');
    const compressed = frame(FIN | 0x40 /* RSV1: compressed */ | OPCODE.binary, bomb);
    const before = (await scene.server.state()).delivered['/ws/deflate'];
    const start = await scene.server.command<number>({ cmd: 'peakStart' });
    scene.inject();
    (peer.ws as unknown as { _socket: Socket })._socket.write(compressed);
    await until(() => peer.closed !== null, ms(3000), 'the server to close the bomb’s connection');
    const peak = await scene.server.command<number>({ cmd: 'peakStop' });
    expect(peer.closed!.code).toBe(1009);
    expect((await scene.server.state()).delivered['/ws/deflate']).toBe(before);
    expect(peak - start).toBeLessThan(20 * MiB);
    await expectFreed(scene, peer.port);
  });
});
