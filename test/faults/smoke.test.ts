import { ADAPTERS, echo, useScenes } from './support';

const scenes = useScenes();
describe.each(ADAPTERS)('%s', (adapter) => {
  it('a scene with nothing wrong loses nothing', async () => {
    const scene = await scenes.open(adapter);
    const peer = await scene.peer('/ws/echo');
    await echo(peer, 'hello');
  });
});
