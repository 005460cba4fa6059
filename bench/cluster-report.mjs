// Renders the cluster benchmark's results (cluster.mjs) as Markdown: every configuration's run,
// cluster on ÷ off, Redis's figures with the cluster on, and the issue's targets; and one line
// per run of what went wrong in it. `node bench/cluster-report.mjs [cluster.json]` prints the
// Markdown of a results file without running anything.
import { readFileSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

const fmt = (value, digits = 2) => (value === null || value === undefined || Number.isNaN(value) ? '–' : value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 }));
const times = (value) => (value === null || value === undefined || !Number.isFinite(value) ? '–' : `${fmt(value, 2)}×`);
const mean = (values) => (values.length === 0 ? null : values.reduce((sum, v) => sum + v, 0) / values.length);
const nOf = (n) => n.toLocaleString('en-US');

/** The mean of `field` over the runs of `mode` at N (several with --rounds). */
function meanOf(runs, connections, mode, field) {
  return mean(runs.filter((r) => r.connections === connections && r.mode === mode).map((r) => r[field]));
}

/** Heartbeat CPU: a run's server CPU per interval per node above the floor's mean at the same N. */
function aboveFloor(runs, run) {
  const floor = meanOf(runs, run.connections, 'floor', 'cpuMsPerInterval');
  return floor === null ? null : run.cpuMsPerInterval - floor;
}

/** on ÷ off at N: heartbeat CPU above the floor, server CPU, probe p99 (means over rounds). */
export function ratios(runs, connections) {
  const floor = meanOf(runs, connections, 'floor', 'cpuMsPerInterval');
  const on = meanOf(runs, connections, 'on', 'cpuMsPerInterval');
  const off = meanOf(runs, connections, 'off', 'cpuMsPerInterval');
  const div = (a, b) => (a === null || b === null || b <= 0 ? null : a / b);
  return {
    heartbeatCpu: floor === null ? null : div(on - floor, off - floor),
    heartbeatCpuOnMs: floor === null || on === null ? null : on - floor,
    heartbeatCpuOffMs: floor === null || off === null ? null : off - floor,
    serverCpu: div(on, off),
    probeP99: div(meanOf(runs, connections, 'on', 'probeRttP99Ms'), meanOf(runs, connections, 'off', 'probeRttP99Ms')),
  };
}

