#!/usr/bin/env node
// The benchmark: every contender, side by side, under the same client load, in one run.
//
//   pnpm bench                 quick: N = 1,000 → bench/results/quick.json, table on stdout
//   pnpm bench -- --full       N = 1,000, 5,000, 10,000, 19,000 → bench/results/latest.json and BENCHMARKS.md
//   pnpm bench -- --runtime all       the servers under each runtime (node20, node22, node24, bun;
//                              or a list of them): none, ws-readme and ours at N = 5,000 and 19,000
//                              → bench/results/runtimes.json and the "Runtimes" section of BENCHMARKS.md
//
// For each N and contender: a server process (--expose-gc), load processes of at most 10,000
// connections each (the open-file limit is 20,000 per process), and a probe process. Phases:
// open N connections in batches → settle → server CPU over a quiet window → probe RTT window →
// heap after gc → 5% of the peers go silent at known times (detection) → the server busy-waits for
// 3 × (I + T) right after a heartbeat frame (false terminations).
import { fork, execSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { contenders } from './contenders.mjs';
import { nowMs, ready, request, round, sleep, spread } from './lib.mjs';
import { renderMarkdown, renderRuntimes, renderSummary, renderTable, writeBenchmarks, writeRuntimes } from './report.mjs';
import { ensureRuntimes, runtimes } from '../scripts/runtimes.mjs';
import { joinTrace } from './trace.mjs';
import { renderProfile, summarize } from './profile.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((arg) => arg !== '--'),
  options: {
    full: { type: 'boolean', default: false },
    connections: { type: 'string' },
    contenders: { type: 'string' },
    interval: { type: 'string', default: '1000' },
    timeout: { type: 'string', default: '500' },
    window: { type: 'string', default: '20' },
    'cpu-window': { type: 'string', default: '10' },
    out: { type: 'string' },
    markdown: { type: 'string' },
    // A load process must answer pings in time, also while it still opens connections: the
    // answers of those already open wait for each batch's handshakes. At 10,000 connections and
    // batches of 500 its event loop stalled for ~950 ms. With batches of 100 it still stalled for
    // 300-640 ms at N = 19,000 (four load processes beside the server on two cores), longer than
    // the timeout in some runs: those runs lost healthy peers to the load generator, not to the
    // contender (--trace showed each one's ping received 300+ ms after it was written). Batches of
    // 20 keep it near 100 ms, for about two more seconds of opening.
    'per-process': { type: 'string', default: '5000' },
    batch: { type: 'string', default: '20' },
    // Instrumentation (trace.mjs): who was late for every healthy peer that was closed.
    trace: { type: 'boolean', default: false },
    // The servers under other runtimes (scripts/runtimes.mjs): a list of names, or all.
    runtime: { type: 'string' },
    // V8's sampling profiler in the server over the quiet CPU window: a .cpuprofile per run in
    // bench/results/profiles/, and its top frames in the results (profile.mjs). The profiler's own
    // cost inflates that run's CPU figures.
    profile: { type: 'boolean', default: false },
  },
});

const interval = Number(args.interval);
const timeout = Number(args.timeout);
const windowIntervals = Number(args.window);
const cpuIntervals = Number(args['cpu-window']);
const perProcess = Number(args['per-process']);
const batch = Number(args.batch);
const byRuntime = args.runtime !== undefined;
const counts = (args.connections ?? (byRuntime ? '5000,19000' : args.full ? '1000,5000,10000,19000' : '1000')).split(',').map(Number);
const names = (args.contenders ?? (byRuntime ? 'none,ws-readme,ws-heartbeat' : Object.keys(contenders).join(','))).split(',');
const out = args.out ?? join(here, 'results', byRuntime ? 'runtimes.json' : args.full ? 'latest.json' : 'quick.json');
const markdown = args.markdown ?? (args.full || byRuntime ? join(root, 'BENCHMARKS.md') : undefined);
// Without --runtime, the server runs under the Node that runs this script, as it always has.
const serverRuntimes = byRuntime ? pickRuntimes(args.runtime) : [{ name: 'host', bin: process.execPath, version: process.versions.node }];

function pickRuntimes(list) {
  if (!ensureRuntimes()) throw new Error('the pinned runtimes could not be installed (scripts/runtimes.mjs)');
  const all = runtimes();
  if (list === 'all') return all;
  return list.split(',').map((name) => {
    const found = all.find((r) => r.name === name);
    if (!found) throw new Error(`Unknown runtime "${name}": one of ${all.map((r) => r.name).join(', ')}, or all`);
    return found;
  });
}

