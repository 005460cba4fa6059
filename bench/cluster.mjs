#!/usr/bin/env node
// The cluster benchmark (issue 16): what @ws-heartbeat/cluster costs Redis and the heartbeat.
//
//   pnpm bench:cluster                          N = 1,000 and 10,000 → bench/results/issue-16/cluster.{json,md}
//   node bench/cluster.mjs --connections 300    a quick look
//
// It starts its own redis-server (free port, no persistence). First, 3 idle nodes with the cluster
// and 3 without, side by side: the cluster's own CPU, apart from any connection. Then for each N
// and configuration
// (cluster-server.mjs: `floor`, `off`, `on`), one after another in the same run under the same
// client load: 3 server processes (Fastify + the plugin), load processes of at most
// --per-process connections each (connection i opens on node i mod 3 and joins a presence key:
// cluster-layout.mjs), and a probe on node 0. Phases:
//   open N connections in batches → (on) every join has reached Redis → settle → (on) Redis memory
//   → a quiet window: each server's CPU and (on) Redis's commands and CPU → the probe's RTT window
//   → (on) join, leave and isOnline latency from node 0 → what went wrong (closes, timeouts).
import { fork, execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NODES, presenceKey, presenceKeyCount } from './cluster-layout.mjs';
import { connect, parseInfo, startRedis } from './cluster-redis.mjs';
import { renderClusterMarkdown, renderClusterSummary } from './cluster-report.mjs';
import { nowMs, quantile, ready, request, round, sleep } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((arg) => arg !== '--'),
  options: {
    connections: { type: 'string', default: '1000,10000' },
    // floor: no heartbeat due (the floor of heartbeat CPU); off: heartbeat, no cluster; on: both.
    configs: { type: 'string', default: 'floor,off,on' },
    // Round 1 runs the configurations in order; each later round runs them again in reverse order,
    // without the floor (floor, off, on, on, off, …): a drift of the machine during the run then
    // favours neither on nor off. Ratios use the means over the rounds.
    rounds: { type: 'string', default: '2' },
    interval: { type: 'string', default: '1000' },
    timeout: { type: 'string', default: '500' },
    // The cluster's lease interval and timeout: by default the heartbeat's, one TICK per node per second.
    'cluster-interval': { type: 'string' },
    'cluster-timeout': { type: 'string' },
    'cpu-window': { type: 'string', default: '10' },
    // The cluster's own CPU, on idle nodes (runIdle): intervals measured; 0 skips it.
    'idle-window': { type: 'string', default: '20' },
    // V8's memory reducer runs two or three full GCs 8 s (sometimes again 17 s) after a process's
    // first full GC, each burst ~9 ms of CPU per interval in the window it lands in; a node with a
    // Redis client has that first full GC at start-up (its heap grows to ~46 MB, ~13 MB without).
    // The servers run with --no-memory-reducer, so that a start-up transient is not counted as a
    // configuration's steady-state cost; --memory-reducer keeps V8's default.
    'memory-reducer': { type: 'boolean', default: false },
    // And no CPU window starts before the server processes are this old (s).
    warmup: { type: 'string', default: '10' },
    window: { type: 'string', default: '10' },
    'per-process': { type: 'string', default: '5000' },
    batch: { type: 'string', default: '20' },
    // Readings of Redis's used_memory (a second apart) before and after the joins; their median counts.
    'memory-readings': { type: 'string', default: '3' },
    // Joins (then leaves) and isOnline calls timed from node 0, one every --gap ms.
    calls: { type: 'string', default: '1000' },
    gap: { type: 'string', default: '2' },
    out: { type: 'string', default: join(here, 'results', 'issue-16', 'cluster.json') },
    markdown: { type: 'string', default: join(here, 'results', 'issue-16', 'cluster.md') },
    // A note for the results (e.g. that the CPU was shared with a test run).
    note: { type: 'string' },
  },
});

const interval = Number(args.interval);
const timeout = Number(args.timeout);
const clusterInterval = Number(args['cluster-interval'] ?? interval);
const clusterTimeout = Number(args['cluster-timeout'] ?? timeout);
const cpuIntervals = Number(args['cpu-window']);
const idleIntervals = Number(args['idle-window']);
const warmupMs = Number(args.warmup) * 1000;
const memoryReadings = Number(args['memory-readings']);
const windowIntervals = Number(args.window);
const perProcess = Number(args['per-process']);
const batch = Number(args.batch);
const calls = Number(args.calls);
const gapMs = Number(args.gap);
const rounds = Number(args.rounds);
const counts = args.connections.split(',').map(Number);
const configs = args.configs.split(',');

