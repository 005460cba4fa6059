/**
 * The benchmark harness itself works (bench/run.mjs): a small run, N = 200 and three contenders (ours, none, floor),
 * through every phase and into the results file and the Markdown report. Speed is not asserted
 * here (that is what the benchmark reports); what the harness measured must be complete and
 * consistent with what it set up.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useCleanup } from './helpers/cleanup';
import { EPSILON, ms } from './helpers/time';

const ROOT = join(__dirname, '..');
const N = 200;
const INTERVAL = ms(300);
const TIMEOUT = ms(200);

interface Run {
  contender: string;
  connections: number;
  interval: number;
  timeout: number;
  probeRttP50Ms: number;
  probeRttP99Ms: number;
  probeRttMaxMs: number;
  probeSamples: number;
  cpuMsPerInterval: number | null;
  heapBytesPerConnection: number | null;
  detectionMs: { min: number; median: number; max: number } | null;
  detected: number;
  silentPeers: number;
  boundMs: number | null;
  falseTerminations: number;
  stallTrigger: string;
  unexpectedCloses: number;
  unexpectedCloseReasons: Record<string, number>;
}

/** Runs a bench script (`args[0]`, from the repository root); resolves with its exit code and all it printed. */
async function runScript(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { code, output };
}

interface BenchRun {
  /** Its exit code and all it printed, once the describe's beforeAll ran it. */
  code: number | null;
  output: string;
  /** A file of the temp folder its results go to. */
  file(name: string): string;
}

/** Runs a bench script once for the describe it is called in (beforeAll), its results into a temp folder removed afterwards. */
function useBenchRun(prefix: string, args: (file: (name: string) => string) => string[]): BenchRun {
  let dir = '';
  const run: BenchRun = { code: null, output: '', file: (name) => join(dir, name) };
  const cleanup = useCleanup('all');
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), prefix));
    cleanup.defer(() => rmSync(dir, { recursive: true, force: true }));
    Object.assign(run, await runScript(args(run.file)));
  }, ms(120_000));
  return run;
}

describe('bench/run.mjs', () => {
  const bench = useBenchRun('wsh-bench-', (file) => [
    'bench/run.mjs',
    ...['--connections', String(N), '--contenders', 'ws-heartbeat,none,floor'],
    ...['--interval', String(INTERVAL), '--timeout', String(TIMEOUT), '--window', '10', '--cpu-window', '5'],
    ...['--out', file('results.json'), '--markdown', file('BENCHMARKS.md')],
  ]);

  const results = () => JSON.parse(readFileSync(bench.file('results.json'), 'utf8')) as { machine: { node: string }; runs: Run[] };
  const run = (contender: string) => results().runs.find((r) => r.contender === contender)!;

  it('runs every phase and exits 0', () => {
    if (bench.code !== 0) throw new Error(`bench exited ${bench.code}:\n${bench.output}`);
    expect(results().machine.node).toBe(process.version);
    // none first: the others are reported above it.
    expect(results().runs.map((r) => r.contender)).toEqual(['none', 'ws-heartbeat', 'floor']);
  });

  it('reports every figure the results file promises, for each contender', () => {
    for (const r of results().runs) {
      expect(r).toMatchObject({ connections: N, interval: INTERVAL, timeout: TIMEOUT, silentPeers: N * 0.05 });
      expect(r.probeSamples).toBeGreaterThan(0);
      expect(r.probeRttP50Ms).toBeGreaterThan(0);
      expect(r.probeRttP50Ms).toBeLessThanOrEqual(r.probeRttP99Ms);
      expect(r.probeRttP99Ms).toBeLessThanOrEqual(r.probeRttMaxMs);
      // Figures above the floor's (noise can make them negative at this size), but never NaN or missing.
      expect(Number.isFinite(r.cpuMsPerInterval)).toBe(true);
      expect(Number.isFinite(r.heapBytesPerConnection)).toBe(true);
      expect(r.falseTerminations).toBe(0);
    }
    // none is the baseline: its own figures above itself are zero, and it detects nothing.
    expect(run('none')).toMatchObject({ cpuMsPerInterval: 0, heapBytesPerConnection: 0, detectionMs: null, boundMs: null, detected: 0 });
    // floor pings (its busy-wait started right after one of its ticks) and judges nobody.
    expect(run('floor')).toMatchObject({ detectionMs: null, boundMs: null, detected: 0, stallTrigger: 'heartbeat', unexpectedCloses: 0 });
  });

  it('ours closed no healthy peer outside the stall phase (the count is also in the table and the summary line)', () => {
    const ours = run('ws-heartbeat');
    expect({ closes: ours.unexpectedCloses, reasons: ours.unexpectedCloseReasons }).toEqual({ closes: 0, reasons: {} });
    expect(bench.output).toMatch(/^- ws-heartbeat N=200: healthy peers closed outside the stall 0;/m);
  });

  it('times every silent peer from its last frame to the server closing it', () => {
    const ours = run('ws-heartbeat');
    expect(ours.detected).toBe(ours.silentPeers);
    expect(ours.boundMs).toBe(INTERVAL + TIMEOUT + 5);
    // Never earlier than interval + timeout after the last frame, as the engine promises.
    expect(ours.detectionMs!.min).toBeGreaterThanOrEqual(INTERVAL + TIMEOUT - EPSILON);
    expect(ours.detectionMs!.min).toBeLessThanOrEqual(ours.detectionMs!.median);
    expect(ours.detectionMs!.median).toBeLessThanOrEqual(ours.detectionMs!.max);
    // The busy-wait started right after one of the engine's pings, not on the fallback timer.
    expect(ours.stallTrigger).toBe('heartbeat');
  });

  it('writes the Markdown report with both contenders and the ratios', () => {
    const markdown = readFileSync(bench.file('BENCHMARKS.md'), 'utf8');
    expect(markdown).toMatch(/^\| none \|/m);
    expect(markdown).toMatch(/^\| \*\*ws-heartbeat\*\* \|/m);
    expect(markdown).toMatch(/^\| 200 \| none \|/m);
    expect(markdown).toMatch(/^\| 200 \| floor \|/m);
    expect(markdown).toContain('## Targets');
  });
});