/**
 * CPU seconds a process has used, from /proc (utime + stime, in clock ticks): the same measure
 * under every runtime. Bun's process.cpuUsage() reports no user time.
 */
const CLOCK_TICK_MS = 1000 / Number(execSync('getconf CLK_TCK').toString().trim());
function procCpu(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat(5), counted from the state letter, which is field 3.
  const user = Number(fields[11]) * CLOCK_TICK_MS;
  const system = Number(fields[12]) * CLOCK_TICK_MS;
  return { ms: user + system, userMs: user, at: nowMs() };
}

for (const name of names) if (!contenders[name]) throw new Error(`Unknown contender "${name}": one of ${Object.keys(contenders).join(', ')}`);
for (const n of counts) if (!(n > 0 && n <= 19_000)) throw new Error(`Connections must be 1…19,000 (the open-file limit is 20,000 per process): got ${n}`);
// none runs first at each N: the others' CPU and heap are reported above it.
names.sort((a, b) => (a === 'none' ? -1 : b === 'none' ? 1 : 0));

const log = (...parts) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...parts);

function start(file, config, execArgv = []) {
  return fork(join(here, file), [JSON.stringify(config)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  request(child, 'exit', {}, 5000).catch(() => {});
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Runs one contender at N connections and returns its raw figures. */
async function runOne(name, connections, runtime) {
  const contender = contenders[name];
  const bound = contender.bound({ interval, timeout });
  const children = [];
  try {
    // BENCH_SERVER_FLAGS adds Node flags to the server process, e.g. "--cpu-prof" to profile it.
    const flags = (process.env.BENCH_SERVER_FLAGS ?? '').split(' ').filter(Boolean);
    const server = fork(join(here, 'server.mjs'), [JSON.stringify({ contender: name, interval, timeout, trace: args.trace })], {
      execPath: runtime.bin,
      execArgv: ['--expose-gc', ...flags],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(server);
    const { port, heapBytes: heapBefore } = await ready(server, `${name} server`);
    const url = `${contender.client === 'socket.io' ? 'http' : 'ws'}://127.0.0.1:${port}`;

    // Connections, 5% of them silent later, spread over load processes of ≤ perProcess each.
    const silentCount = Math.max(1, Math.round(connections * 0.05));
    const processes = Math.ceil(connections / perProcess);
    const loads = [];
    for (let p = 0; p < processes; p++) {
      const share = Math.floor(connections / processes) + (p < connections % processes ? 1 : 0);
      const silent = [];
      for (let id = p; id < silentCount; id += processes) silent.push(String(id));
      loads.push(start('clients.mjs', { url, client: contender.client, healthy: share - silent.length, silent, batch, interval, timeout, trace: args.trace }));
    }
    children.push(...loads);
    const opened = await Promise.all(loads.map((load, i) => ready(load, `load ${i}`)));
    const failed = opened.reduce((sum, o) => sum + o.failed, 0);
    if (failed > 0) throw new Error(`${failed} of ${connections} connections failed to open`);
    log(`${name} N=${connections}: ${connections} connections open; load processes' event-loop delay while opening max ${opened.map((o) => o.lagMaxMs.toFixed(0)).join(', ')} ms`);

    // Settle: every connection has had its first heartbeat rounds.
    await sleep(2 * (interval + timeout));

    // Heartbeat CPU: a quiet window (no probe), so the difference to `none` is the heartbeat's.
    const cpu = () => (byRuntime ? procCpu(server.pid) : request(server, 'cpu'));
    const profilePath = args.profile ? join(here, 'results', 'profiles', `${name}-${connections}${byRuntime ? `-${runtime.name}` : ''}.cpuprofile`) : undefined;
    if (profilePath) await request(server, 'profileStart');
    const cpuStart = await cpu();
    await sleep(cpuIntervals * interval);
    const cpuEnd = await cpu();
    let profile;
    if (profilePath) {
      mkdirSync(dirname(profilePath), { recursive: true });
      await request(server, 'profileStop', { path: profilePath });
      const summary = summarize(JSON.parse(readFileSync(profilePath, 'utf8')));
      profile = { file: relative(root, profilePath), busyMs: round(summary.busyMs, 0), owners: summary.owners, top: summary.frames.slice(0, 20) };
      log(`${name} N=${connections}: profile ${relative(process.cwd(), profilePath)}\n${renderProfile(`${name} N=${connections}`, summary)}`);
    }
    const cpuIntervalsSeen = (cpuEnd.at - cpuStart.at) / interval;
    const cpuMsPerInterval = (cpuEnd.ms - cpuStart.ms) / cpuIntervalsSeen;
    const cpuUserMsPerInterval = (cpuEnd.userMs - cpuStart.userMs) / cpuIntervalsSeen;

    // Stalls as a client sees them: the probe's echo RTT, same client load for everyone.
    const probe = start('probe.mjs', { url, client: contender.client });
    children.push(probe);
    await ready(probe, 'probe');
    await request(probe, 'start');
    await sleep(windowIntervals * interval);
    const rtt = await request(probe, 'stop');
    await stop(probe);

    const heapAfter = await request(server, 'heap');
    const heapBytesPerConnection = (heapAfter.bytes - heapBefore) / connections;
    log(`${name} N=${connections}: probe p99 ${rtt.p99?.toFixed(2)} ms, max ${rtt.max?.toFixed(1)} ms; cpu ${cpuMsPerInterval.toFixed(2)} ms/interval (user ${cpuUserMsPerInterval.toFixed(2)}); heap ${heapBytesPerConnection.toFixed(0)} B/conn`);

    // Detection: silent peer k stops at base + k·I/K, so the silences cover every phase of an interval.
    // base is two rounds after the heap figure: a pong written during those forced full GCs is read
    // only after them, and would add the GC pause to that peer's detection time.
    let detection = null;
    if (bound !== null) {
      const base = nowMs() + 2 * (interval + timeout);
      const at = {};
      for (let k = 0; k < silentCount; k++) at[k] = base + (k * interval) / silentCount;
      await Promise.all(
        loads.map((load, p) => {
          const mine = {};
          for (let k = p; k < silentCount; k += processes) mine[k] = at[k];
          return request(load, 'silence', { at: mine });
        }),
      );
      // Wait for every silent peer to be closed, up to twice the bound after the last silence,
      // plus the 30 s `ws` waits for a close handshake (the npm package close()s instead of
      // terminating, and a hung peer never answers).
      const deadline = base + interval + 2 * bound + (contender.client === 'npm' ? 31_000 : 0) + 1000;
      let closes;
      do {
        await sleep(250);
        closes = await request(server, 'closes');
      } while (Object.keys(closes.silentClosedAt).length < silentCount && nowMs() < deadline);
      const frames = await Promise.all(loads.map((load) => request(load, 'lastFrames')));
      const lastFrameAt = Object.assign({}, ...frames.map((f) => f.lastFrameAt));
      const times = Object.entries(closes.silentClosedAt).map(([id, closedAt]) => closedAt - lastFrameAt[id]);
      detection = { ms: spread(times), detected: times.length, silent: silentCount };
      log(`${name} N=${connections}: detected ${times.length}/${silentCount}, ${JSON.stringify(detection.ms && mapValues(detection.ms, (v) => round(v, 1)))} (bound ${bound} ms)`);
    }

    // False terminations: a busy-wait of 3 × (I + T) while heartbeat answers are in flight.
    const before = await request(server, 'closes');
    // Every healthy peer closed so far was closed outside the stall phase: none should have been.
    let trace;
    if (args.trace) {
      const serverTrace = await request(server, 'trace');
      const ports = serverTrace.closed.map((closed) => closed.port);
      trace = joinTrace(serverTrace, await Promise.all(loads.map((load) => request(load, 'trace', { ports }))));
      if (trace.closed.length > 0) log(`${name} N=${connections}: trace of ${trace.closed.length} healthy peers closed: ${JSON.stringify(trace.closed.slice(0, 5))}`);
    }
    // The reply comes after the fallback (at most) and the stall: minutes at a 30 s interval.
    const stallMs = 3 * (interval + timeout);
    const stall = await request(server, 'stall', { ms: stallMs, fallbackMs: 2 * interval }, 2 * interval + stallMs + 30_000);
    await sleep(2 * (interval + timeout) + 500);
    const after = await request(server, 'closes');
    const falseTerminations = after.healthyCloses - before.healthyCloses;
    const closeReasons = mapValues(after.healthyCloseReasons, (count, reason) => count - (before.healthyCloseReasons[reason] ?? 0));
    const loadCloses = await Promise.all(loads.map((load) => request(load, 'closes')));
    // The load processes' worst event-loop delay after they opened their connections: above the
    // timeout, the load generator itself would have made healthy peers look dead.
    const loadLagMaxMs = Math.max(...loadCloses.map((c) => c.lagMaxMs));
    log(`${name} N=${connections}: stall ${(stall.end - stall.start).toFixed(0)} ms after a ${stall.trigger}: ${falseTerminations} healthy peers terminated`);

    return {
      contender: name,
      ...(byRuntime ? { runtime: `${runtime.name} ${runtime.version}` } : {}),
      connections,
      interval,
      timeout,
      probeRttP50Ms: round(rtt.p50),
      probeRttP99Ms: round(rtt.p99),
      probeRttMaxMs: round(rtt.max),
      probeSamples: rtt.samples,
      probeLost: rtt.lost,
      cpuMsPerIntervalRaw: round(cpuMsPerInterval),
      cpuUserMsPerIntervalRaw: round(cpuUserMsPerInterval),
      heapBytesPerConnectionRaw: Math.round(heapBytesPerConnection),
      detectionMs: detection?.ms ? mapValues(detection.ms, (v) => round(v, 1)) : null,
      detected: detection?.detected ?? 0,
      silentPeers: silentCount,
      boundMs: bound,
      falseTerminations,
      falseTerminationReasons: Object.fromEntries(Object.entries(closeReasons).filter(([, count]) => count > 0)),
      stallTrigger: stall.trigger,
      unexpectedCloses: before.healthyCloses,
      unexpectedCloseReasons: before.healthyCloseReasons,
      healthyClosesSeenByClients: loadCloses.reduce((sum, c) => sum + c.healthyCloses, 0),
      loadLagMaxMs: round(loadLagMaxMs, 0),
      openLagMaxMs: round(Math.max(...opened.map((o) => o.lagMaxMs)), 0),
      ...(trace ? { trace } : {}),
      ...(profile ? { profile } : {}),
    };
  } finally {
    await Promise.all(children.map(stop));
  }
}

function mapValues(object, fn) {
  return Object.fromEntries(Object.entries(object).map(([k, v]) => [k, fn(v, k)]));
}

/** Figures above the `none` contender at the same N, as the results file reports them. */
function relativeToNone(runs) {
  for (const run of runs) {
    const floor = runs.find((r) => r.contender === 'none' && r.connections === run.connections && r.runtime === run.runtime);
    run.cpuMsPerInterval = floor ? round(run.cpuMsPerIntervalRaw - floor.cpuMsPerIntervalRaw) : null;
    run.heapBytesPerConnection = floor ? run.heapBytesPerConnectionRaw - floor.heapBytesPerConnectionRaw : null;
    run.detectionRatio = run.detectionMs && run.boundMs ? mapValues(run.detectionMs, (v) => round(v / run.boundMs, 3)) : null;
  }
  return runs;
}

function machine() {
  const cpus = os.cpus();
  const version = (pkg) => JSON.parse(readFileSync(join(here, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  let commit = null;
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {}
  return {
    date: new Date().toISOString(),
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    ws: version('ws'),
    'socket.io': version('socket.io'),
    'ws-heartbeat (npm)': version('ws-heartbeat-npm'),
    commit,
  };
}

const runs = [];
const started = nowMs();
for (const runtime of serverRuntimes) {
  for (const connections of counts) {
    for (const name of names) {
      log(`${name} N=${connections}${byRuntime ? ` on ${runtime.name}` : ''}: starting`);
      runs.push(await runOne(name, connections, runtime));
    }
  }
}
const results = {
  machine: machine(),
  settings: { interval, timeout, windowIntervals, cpuIntervals, stallMs: 3 * (interval + timeout), perProcess, batch, full: args.full, ...(byRuntime ? { runtimes: serverRuntimes.map((r) => `${r.name} ${r.version}`), cpu: '/proc/<pid>/stat' } : {}) },
  runs: relativeToNone(runs),
};
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
log(`done in ${((nowMs() - started) / 60_000).toFixed(1)} min: ${relative(process.cwd(), out)}`);
if (markdown) {
  const resultsPath = relative(dirname(markdown), out);
  if (byRuntime) writeRuntimes(markdown, renderRuntimes(results, { resultsPath }));
  else writeBenchmarks(markdown, renderMarkdown(results, { resultsPath }));
  log(`wrote ${relative(process.cwd(), markdown)}`);
}
console.log(byRuntime ? renderRuntimes(results, { resultsPath: relative(process.cwd(), out) }) : renderTable(results));
// Last, so that it is what a reader sees: what went wrong in each run.
console.log(['Summary:', ...renderSummary(results).map((line) => `- ${line}`)].join('\n'));