function closesCell(run) {
  const seen = run.healthyClosesSeenByClients ? ` (clients saw ${fmt(run.healthyClosesSeenByClients, 0)})` : '';
  if (!run.healthyCloses) return `0${seen}`;
  const why = Object.entries(run.healthyCloseReasons)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${reason}: ${fmt(n, 0)}`);
  return `**${fmt(run.healthyCloses, 0)}** (${why.join(', ')})${seen}`;
}

/** Timed-out and failed commands of the cluster's Redis client, all kinds together. */
function commandFailures(run) {
  const entries = Object.values(run.commands ?? {});
  return { timedOut: entries.reduce((sum, e) => sum + e.timedOut, 0), failed: entries.reduce((sum, e) => sum + e.failed, 0) };
}

const lat = (l) => (l ? `${fmt(l.p50, 2)} / ${fmt(l.p99, 2)}` : '–');

export function renderConfigTable({ runs }) {
  const lines = [
    '| N | configuration | round | server CPU per interval (ms): median node (each node) | of it, GC (ms) | heartbeat CPU above `floor` (ms) | probe RTT p50 / p99 / max (ms) | healthy peers closed | load processes\' worst delay (ms): steady / opening |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of runs) {
    const lost = r.probeLost > 0 ? ` (${r.probeLost} lost)` : '';
    lines.push(
      `| ${nOf(r.connections)} | ${r.mode === 'on' ? '**on**' : r.mode} | ${r.round} | ${fmt(r.cpuMsPerInterval)} (${r.cpuMsPerIntervalPerNode.map((ms) => fmt(ms, 1)).join(', ')}) | ${r.gcPerIntervalPerNode ? r.gcPerIntervalPerNode.map((g) => fmt(g.ms, 1)).join(', ') : '–'} | ${r.mode === 'floor' ? '–' : fmt(aboveFloor(runs, r))} | ${fmt(r.probeRttP50Ms)} / ${fmt(r.probeRttP99Ms)} / ${fmt(r.probeRttMaxMs, 1)}${lost} | ${closesCell(r)} | ${fmt(r.loadLagMaxMs, 0)} / ${fmt(r.openLagMaxMs, 0)} |`,
    );
  }
  return lines.join('\n');
}

/** (off's heartbeat CPU + the cluster's own CPU on idle nodes) ÷ off's heartbeat CPU: what the cluster's tick adds, apart from the noise of side-by-side runs. */
function idleShare(idle, q) {
  return idle && q.heartbeatCpuOffMs > 0 ? 1 + idle.clusterMsPerIntervalPerNode / q.heartbeatCpuOffMs : null;
}

export function renderRatioTable({ runs, idle }) {
  const lines = [
    '| N | heartbeat CPU above `floor`: on ÷ off, side by side | each run\'s heartbeat CPU (ms): off / on | server CPU: on ÷ off | probe RTT p99: on ÷ off | the cluster\'s own CPU (idle nodes) added to off\'s heartbeat CPU |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const n of [...new Set(runs.map((r) => r.connections))]) {
    const q = ratios(runs, n);
    const cpu = q.heartbeatCpu === null ? '–' : `${times(q.heartbeatCpu)} (${fmt(q.heartbeatCpuOnMs)} vs ${fmt(q.heartbeatCpuOffMs)} ms)`;
    const share = idleShare(idle, q);
    const own = share === null ? '–' : `${times(share)} (${fmt(idle.clusterMsPerIntervalPerNode, 3)} ms per interval)`;
    const each = (mode) =>
      runs
        .filter((r) => r.connections === n && r.mode === mode)
        .map((r) => fmt(aboveFloor(runs, r), 1))
        .join(', ');
    lines.push(`| ${nOf(n)} | ${cpu} | ${each('off')} / ${each('on')} | ${times(q.serverCpu)} | ${times(q.probeP99)} | ${own} |`);
  }
  return lines.join('\n');
}

export function renderRedisTable({ runs }) {
  const lines = [
    '| N | round | Redis commands/s: sent by the nodes / run by Redis | per node per interval: sent / run | Redis CPU (ms/s) | Redis memory per connection (bytes): `used_memory` / `MEMORY USAGE` | join p50 / p99 (ms): while opening / steady | leave p50 / p99 (ms) | `isOnline` p50 / p99 (ms) | commands timed out / failed | presence in Redis after the joins |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of runs.filter((run) => run.mode === 'on')) {
    const s = r.steady;
    const { timedOut, failed } = commandFailures(r);
    const p = r.presence;
    const presence = `${p.consistent ? 'exact' : '**wrong**'}: ${fmt(p.onlineKeys, 0)} keys, ${fmt(p.connectionsHeld, 0)} connections (${p.encoding})`;
    const trouble = timedOut + failed + (r.isOnline?.rejected ?? 0) > 0 || r.unavailable > 0;
    const failures = `${trouble ? '**' : ''}${timedOut} / ${failed}${trouble ? '**' : ''}${r.isOnline?.rejected ? `, isOnline rejected ${r.isOnline.rejected}` : ''}${r.unavailable ? `, Redis lost ${r.unavailable}×` : ''}`;
    lines.push(
      `| ${nOf(r.connections)} | ${r.round} | ${fmt(s.clientCommandsPerSecond)} / ${fmt(s.commandsPerSecond)} | ${fmt(s.clientCommandsPerNodePerInterval)} / ${fmt(s.commandsPerNodePerInterval)} | ${fmt(s.redisCpuMsPerSecond)} | ${fmt(r.memory.usedMemoryPerConnection, 0)} / ${fmt(r.memory.keysBytesPerConnection, 0)} | ${lat(r.joinsWhileOpening)} / ${lat(r.joinBatch)} | ${lat(r.leaveBatch)} | ${lat(r.isOnline)} | ${failures} | ${presence} |`,
    );
  }
  return lines.join('\n');
}

/** The issue's three targets, each at every N, met or missed. */
export function renderTargets({ runs, idle }) {
  const ns = [...new Set(runs.map((r) => r.connections))];
  const on = runs.filter((r) => r.mode === 'on');
  const rows = [];
  const add = (goal, measured, met) => rows.push(`| ${goal} | ${measured} | ${met === null ? '–' : met ? 'met' : '**missed**'} |`);
  if (on.length > 0) {
    // Both figures, every run: used_memory moves by up to ±150 KB with the clients' buffers (±150
    // bytes per connection at N = 1,000, ±15 at 10,000); MEMORY USAGE counts the keys exactly.
    const worst = Math.max(...on.flatMap((r) => [r.memory.usedMemoryPerConnection, r.memory.keysBytesPerConnection]));
    const byN = ns.map((n) => {
      const here = on.filter((r) => r.connections === n);
      const used = here.map((r) => fmt(r.memory.usedMemoryPerConnection, 0)).join(', ');
      const keys = [...new Set(here.map((r) => fmt(r.memory.keysBytesPerConnection, 0)))].join(', ');
      return `${nOf(n)}: ${used} B (\`used_memory\`, each run), ${keys} B (\`MEMORY USAGE\`)`;
    });
    add('≤ 200 bytes of Redis memory per connection', byN.join('; '), worst <= 200);
    const sent = on.map((r) => r.steady.clientCommandsPerNodePerInterval);
    const run = on.map((r) => r.steady.commandsPerNodePerInterval);
    const flat = (values) => Math.max(...values) / Math.min(...values) <= 1.1;
    add(
      'steady-state commands per node per interval independent of N',
      ns
        .map((n) => {
          const here = on.filter((r) => r.connections === n);
          const list = (field) => [...new Set(here.map((r) => fmt(r.steady[field])))].join(', ');
          return `${nOf(n)}: ${list('clientCommandsPerNodePerInterval')} sent, ${list('commandsPerNodePerInterval')} run`;
        })
        .join('; '),
      ns.length < 2 ? null : flat(sent) && flat(run),
    );
  }
  const cpu = ns.map((n) => ({ n, q: ratios(runs, n) })).filter(({ q }) => q.heartbeatCpu !== null);
  if (cpu.length > 0) {
    add(
      'cluster on costs ≤ 10% more heartbeat CPU than off',
      cpu
        .map(({ n, q }) => {
          const share = idleShare(idle, q);
          return `${nOf(n)}: ${times(q.heartbeatCpu)} side by side (server CPU ${times(q.serverCpu)})${share === null ? '' : `; the cluster's own CPU adds ${times(share)}`}`;
        })
        .join('; '),
      cpu.every(({ q }) => q.heartbeatCpu <= 1.1),
    );
  }
  return ['| target | measured | |', '| --- | --- | --- |', ...rows].join('\n');
}