for (const mode of configs) if (!['floor', 'off', 'on'].includes(mode)) throw new Error(`Unknown configuration "${mode}": floor, off or on`);
for (const n of counts) if (!(Number.isInteger(n) && n >= NODES && n <= 3 * 19_000)) throw new Error(`Connections must be ${NODES}…57,000: got ${n}`);
if (!(perProcess > 0 && perProcess <= 19_000)) throw new Error(`--per-process must be 1…19,000 (the open-file limit is 20,000 per process): got ${perProcess}`);
if (!(Number.isInteger(memoryReadings) && memoryReadings >= 1)) throw new Error(`--memory-readings must be a positive integer: got ${args['memory-readings']}`);
if (!(rounds >= 1)) throw new Error(`--rounds must be at least 1: got ${args.rounds}`);

const log = (...parts) => console.error(`[bench:cluster ${new Date().toISOString().slice(11, 19)}]`, ...parts);

// BENCH_SERVER_FLAGS adds Node flags to the server processes, e.g. "--cpu-prof" to profile them (as for run.mjs).
const serverFlags = [...(args['memory-reducer'] ? [] : ['--no-memory-reducer']), ...(process.env.BENCH_SERVER_FLAGS ?? '').split(' ').filter(Boolean)];

function start(file, config) {
  const execArgv = file === 'cluster-server.mjs' ? serverFlags : [];
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

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];

/** count, p50, p99, max of samples. */
function latency(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { count: sorted.length, p50: round(quantile(sorted, 0.5), 3), p99: round(quantile(sorted, 0.99), 3), max: round(sorted.at(-1) ?? null, 3) };
}

async function info(redis, ...sections) {
  return parseInfo(await redis.call('INFO', ...sections));
}

/** Every key of the cluster (prefix `wsh`) with its `MEMORY USAGE` (all fields sampled), and Redis's used memory. */
async function memory(redis) {
  // used_memory also counts the clients' query and output buffers, which Redis grows and trims on
  // its own schedule, and short-lived allocations: it moves by up to ±150 KB between readings a
  // second apart with nothing stored. The median of --memory-readings readings, a second apart.
  const readings = [];
  for (let i = 0; i < memoryReadings; i++) {
    if (i > 0) await sleep(1000);
    const { used_memory: used, mem_clients_normal: clients } = await info(redis, 'memory');
    readings.push({ used, clients });
  }
  const usedMemory = median(readings.map((r) => r.used));
  const clientBuffers = median(readings.map((r) => r.clients));
  const keys = {};
  let cursor = '0';
  do {
    const [next, found] = await redis.call('SCAN', cursor, 'MATCH', '{wsh}*', 'COUNT', 1000);
    for (const key of found) keys[key] = await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', 0);
    cursor = next;
  } while (cursor !== '0');
  // By role: the node ids are random, so the roles are what compares between runs.
  const byRole = {};
  for (const [key, bytes] of Object.entries(keys)) {
    const role = key.replace(/^\{wsh\}:/, '').replace(/node:[0-9a-f-]{36}/, 'node:<id>');
    byRole[role] = (byRole[role] ?? 0) + bytes;
  }
  const keysBytes = Object.values(keys).reduce((sum, bytes) => sum + bytes, 0);
  return { usedMemory, clientBuffers, keysBytes, byRole };
}

/** Whether Redis holds exactly what N joined connections should have left there. */
async function presenceCheck(redis, connections) {
  const online = await redis.call('HLEN', '{wsh}:presence');
  const counts = await redis.call('HVALS', '{wsh}:presence');
  const held = counts.reduce((sum, count) => sum + Number(count), 0);
  const encoding = await redis.call('OBJECT', 'ENCODING', '{wsh}:presence');
  const expectedKeys = presenceKeyCount(connections);
  return { onlineKeys: online, expectedKeys, connectionsHeld: held, expectedConnections: connections, consistent: online === expectedKeys && held === connections, encoding };
}

