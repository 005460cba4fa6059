import { useCleanup } from '../helpers/cleanup';
import { ADAPTERS, echo, openScene } from './support';

const cleanup = useCleanup();
describe.each(ADAPTERS)('%s', (adapter) => {
  it('a scene with nothing wrong loses nothing', async () => {
    const scene = await openScene(cleanup, adapter);
    const peer = await scene.peer('/ws/echo');
    await echo(peer, 'hello');
    expect(peer.closed).toBeNull();
    expect(scene.server.of('terminate')).toEqual([]);
    // The check every scenario ends with, run here so that its expectations are this test's: every
    // bystander pinged and echoing, the engine empty once they closed, the listeners as found, and
    // the server process exited by itself with code 0 and no fault.
    await scene.nothingLost();
    expect(scene.server.faults()).toEqual([]);
    expect(scene.server.exit).toMatchObject({ code: 0, signal: null });
  });
});