/** One line per run: what went wrong in it, or that nothing did. */
export function renderClusterSummary({ runs, settings }) {
  return runs.map((r) => {
    const parts = [`${r.mode} N=${r.connections} round ${r.round}: healthy peers closed ${closesCell(r).replace(/\*/g, '')}`];
    if (r.mode === 'on') {
      const { timedOut, failed } = commandFailures(r);
      parts.push(`cluster commands timed out ${timedOut}, failed ${failed}`);
      parts.push(`isOnline rejected ${r.isOnline?.rejected ?? '–'}, wrong ${r.isOnline?.wrong ?? '–'}`);
      parts.push(`Redis unreachable ${r.unavailable} times`);
      parts.push(`presence after the joins ${r.presence.consistent ? 'exact' : `WRONG (${JSON.stringify(r.presence)})`}`);
      if (r.joinsPendingAfterOpen > 0) parts.push(`${r.joinsPendingAfterOpen} joins still pending 60 s after opening`);
      // A slow call in the batches from node 0 may be node 0's own stall: its worst event-loop delay then.
      parts.push(`node 0's worst event-loop delay during the join / leave / isOnline batches ${fmt(r.joinBatch?.lagMaxMs, 1)} / ${fmt(r.leaveBatch?.lagMaxMs, 1)} / ${fmt(r.isOnline?.lagMaxMs, 1)} ms`);
    }
    if (r.probeLost > 0) parts.push(`${r.probeLost} probe echoes lost`);
    const lagged = Math.max(r.loadLagMaxMs ?? 0, r.openLagMaxMs ?? 0) > settings.timeout;
    parts.push(`load processes' worst delay ${fmt(r.loadLagMaxMs, 0)} ms (opening ${fmt(r.openLagMaxMs, 0)} ms)${lagged ? ', LONGER THAN THE TIMEOUT' : ''}`);
    return parts.join('; ');
  });
}