/** Adds up the per-node command counts (cluster-server.mjs) into one table. */
function mergeCommands(perNode) {
  const merged = {};
  for (const node of perNode) {
    for (const [kind, entry] of Object.entries(node.commands)) {
      const into = (merged[kind] ??= { sent: 0, ok: 0, noscript: 0, timedOut: 0, failed: 0, errors: {} });
      for (const field of ['sent', 'ok', 'noscript', 'timedOut', 'failed']) into[field] += entry[field];
      for (const [what, count] of Object.entries(entry.errors)) into.errors[what] = (into.errors[what] ?? 0) + count;
    }
  }
  return merged;
}

/** One configuration at N connections: its raw figures. */
async function runOne(mode, connections, roundNo, redis, redisUrl) {
  const children = [];
  const result = { mode, connections, round: roundNo };
  try {
    if (mode === 'on') await redis.call('FLUSHALL');
    const servers = [];
    for (let node = 0; node < NODES; node++) servers.push(start('cluster-server.mjs', { mode, node, interval, timeout, clusterInterval, clusterTimeout, redisUrl }));
    children.push(...servers);
    const started = await Promise.all(servers.map((server, node) => ready(server, `${mode} node ${node}`)));
    const startedAt = nowMs();
    const urls = started.map(({ port }) => `ws://127.0.0.1:${port}`);

    // Before any join: the three nodes' leases and info, nothing else.
    const memoryBefore = mode === 'on' ? await memory(redis) : undefined;

    const openStart = nowMs();
    const loads = [];
    const processes = Math.ceil(connections / perProcess);
    for (let p = 0; p < processes; p++) {
      const from = Math.floor((p * connections) / processes);
      const to = Math.floor(((p + 1) * connections) / processes);
      loads.push(start('cluster-clients.mjs', { urls, from, to, batch }));
    }
    children.push(...loads);
    const opened = await Promise.all(loads.map((load, i) => ready(load, `load ${i}`)));
    result.openMs = round(nowMs() - openStart, 0);
    result.openFailed = opened.reduce((sum, o) => sum + o.failed, 0);
    result.openLagMaxMs = round(Math.max(...opened.map((o) => o.lagMaxMs)), 0);
    if (result.openFailed > 0) throw new Error(`${result.openFailed} of ${connections} connections failed to open`);
    log(`${mode} N=${connections}: open in ${(result.openMs / 1000).toFixed(1)} s; load processes' event-loop delay while opening max ${result.openLagMaxMs} ms`);

    if (mode === 'on') {
      // Every join the plugin made has resolved (reached Redis, or given up and kept for the next registration).
      const deadline = nowMs() + 60_000;
      let pending;
      do {
        pending = (await Promise.all(servers.map((server) => request(server, 'joins')))).reduce((sum, j) => sum + j.pending, 0);
        if (pending > 0) await sleep(100);
      } while (pending > 0 && nowMs() < deadline);
      result.joinsPendingAfterOpen = pending;
      result.joinsSettledMs = round(nowMs() - openStart - result.openMs, 0);
    }

    await sleep(2 * (interval + timeout));

    if (mode === 'on') {
      const memoryAfter = await memory(redis);
      result.presence = await presenceCheck(redis, connections);
      result.memory = {
        before: memoryBefore,
        after: memoryAfter,
        usedMemoryPerConnection: round((memoryAfter.usedMemory - memoryBefore.usedMemory) / connections, 1),
        keysBytesPerConnection: round((memoryAfter.keysBytes - memoryBefore.keysBytes) / connections, 1),
      };
      log(
        `${mode} N=${connections}: Redis memory per connection ${result.memory.usedMemoryPerConnection} B (used_memory), ${result.memory.keysBytesPerConnection} B (MEMORY USAGE); presence ${result.presence.consistent ? 'consistent' : 'INCONSISTENT'} (${JSON.stringify(result.presence)})`,
      );
    }

    // A quiet window: no probe, no joins. Server CPU, and Redis's commands and CPU.
    await sleep(startedAt + warmupMs - nowMs());
    const cpuStart = await Promise.all(servers.map((server) => request(server, 'cpu')));
    const redisStart = mode === 'on' ? await info(redis, 'stats', 'commandstats', 'cpu') : undefined;
    const windowStart = nowMs();
    await sleep(cpuIntervals * interval);
    const redisEnd = mode === 'on' ? await info(redis, 'stats', 'commandstats', 'cpu') : undefined;
    const windowMs = nowMs() - windowStart;
    const cpuEnd = await Promise.all(servers.map((server) => request(server, 'cpu')));
    result.cpuMsPerIntervalPerNode = cpuEnd.map((end, node) => round((end.ms - cpuStart[node].ms) / ((end.at - cpuStart[node].at) / interval)));
    // The median node: one node's burst (its load shared two cores with everything else) moves a
    // run's mean by up to 20%, and a cost of the configuration shows in every node.
    result.cpuMsPerInterval = median(result.cpuMsPerIntervalPerNode);
    result.cpuMsPerIntervalMean = round(result.cpuMsPerIntervalPerNode.reduce((sum, ms) => sum + ms, 0) / NODES);
    result.cpuUserMsPerIntervalPerNode = cpuEnd.map((end, node) => round((end.userMs - cpuStart[node].userMs) / ((end.at - cpuStart[node].at) / interval)));
    result.gcPerIntervalPerNode = cpuEnd.map((end, node) => {
      const intervals = (end.at - cpuStart[node].at) / interval;
      const { gc: a } = cpuStart[node];
      const { gc: b } = end;
      return { ms: round((b.ms - a.ms) / intervals), minor: round((b.minor - a.minor) / intervals, 1), major: round((b.major - a.major) / intervals, 2) };
    });

    if (mode === 'on') {
      // Calls per command in the window; the harness's own INFO is left out.
      const calls = {};
      for (const [name, stat] of Object.entries(redisEnd)) {
        if (!name.startsWith('cmdstat_')) continue;
        const delta = stat.calls - (redisStart[name]?.calls ?? 0);
        if (delta > 0) calls[name.slice('cmdstat_'.length)] = delta;
      }
      const harness = calls.info ?? 0;
      delete calls.info;
      const seconds = windowMs / 1000;
      const intervals = windowMs / clusterInterval;
      const inScripts = Object.entries(calls).filter(([name]) => name !== 'evalsha' && name !== 'eval').reduce((sum, [, n]) => sum + n, 0);
      const sentByClients = (calls.evalsha ?? 0) + (calls.eval ?? 0);
      const redisCpuMs = (redisEnd.used_cpu_user + redisEnd.used_cpu_sys - redisStart.used_cpu_user - redisStart.used_cpu_sys) * 1000;
      result.steady = {
        windowMs: round(windowMs, 0),
        callsByCommand: calls,
        // What the nodes sent (every cluster command in steady state is a script), and what Redis
        // ran in all, the scripts' own commands included (total_commands_processed counts them).
        clientCommandsPerSecond: round(sentByClients / seconds),
        commandsPerSecond: round((redisEnd.total_commands_processed - redisStart.total_commands_processed - harness) / seconds),
        clientCommandsPerNodePerInterval: round(sentByClients / NODES / intervals),
        commandsPerNodePerInterval: round((sentByClients + inScripts) / NODES / intervals),
        redisCpuMsPerSecond: round(redisCpuMs / seconds),
        scriptUsecPerCall: round(((redisEnd.cmdstat_evalsha?.usec ?? 0) - (redisStart.cmdstat_evalsha?.usec ?? 0)) / Math.max(1, calls.evalsha ?? 0), 1),
      };
      log(`${mode} N=${connections}: steady ${JSON.stringify(result.steady)}`);
    }

    const probe = start('probe.mjs', { url: urls[0], client: 'ws' });
    children.push(probe);
    await ready(probe, 'probe');
    await request(probe, 'start');
    await sleep(windowIntervals * interval);
    const rtt = await request(probe, 'stop');
    await stop(probe);
    Object.assign(result, { probeRttP50Ms: round(rtt.p50), probeRttP99Ms: round(rtt.p99), probeRttMaxMs: round(rtt.max), probeSamples: rtt.samples, probeLost: rtt.lost });
    log(`${mode} N=${connections}: cpu ${result.cpuMsPerInterval} ms/interval, median node (${result.cpuMsPerIntervalPerNode.join(', ')}; user ${result.cpuUserMsPerIntervalPerNode.join(', ')}; gc ${result.gcPerIntervalPerNode.map((g) => `${g.ms} ms ${g.minor}+${g.major}`).join(', ')}); probe p99 ${result.probeRttP99Ms} ms, max ${result.probeRttMaxMs} ms`);

    if (mode === 'on') {
      const plugin = await Promise.all(servers.map((server) => request(server, 'joins', { samples: true })));
      result.joinsWhileOpening = latency(plugin.flatMap((j) => j.samples));
      const batchResult = await request(servers[0], 'joinBatch', { count: calls, gapMs }, 120_000);
      result.joinBatch = batchResult.join;
      result.leaveBatch = batchResult.leave;
      const keys = [];
      for (let j = 0; j < calls; j++) keys.push(j % 2 === 0 ? presenceKey(Math.floor(Math.random() * connections)) : `nobody:${j}`);
      const online = await request(servers[0], 'isOnlineBatch', { keys, gapMs }, 120_000);
      result.isOnline = { ...online.latency, rejected: online.rejected, wrong: online.answers.filter((answer, j) => answer !== undefined && answer !== (j % 2 === 0)).length };
      log(
        `${mode} N=${connections}: join p50/p99 ${result.joinsWhileOpening.p50}/${result.joinsWhileOpening.p99} ms while opening, ${result.joinBatch.p50}/${result.joinBatch.p99} ms in steady state; isOnline ${result.isOnline.p50}/${result.isOnline.p99} ms (${result.isOnline.rejected} rejected, ${result.isOnline.wrong} wrong)`,
      );
      const redisSide = await Promise.all(servers.map((server) => request(server, 'redis')));
      result.commands = mergeCommands(redisSide);
      result.unavailable = redisSide.reduce((sum, node) => sum + node.unavailable, 0);
      const { slowlog } = await slowest(redis);
      result.slowestCommands = slowlog;
    }

    const serverCloses = await Promise.all(servers.map((server) => request(server, 'closes')));
    const loadCloses = await Promise.all(loads.map((load) => request(load, 'closes')));
    result.healthyCloses = serverCloses.reduce((sum, c) => sum + c.healthyCloses, 0);
    result.healthyCloseReasons = {};
    for (const c of serverCloses) for (const [reason, n] of Object.entries(c.healthyCloseReasons)) result.healthyCloseReasons[reason] = (result.healthyCloseReasons[reason] ?? 0) + n;
    result.healthyClosesSeenByClients = loadCloses.reduce((sum, c) => sum + c.healthyCloses, 0);
    result.loadLagMaxMs = round(Math.max(...loadCloses.map((c) => c.lagMaxMs)), 0);
    return result;
  } finally {
    await Promise.all(children.map(stop));
  }
}