interface Latency {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

interface ClusterRun {
  mode: 'floor' | 'off' | 'on';
  connections: number;
  cpuMsPerInterval: number;
  probeSamples: number;
  probeRttP50Ms: number;
  probeRttP99Ms: number;
  probeRttMaxMs: number;
  healthyCloses: number;
  healthyClosesSeenByClients: number;
  presence?: { onlineKeys: number; expectedKeys: number; connectionsHeld: number; consistent: boolean };
  memory?: { usedMemoryPerConnection: number; keysBytesPerConnection: number };
  steady?: { clientCommandsPerNodePerInterval: number; callsByCommand: Record<string, number> };
  joinsWhileOpening?: Latency;
  joinBatch?: Latency;
  leaveBatch?: Latency;
  isOnline?: Latency & { rejected: number; wrong: number };
  commands?: Record<string, { sent: number; timedOut: number; failed: number }>;
}

/**
 * The cluster benchmark's harness (bench/cluster.mjs): its own redis-server, three nodes in each
 * configuration, N = 30, one round, windows of a few intervals, without the idle-node phase (about
 * 12 s): every phase runs and every figure is there and consistent with what it set up.
 */
describe('bench/cluster.mjs', () => {
  const CLUSTER_N = 30;
  const CALLS = 20;
  const bench = useBenchRun('wsh-bench-cluster-', (file) => [
    'bench/cluster.mjs',
    ...['--connections', String(CLUSTER_N), '--rounds', '1', '--calls', String(CALLS)],
    ...['--interval', String(INTERVAL), '--timeout', String(TIMEOUT), '--cpu-window', '3', '--window', '3', '--idle-window', '0', '--warmup', '0', '--memory-readings', '1'],
    ...['--out', file('cluster.json'), '--markdown', file('cluster.md')],
  ]);

  const results = () => JSON.parse(readFileSync(bench.file('cluster.json'), 'utf8')) as { runs: ClusterRun[] };
  const on = () => results().runs.find((r) => r.mode === 'on')!;

  it('runs every configuration and exits 0', () => {
    if (bench.code !== 0) throw new Error(`bench exited ${bench.code}:\n${bench.output}`);
    expect(results().runs.map((r) => r.mode)).toEqual(['floor', 'off', 'on']);
  });

  it('measures CPU and the probe in every configuration, and no healthy peer was closed', () => {
    for (const r of results().runs) {
      expect(r.connections).toBe(CLUSTER_N);
      expect(r.cpuMsPerInterval).toBeGreaterThan(0);
      expect(r.probeSamples).toBeGreaterThan(0);
      expect(r.probeRttP50Ms).toBeLessThanOrEqual(r.probeRttP99Ms);
      expect(r.probeRttP99Ms).toBeLessThanOrEqual(r.probeRttMaxMs);
      expect({ mode: r.mode, server: r.healthyCloses, clients: r.healthyClosesSeenByClients }).toEqual({ mode: r.mode, server: 0, clients: 0 });
    }
  });

  it('finds in Redis exactly the presence the connections joined, and its memory', () => {
    // Connection i joins user:<i>, every tenth one its neighbour's key (bench/cluster-layout.mjs).
    expect(on().presence).toMatchObject({ onlineKeys: 27, expectedKeys: 27, connectionsHeld: CLUSTER_N, consistent: true });
    expect(on().memory!.keysBytesPerConnection).toBeGreaterThan(0);
    expect(Number.isFinite(on().memory!.usedMemoryPerConnection)).toBe(true);
  });

  it('counts one script per node per interval in steady state, and names every command the nodes sent', () => {
    const { steady, commands } = on();
    expect(steady!.clientCommandsPerNodePerInterval).toBeGreaterThan(0.5);
    expect(steady!.clientCommandsPerNodePerInterval).toBeLessThan(1.5);
    expect(steady!.callsByCommand.evalsha).toBeGreaterThan(0);
    // The plugin's joins and the batch's joins and leaves, each one CHANGE script.
    expect(commands!['script change']!.sent).toBeGreaterThanOrEqual(CLUSTER_N + 2 * CALLS);
    for (const [kind, entry] of Object.entries(commands!)) expect({ kind, timedOut: entry.timedOut, failed: entry.failed }).toEqual({ kind, timedOut: 0, failed: 0 });
  });

  it('times every join, leave and isOnline, and isOnline answers right', () => {
    const run = on();
    expect(run.joinsWhileOpening!.count).toBe(CLUSTER_N);
    expect(run.joinBatch!.count).toBe(CALLS);
    expect(run.leaveBatch!.count).toBe(CALLS);
    expect(run.isOnline).toMatchObject({ count: CALLS, rejected: 0, wrong: 0 });
    for (const latency of [run.joinsWhileOpening!, run.joinBatch!, run.isOnline!]) {
      expect(latency.p50).toBeGreaterThan(0);
      expect(latency.p50).toBeLessThanOrEqual(latency.p99);
    }
  });

  it('writes the Markdown tables, the targets and what went wrong in each run', () => {
    const markdown = readFileSync(bench.file('cluster.md'), 'utf8');
    expect(markdown).toMatch(/^\| 30 \| \*\*on\*\* \| 1 \|/m);
    expect(markdown).toContain('## Targets');
    expect(bench.output).toMatch(/^- on N=30 round 1: healthy peers closed 0; cluster commands timed out 0, failed 0; isOnline rejected 0, wrong 0;/m);
  });
});

describe('bench/run.mjs --runtime', () => {
  const bench = useBenchRun('wsh-bench-runtime-', (file) => [
    'bench/run.mjs',
    ...['--runtime', 'bun', '--connections', String(N), '--contenders', 'ws-heartbeat,none'],
    ...['--interval', String(INTERVAL), '--timeout', String(TIMEOUT), '--window', '10', '--cpu-window', '5'],
    ...['--out', file('results.json'), '--markdown', file('BENCHMARKS.md')],
  ]);

  const results = () => JSON.parse(readFileSync(bench.file('results.json'), 'utf8')) as { runs: Array<Run & { runtime: string }> };

  it('runs the servers under the runtime asked for, through every phase, and exits 0', () => {
    if (bench.code !== 0) throw new Error(`bench exited ${bench.code}:\n${bench.output}`);
    expect(results().runs.map((r) => [r.runtime, r.contender])).toEqual([
      ['bun 1.4.5', 'none'],
      ['bun 1.4.5', 'ws-heartbeat'],
    ]);
  });

  it('measures ours against none under that runtime: CPU from /proc, every silent peer detected, no healthy peer closed', () => {
    const ours = results().runs.find((r) => r.contender === 'ws-heartbeat')!;
    expect(ours.cpuMsPerInterval).not.toBeNull();
    expect(ours.probeSamples).toBeGreaterThan(0);
    expect(ours.detected).toBe(ours.silentPeers);
    expect(ours.detectionMs!.min).toBeGreaterThanOrEqual(INTERVAL + TIMEOUT - EPSILON - 5);
    expect(ours.falseTerminations).toBe(0);
    expect(ours.unexpectedCloses).toBe(0);
  });

  it('writes the Runtimes section of the Markdown report, with what went wrong in its own columns', () => {
    const markdown = readFileSync(bench.file('BENCHMARKS.md'), 'utf8');
    expect(markdown).toContain('## Runtimes');
    expect(markdown).toContain('| bun 1.4.5 | **ws-heartbeat** |');
    expect(markdown).toContain('false terminations');
    expect(markdown).toContain('healthy peers closed outside the stall');
  });
});
