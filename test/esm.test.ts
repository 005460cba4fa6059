/**
 * The ES-module builds as Node loads them (the test command builds them first): a consumer's
 * `import` of each package with an ESM entry gets working exports. The type check of
 * test/esm/consumer.mts cannot see this: a sibling imported without its `.js` extension
 * type-checks, and fails only when Node loads it.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = path.join(__dirname, '..');

/** Runs `source` as an ES module in a fresh Node process at the repository root; returns what it printed. */
function runModule(source: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', source], { cwd: root, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout.trim(), stderr: result.stderr };
}

describe('ES-module builds', () => {
  test('@ws-heartbeat/client: its classes and functions work, its shared wire format included', () => {
    const { status, stdout, stderr } = runModule(`
      const client = await import('@ws-heartbeat/client');
      console.log(JSON.stringify([typeof client.HeartbeatClient, client.retryHint(1012, 'Server restarting, retry within 250 ms'), client.backoffDelay(3, { minDelay: 100, maxDelay: 10000, factor: 2, maxRetries: 5, resetAfter: 1 }, () => 1), client.CLOSED]));
    `);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(JSON.parse(stdout)).toEqual(['function', 250, 400, 3]);
  });

  test('@ws-heartbeat/protocol: a pong it formats parses back', () => {
    const { status, stdout, stderr } = runModule(`
      const { formatAppPong, parseAppPong } = await import('@ws-heartbeat/protocol');
      console.log(JSON.stringify(parseAppPong(formatAppPong({ interval: 3, timeout: 4 }))));
    `);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ interval: 3, timeout: 4 });
  });

  test('@ws-heartbeat/fastify: the default and the named export are the plugin', () => {
    const { status, stdout, stderr } = runModule(`
      const plugin = await import('@ws-heartbeat/fastify');
      console.log(JSON.stringify([typeof plugin.default, plugin.default === plugin.wsHeartbeat]));
    `);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(JSON.parse(stdout)).toEqual(['function', true]);
  });
});