/** Redis's slow log since the last reset (the commands that took longest), then reset. */
async function slowest(redis) {
  const entries = await redis.call('SLOWLOG', 'GET', 5);
  await redis.call('SLOWLOG', 'RESET');
  const slowlog = entries.map(([, , usec, command]) => ({ usec, command: `${command[0]} ${command[1]?.slice?.(0, 12) ?? ''} ${command[2] ?? ''}`.trim() }));
  return { slowlog };
}

/**
 * The cluster's own CPU, apart from any connection: 3 nodes with the cluster and 3 without, all
 * idle (no connection), side by side over the same window. The difference per node per interval
 * is what the cluster's tick costs the process (its snapshot, its script, the reply), the part of
 * the `on` configuration's CPU that does not depend on N.
 */
async function runIdle(redis, redisUrl) {
  await redis.call('FLUSHALL');
  const children = [];
  try {
    const byMode = {};
    for (const mode of ['off', 'on']) {
      byMode[mode] = [];
      for (let node = 0; node < NODES; node++) byMode[mode].push(start('cluster-server.mjs', { mode, node, interval, timeout, clusterInterval, clusterTimeout, redisUrl }));
      children.push(...byMode[mode]);
    }
    await Promise.all(children.map((child, i) => ready(child, `idle node ${i}`)));
    await sleep(Math.max(2 * (interval + timeout), warmupMs));
    const all = Object.values(byMode).flat();
    const cpuStart = await Promise.all(all.map((server) => request(server, 'cpu')));
    await sleep(idleIntervals * interval);
    const cpuEnd = await Promise.all(all.map((server) => request(server, 'cpu')));
    const perInterval = all.map((_, i) => (cpuEnd[i].ms - cpuStart[i].ms) / ((cpuEnd[i].at - cpuStart[i].at) / interval));
    const gcMs = all.map((_, i) => round((cpuEnd[i].gc.ms - cpuStart[i].gc.ms) / ((cpuEnd[i].at - cpuStart[i].at) / interval), 3));
    const off = perInterval.slice(0, NODES);
    const on = perInterval.slice(NODES);
    // Medians, as for the loaded runs.
    return {
      intervals: idleIntervals,
      offMsPerIntervalPerNode: off.map((ms) => round(ms, 3)),
      onMsPerIntervalPerNode: on.map((ms) => round(ms, 3)),
      gcMsPerIntervalPerNode: { off: gcMs.slice(0, NODES), on: gcMs.slice(NODES) },
      clusterMsPerIntervalPerNode: round(median(on) - median(off), 3),
      // Per tick of the cluster (one per clusterInterval).
      clusterMsPerTick: round(((median(on) - median(off)) * clusterInterval) / interval, 3),
    };
  } finally {
    await Promise.all(children.map(stop));
  }
}

