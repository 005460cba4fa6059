/**
 * The benchmark harness itself works (bench/run.mjs): a small run, N = 200 and two contenders,
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

describe('bench/run.mjs', () => {
  let dir: string;
  let output = '';
  let code: number | null = null;
  const cleanup = useCleanup('all');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wsh-bench-'));
    cleanup.defer(() => rmSync(dir, { recursive: true, force: true }));
    const args = [
      'bench/run.mjs',
      ...['--connections', String(N), '--contenders', 'ws-heartbeat,none'],
      ...['--interval', String(INTERVAL), '--timeout', String(TIMEOUT), '--window', '10', '--cpu-window', '5'],
      ...['--out', join(dir, 'results.json'), '--markdown', join(dir, 'BENCHMARKS.md')],
    ];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk: Buffer) => (output += chunk));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk));
    code = await new Promise((resolve) => child.once('exit', resolve));
  }, ms(120_000));


  const results = () => JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as { machine: { node: string }; runs: Run[] };
  const run = (contender: string) => results().runs.find((r) => r.contender === contender)!;

  it('runs every phase and exits 0', () => {
    if (code !== 0) throw new Error(`bench exited ${code}:\n${output}`);
    expect(results().machine.node).toBe(process.version);
    // none first: the others are reported above it.
    expect(results().runs.map((r) => r.contender)).toEqual(['none', 'ws-heartbeat']);
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
    // The floor is the floor: its own figures above itself are zero, and it detects nothing.
    expect(run('none')).toMatchObject({ cpuMsPerInterval: 0, heapBytesPerConnection: 0, detectionMs: null, boundMs: null, detected: 0 });
  });

  it('ours closed no healthy peer outside the stall phase (the count is also in the table and the summary line)', () => {
    const ours = run('ws-heartbeat');
    expect({ closes: ours.unexpectedCloses, reasons: ours.unexpectedCloseReasons }).toEqual({ closes: 0, reasons: {} });
    expect(output).toMatch(/^- ws-heartbeat N=200: healthy peers closed outside the stall 0;/m);
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
    const markdown = readFileSync(join(dir, 'BENCHMARKS.md'), 'utf8');
    expect(markdown).toMatch(/^\| none \|/m);
    expect(markdown).toMatch(/^\| \*\*ws-heartbeat\*\* \|/m);
    expect(markdown).toMatch(/^\| 200 \| none \|/m);
    expect(markdown).toContain('## Targets');
  });
});