function renderIdle(idle) {
  if (!idle) return 'Not measured (`--idle-window 0`).';
  const gc = idle.gcMsPerIntervalPerNode ? ` (of it, GC: ${idle.gcMsPerIntervalPerNode.on.map((ms) => fmt(ms, 2)).join(', ')} with, ${idle.gcMsPerIntervalPerNode.off.map((ms) => fmt(ms, 2)).join(', ')} without)` : '';
  return `Idle nodes (no connection), ${idle.intervals} intervals, 3 with the cluster and 3 without side by side: ${idle.onMsPerIntervalPerNode.map((ms) => fmt(ms, 2)).join(', ')} ms per interval with, ${idle.offMsPerIntervalPerNode.map((ms) => fmt(ms, 2)).join(', ')} without${gc}: the cluster costs **${fmt(idle.clusterMsPerIntervalPerNode, 3)} ms per node per interval** (median nodes; ${fmt(idle.clusterMsPerTick, 3)} ms per tick).`;
}

export function renderClusterMarkdown(results) {
  const { machine, settings } = results;
  const build = machine.clusterBuild
    ? ` The cluster package's build: ${machine.clusterBuild.distSha1}${machine.clusterBuild.sourcesChangedSinceCommit ? ' (its sources, or core\'s or the plugin\'s, differ from the commit)' : ''}${machine.clusterBuildChangedDuringRun ? '. **It changed during the run: nodes started later ran other code.**' : '.'}`
    : '';
  return `<!-- Generated by bench/cluster.mjs (or node bench/cluster-report.mjs) from cluster.json. -->
# Cluster benchmark (issue 16)

${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB; ${machine.os}; Node ${machine.node}; Redis ${machine.redis}; commit ${machine.commit ?? 'unknown'}; ${machine.date.slice(0, 16).replace('T', ' ')} UTC; the run took ${results.durationMin} min.${build}

${settings.nodes} nodes (Fastify + \`@ws-heartbeat/fastify\`), heartbeat interval ${settings.interval} ms / timeout ${settings.timeout} ms; cluster interval ${settings.clusterInterval} ms / timeout ${settings.clusterTimeout} ms; CPU and Redis over ${settings.cpuIntervals} quiet intervals${settings.warmupMs ? `, none before the servers are ${settings.warmupMs / 1000} s old` : ''}${settings.serverFlags?.length ? ` (servers run with \`${settings.serverFlags.join(' ')}\`)` : ''}, the probe over ${settings.windowIntervals}; load in batches of ${settings.batch} from processes of at most ${nOf(settings.perProcess)} connections; ${nOf(settings.calls)} joins, leaves and \`isOnline\` calls from node 0, one every ${settings.gapMs} ms; ${settings.rounds} round(s) of ${settings.configs.join(', ')}.${settings.note ? `\n\n**Note:** ${settings.note}` : ''}

## Every configuration

${renderConfigTable(results)}

## Cluster on ÷ off

${renderRatioTable(results)}

${renderIdle(results.idle)}

## Redis, with the cluster on

${renderRedisTable(results)}

## Targets

${renderTargets(results)}

## What went wrong in each run

${renderClusterSummary(results)
  .map((line) => `- ${line}`)
  .join('\n')}
`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = resolve(process.argv[2] ?? join(here, 'results', 'issue-16', 'cluster.json'));
  process.stdout.write(renderClusterMarkdown(JSON.parse(readFileSync(file, 'utf8'))));
}