/** What the nodes run: a hash of the cluster package's build, and whether its sources differ from the commit. */
function clusterBuild() {
  const dist = join(root, 'packages', 'cluster', 'dist');
  const hash = createHash('sha1');
  for (const file of ['index.js', 'scripts.js', 'stats.js']) hash.update(readFileSync(join(dist, file)));
  let dirty = null;
  try {
    dirty = execSync('git status --porcelain -- packages/cluster/src packages/core/src packages/fastify/src', { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() !== '';
  } catch {}
  return { distSha1: hash.digest('hex').slice(0, 12), sourcesChangedSinceCommit: dirty };
}

function machine() {
  const cpus = os.cpus();
  let commit = null;
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {}
  let redisVersion = null;
  try {
    redisVersion = /v=(\S+)/.exec(execSync('redis-server --version').toString())?.[1] ?? null;
  } catch {}
  return { date: new Date().toISOString(), cpu: cpus[0]?.model ?? 'unknown', cores: cpus.length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), os: `${os.type()} ${os.release()}`, node: process.version, redis: redisVersion, commit };
}

const started = nowMs();
const buildAtStart = clusterBuild();
const redisServer = await startRedis();
const redis = await connect(redisServer.port);
// Every command slower than 1 ms goes to the slow log, to name the cluster's slowest scripts.
await redis.call('CONFIG', 'SET', 'slowlog-log-slower-than', 1000);
const runs = [];
let idle = null;
try {
  if (idleIntervals > 0 && configs.includes('on')) {
    log(`idle nodes: the cluster's own CPU over ${idleIntervals} intervals`);
    idle = await runIdle(redis, redisServer.url);
    log(`idle nodes: ${JSON.stringify(idle)}`);
  }
  for (const connections of counts) {
    for (let r = 0; r < rounds; r++) {
      const order = r === 0 ? configs : (r % 2 === 0 ? configs : [...configs].reverse()).filter((mode) => mode !== 'floor');
      for (const mode of order) {
        log(`${mode} N=${connections} (round ${r + 1}): starting`);
        runs.push(await runOne(mode, connections, r + 1, redis, redisServer.url));
      }
    }
  }
} finally {
  redis.close();
  await redisServer.stop();
}

const buildAtEnd = clusterBuild();
if (buildAtEnd.distSha1 !== buildAtStart.distSha1) log(`THE CLUSTER PACKAGE'S BUILD CHANGED DURING THE RUN (${buildAtStart.distSha1} → ${buildAtEnd.distSha1}): nodes started later ran other code`);
const results = {
  machine: { ...machine(), clusterBuild: buildAtStart, clusterBuildChangedDuringRun: buildAtEnd.distSha1 !== buildAtStart.distSha1 },
  settings: { nodes: NODES, interval, timeout, clusterInterval, clusterTimeout, cpuIntervals, idleIntervals, warmupMs, memoryReadings, serverFlags, windowIntervals, perProcess, batch, calls, gapMs, rounds, configs, note: args.note ?? null },
  durationMin: round((nowMs() - started) / 60_000, 1),
  idle,
  runs,
};
mkdirSync(dirname(args.out), { recursive: true });
writeFileSync(args.out, `${JSON.stringify(results, null, 2)}\n`);
log(`done in ${results.durationMin} min: ${relative(process.cwd(), args.out)}`);
const markdown = renderClusterMarkdown(results);
if (args.markdown) {
  mkdirSync(dirname(args.markdown), { recursive: true });
  writeFileSync(args.markdown, markdown);
  log(`wrote ${relative(process.cwd(), args.markdown)}`);
}
console.log(markdown);
// Last, so that it is what a reader sees: what went wrong in each run.
console.log(['Summary:', ...renderClusterSummary(results).map((line) => `- ${line}`)].join('\n'));
