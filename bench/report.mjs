#!/usr/bin/env node
// Renders benchmark results as Markdown: the table of every run, the ratios ours ÷ each peer,
// and the targets. `node bench/report.mjs [results.json]` rewrites BENCHMARKS.md from a results
// file (bench/results/latest.json by default) without running anything.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const OURS = 'ws-heartbeat';
const here = dirname(fileURLToPath(import.meta.url));

const fmt = (value, digits = 2) => (value === null || value === undefined || Number.isNaN(value) ? '–' : value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 }));
const ratio = (a, b) => (a === null || b === null || b === 0 || a === undefined || b === undefined ? null : a / b);
const times = (value) => (value === null ? '–' : `${fmt(value, value < 10 ? 2 : 1)}×`);

function detectionCell(run) {
  if (run.boundMs === null) return 'never';
  if (!run.detectionMs) return `0 / ${run.silentPeers}`;
  const { min, median, max } = run.detectionMs;
  const missed = run.silentPeers - run.detected;
  return `${fmt(min, 0)} / ${fmt(median, 0)} / ${fmt(max, 0)}${missed > 0 ? ` (${missed} never)` : ''}`;
}

/** A count of closed healthy peers with their reasons: `0`, or `379 (ws-heartbeat timeout: 379)`. */
function closesCell(count, reasons = {}) {
  if (!count) return '0';
  const why = Object.entries(reasons)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${reason}: ${fmt(n, 0)}`);
  return `**${fmt(count, 0)}** (${why.join(', ')})`;
}

/** A load process's event loop stalled longer than the timeout: its peers could not answer in time. */
function loadStalled(r) {
  return Math.max(r.loadLagMaxMs ?? 0, r.openLagMaxMs ?? 0) > r.timeout;
}

/**
 * One line per run: what went wrong in it, or that nothing did. The benchmark prints these last,
 * and a figure is only as good as its line.
 */
export function renderSummary({ runs }) {
  return runs.map((r) => {
    const detection = r.detectionMs ? `detection ${fmt(r.detectionMs.min, 1)} to ${fmt(r.detectionMs.max, 1)} ms (bound ${r.boundMs}, ${r.detected} of ${r.silentPeers} detected)` : 'no detection';
    return `${r.runtime ? `${r.runtime} ` : ''}${r.contender} N=${r.connections}: healthy peers closed outside the stall ${closesCell(r.unexpectedCloses, r.unexpectedCloseReasons).replace(/\*/g, '')}; false terminations in the stall ${r.falseTerminations}; ${detection}; load processes' worst delay ${fmt(r.loadLagMaxMs, 0)} ms (opening ${fmt(r.openLagMaxMs, 0)} ms)${loadStalled(r) ? ', LONGER THAN THE TIMEOUT: the load generator, not the contender, may have failed its peers' : ''}`;
  });
}

/** One Markdown table per N: every contender's figures. */
export function renderTable({ runs }) {
  const lines = [];
  for (const n of [...new Set(runs.map((r) => r.connections))]) {
    lines.push(`#### N = ${n.toLocaleString('en-US')} connections`, '');
    lines.push('| contender | probe RTT p50 / p99 / max (ms) | heartbeat CPU per interval (ms) | heap per connection above `none` (bytes) | detection min / median / max (ms) | promised bound (ms) | worst ÷ bound | false terminations | healthy peers closed outside the stall |');
    lines.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const r of runs.filter((run) => run.connections === n)) {
      const name = r.contender === OURS ? `**${OURS}**` : r.contender;
      const lost = r.probeLost > 0 ? ` (${r.probeLost} lost)` : '';
      lines.push(
        `| ${name} | ${fmt(r.probeRttP50Ms)} / ${fmt(r.probeRttP99Ms)} / ${fmt(r.probeRttMaxMs, 1)}${lost} | ${fmt(r.cpuMsPerInterval)} | ${fmt(r.heapBytesPerConnection, 0)} | ${detectionCell(r)} | ${r.boundMs ?? '–'} | ${r.detectionRatio ? fmt(r.detectionRatio.max, 3) : '–'} | ${r.falseTerminations} | ${closesCell(r.unexpectedCloses, r.unexpectedCloseReasons)} |`,
      );
    }
    const here = runs.filter((run) => run.connections === n && run.loadLagMaxMs !== undefined);
    if (here.length > 0) {
      const lag = (r) => `${r.contender} ${fmt(r.loadLagMaxMs, 0)} ms${r.openLagMaxMs !== undefined ? ` (${fmt(r.openLagMaxMs, 0)} ms while opening)` : ''}`;
      lines.push('', `Load processes' worst event-loop delay: ${here.map(lag).join(', ')}.`);
      const stalled = here.filter(loadStalled);
      if (stalled.length > 0) {
        lines.push('', `**The load generator stalled longer than the timeout** for ${stalled.map((r) => r.contender).join(', ')}: healthy peers there may have missed a heartbeat through no fault of the contender.`);
      }
    }
    lines.push('');
  }
  return lines.join('\n');
}

/** Ours ÷ each peer at each N: below 1 means ours is lower (better) on that figure. */
export function renderRatios({ runs }) {
  const lines = [
    '| N | peer | probe p99 | probe max | heartbeat CPU | heap above `none` | worst detection ÷ bound |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const n of [...new Set(runs.map((r) => r.connections))]) {
    const ours = runs.find((r) => r.connections === n && r.contender === OURS);
    if (!ours) continue;
    for (const peer of runs.filter((r) => r.connections === n && r.contender !== OURS)) {
      const cpu = peer.contender === 'none' ? null : ratio(ours.cpuMsPerInterval, peer.cpuMsPerInterval);
      const heap = peer.contender === 'none' ? null : ratio(ours.heapBytesPerConnection, peer.heapBytesPerConnection);
      const detection = ratio(ours.detectionRatio?.max, peer.detectionRatio?.max);
      lines.push(
        `| ${n.toLocaleString('en-US')} | ${peer.contender} | ${times(ratio(ours.probeRttP99Ms, peer.probeRttP99Ms))} | ${times(ratio(ours.probeRttMaxMs, peer.probeRttMaxMs))} | ${times(cpu)} | ${times(heap)} | ${times(detection)} |`,
      );
    }
  }
  return lines.join('\n');
}

/** The targets (issue 19's) at the largest N, each with the measured figure and met / missed. */
export function renderTargets({ runs }) {
  const n = Math.max(...runs.map((r) => r.connections));
  const at = (name, size = n) => runs.find((r) => r.connections === size && r.contender === name);
  const ours = at(OURS);
  const readme = at('ws-readme');
  const floor = at('floor');
  if (!ours) return `No run of ${OURS} at N = ${n}.`;
  const rows = [];
  const add = (goal, measured, met) => rows.push(`| ${goal} | ${measured} | ${met === null ? '–' : met ? 'met' : '**missed**'} |`);
  const cpuVs = (peer, limit, size = n) => {
    const mine = at(OURS, size);
    const theirs = at(peer, size);
    if (!mine || !theirs) return;
    const r = ratio(mine.cpuMsPerInterval, theirs.cpuMsPerInterval);
    add(`${size === n ? '' : `N = ${size.toLocaleString('en-US')}: `}heartbeat CPU per interval ≤ ${limit} × \`${peer}\``, `${fmt(mine.cpuMsPerInterval)} ms vs ${fmt(theirs.cpuMsPerInterval)} ms (${times(r)})`, r === null ? null : r <= limit);
  };
  cpuVs('ws-readme', 0.8);
  if (floor) cpuVs('floor', 1.5);
  if (readme) {
    const p99 = ratio(ours.probeRttP99Ms, readme.probeRttP99Ms);
    add('probe RTT p99 ≤ 1/40 of `ws-readme`', `${fmt(ours.probeRttP99Ms)} ms vs ${fmt(readme.probeRttP99Ms)} ms (${times(p99)})`, p99 === null ? null : p99 <= 1 / 40);
  }
  add('heap per connection ≤ 128 bytes above `none`', `${fmt(ours.heapBytesPerConnection, 0)} bytes`, ours.heapBytesPerConnection === null ? null : ours.heapBytesPerConnection <= 128);
  const inside = ours.detectionRatio ? ours.detected === ours.silentPeers && ours.detectionRatio.max <= 1.02 : false;
  add('every silent peer detected within 1.02 × our bound', `${ours.detected} of ${ours.silentPeers}, worst ${ours.detectionRatio ? fmt(ours.detectionRatio.max, 3) : '–'} × bound`, inside);
  add('zero false terminations', String(ours.falseTerminations), ours.falseTerminations === 0);
  add('zero healthy peers closed outside the stall', closesCell(ours.unexpectedCloses, ours.unexpectedCloseReasons), !ours.unexpectedCloses);
  if (ours.detectionMs && ours.boundMs) {
    const floor = ours.boundMs - 5; // interval + timeout: never earlier
    add('no silent peer detected before `interval + timeout`', `earliest ${fmt(ours.detectionMs.min, 1)} ms vs ${floor} ms`, ours.detectionMs.min >= floor - 1);
  }
  for (const size of [1_000, 5_000]) if (size !== n) cpuVs('ws-readme', 1.0, size);
  return [`At N = ${n.toLocaleString('en-US')} (and where named, at other N):`, '', '| target | measured | |', '| --- | --- | --- |', ...rows].join('\n');
}

export function renderMarkdown(results, { resultsPath }) {
  const { machine, settings } = results;
  const analysisFile = join(here, 'analysis.md');
  const analysis = existsSync(analysisFile) ? readFileSync(analysisFile, 'utf8').trim() : '';
  return `<!-- Generated by bench/run.mjs --full (or node bench/report.mjs) from ${resultsPath}; edit bench/report.mjs or bench/analysis.md instead. -->
# Benchmarks

\`@ws-heartbeat/core\` against what users would pick instead, side by side in one run on one
machine, every contender under the same client load.

## How to run

\`\`\`sh
npx -y pnpm@10 install
npx -y pnpm@10 bench             # quick: N = 1,000, about six minutes → bench/results/quick.json
npx -y pnpm@10 bench -- --full   # N = 1,000, 5,000, 10,000, 19,000 → bench/results/latest.json and this file
npx -y pnpm@10 bench -- --runtime all   # the servers under Node 20, 22, 24 and Bun: N = 5,000 and 19,000 → bench/results/runtimes.json and the Runtimes section of this file
\`\`\`

Options: \`--connections 1000,5000\`, \`--contenders none,ws-readme,ws-heartbeat\`, \`--interval\`
and \`--timeout\` (ms), \`--window\` and \`--cpu-window\` (intervals measured for the probe and for
CPU), \`--per-process\` and \`--batch\` (the load), \`--out\` and \`--markdown\` (where results go),
\`--trace\` (instrumentation; see below), \`--runtime node22,bun\` (the servers under those runtimes,
from \`scripts/runtimes.mjs\`, which installs them when missing; \`all\` for every one).
\`--profile\` runs V8's sampling profiler in the server over the quiet CPU window: a
\`.cpuprofile\` per run in \`bench/results/profiles/\` and its top frames in the log and the results
(\`node bench/profile.mjs <file>\` prints them again; the profiler's own cost inflates that run's
CPU figures). \`BENCH_SERVER_FLAGS="--cpu-prof"\` passes Node flags to the server processes.
\`node bench/report.mjs\` rewrites this file from \`bench/results/latest.json\`.

## The contenders

| id | what |
| --- | --- |
| \`none\` | \`ws\` with no heartbeat: the baseline that CPU and heap are counted above |
| \`floor\` | the yardstick, not a product: a prebuilt ping frame written straight to each raw socket in even 5 ms ticks, pongs not even counted, no verdicts (a dead peer is never found). Its CPU is the wire's floor: one 2-byte write and one small read per connection per interval |
| \`ws-readme\` | the \`ws\` README recipe: one \`setInterval\` over \`wss.clients\`, an \`isAlive\` flag per client |
| \`ws-heartbeat-npm\` | the \`ws-heartbeat\` package from npm (${machine['ws-heartbeat (npm)']}), as its README shows: clients send app-level pings every I, the server \`close()\`s connections silent for I + T |
| \`per-connection-timers\` | a \`setTimeout\` per connection, engine.io style: ping I after the last pong, terminate T after the ping |
| \`socket.io\` | socket.io ${machine['socket.io']} with \`socket.io-client\` peers, websocket transport, \`pingInterval\` = I, \`pingTimeout\` = T |
| **\`ws-heartbeat\`** | ours: \`@ws-heartbeat/core\`'s \`Heartbeat\` on the same \`WebSocketServer\` |

Settings: interval I = ${settings.interval} ms, timeout T = ${settings.timeout} ms. Every run sees
more than 30 intervals: ${settings.cpuIntervals} for CPU, ${settings.windowIntervals} for the probe, plus settling, detection and the stall.

## How each figure is taken

- **Probe RTT**: a separate process sends a small message at exponential gaps (mean 5 ms) on
  its own connection and the server echoes it, for ${settings.windowIntervals} intervals. A server
  that blocks its event loop shows up as late echoes.
- **Heartbeat CPU per interval**: the server's \`process.cpuUsage()\` (user + system) over
  ${settings.cpuIntervals} quiet intervals before the probe starts, per interval, minus \`none\`'s
  at the same N.
- **Heap per connection above \`none\`**: \`heapUsed + arrayBuffers\` after \`global.gc()\`, with
  N connections minus before any, per connection, minus \`none\`'s. Typed arrays count: they
  live outside the JS heap.
- **Detection**: 5% of the peers go silent (stop reading and writing, as a hung process would) at
  known times spread over one interval; the time from each one's last frame to the server's
  \`close\` event, min / median / max, and the worst divided by the contender's own promised bound.
- **Healthy peers closed outside the stall**: every healthy peer the server closed before the
  stall phase (while connections opened, settled, were measured and while the silent peers were
  detected), with the reason the server gave. Every contender promises zero; a figure in a row
  with such closes was taken with fewer live peers than it says.
- **False terminations**: healthy peers closed after the server busy-waits for
  ${fmt(settings.stallMs, 0)} ms (3 × (I + T)), starting in the event-loop turn right after a
  heartbeat frame went out, while the answers are in flight.
- Load: connections opened in batches of ${settings.batch} from processes of at most
  ${settings.perProcess.toLocaleString('en-US')} connections each (the open-file limit is 20,000 per process).
  Each connection carries one message each way when it opens, as real connections do. A load
  process that stalls longer than the timeout would make its healthy peers look dead, so each
  reports its worst event-loop delay, while it opened its connections and after, printed under
  each table (and flagged there when it exceeds the timeout).
- \`--trace\` (not used for the tables) records, for every healthy peer that was closed, when the
  server wrote its last ping, when the peer received it, and the event-loop blocks of every
  process, and prints who was late.

## Machine

${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB; ${machine.os}; Node ${machine.node}; \`ws\` ${machine.ws}; commit ${machine.commit ?? 'unknown'}; ${machine.date.slice(0, 10)}.

## Results

${renderTable(results)}
## Ours ÷ each peer

Below 1× means ours is lower, which is better for every column.

${renderRatios(results)}

## Targets

${renderTargets(results)}
${analysis ? `\n${analysis}\n` : ''}`;
}

const COST_BEGIN = '<!-- cost: generated by node bench/report.mjs --cost <results.json…>; do not edit -->';
const COST_END = '<!-- end of cost -->';

/**
 * The "Cost of a heartbeat" figures of BENCHMARKS.md from one or more runs of none, floor,
 * ws-readme and ours (`pnpm bench -- --connections 1000,5000,10000,19000 --contenders
 * none,floor,ws-readme,ws-heartbeat`): per run and N, each one's CPU above `none` per interval,
 * per connection and as a share of one core, ours ÷ floor and ÷ ws-readme, and what went wrong in
 * the run in columns of their own; then the targets of each run.
 */
export function renderCost(files) {
  const lines = [COST_BEGIN];
  for (const { path, results } of files) {
    const { runs, machine, settings } = results;
    lines.push(`#### Run of ${machine.date.slice(0, 16).replace('T', ' ')} UTC at ${machine.commit ?? 'an uncommitted tree'} ([${path}](${path}))`, '');
    lines.push(`Interval ${settings.interval} ms, timeout ${settings.timeout} ms.`, '');
    lines.push('| N | contender | heartbeat CPU per interval (ms) | per connection per interval (µs) | of one core | server CPU, of one core | ours ÷ it: CPU | probe p99 / max (ms) | heap above `none` (B) | detection worst ÷ bound (detected) | false terminations | healthy peers closed outside the stall |');
    lines.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const n of [...new Set(runs.map((r) => r.connections))]) {
      const here = runs.filter((r) => r.connections === n);
      const ours = here.find((r) => r.contender === OURS);
      for (const r of here) {
        // `none` is the baseline: its own CPU (the server with no heartbeat) and latency only.
        const base = r.contender === 'none';
        const perConnection = base || r.cpuMsPerInterval === null ? null : (r.cpuMsPerInterval * 1000) / n;
        const vs = r.contender === OURS || base || !ours ? '' : times(ratio(ours.cpuMsPerInterval, r.cpuMsPerInterval));
        const detection = r.detectionRatio ? `${fmt(r.detectionRatio.max, 3)} (${r.detected} of ${r.silentPeers})` : '–';
        lines.push(
          `| ${n.toLocaleString('en-US')} | ${r.contender === OURS ? `**${OURS}**` : r.contender} | ${base ? '–' : fmt(r.cpuMsPerInterval)} | ${fmt(perConnection, 1)} | ${base ? '–' : coreShare(r.cpuMsPerInterval, r.interval)} | ${coreShare(r.cpuMsPerIntervalRaw, r.interval)} | ${vs} | ${fmt(r.probeRttP99Ms)} / ${fmt(r.probeRttMaxMs, 1)} | ${base ? '–' : fmt(r.heapBytesPerConnection, 0)} | ${detection} | ${r.falseTerminations} | ${closesCell(r.unexpectedCloses, r.unexpectedCloseReasons)} |`,
        );
      }
    }
    const stalled = runs.filter(loadStalled);
    if (stalled.length > 0) lines.push('', `**The load generator stalled longer than the timeout** in: ${stalled.map((r) => `${r.contender} N=${r.connections}`).join(', ')}.`);
    // The targets are set at interval 1 s (the heaviest ping rate); other runs are read against `none`.
    lines.push('', settings.interval === 1000 ? renderTargets(results) : renderAgainstNone(results), '');
  }
  lines.push(COST_END);
  return lines.join('\n');
}

/** CPU time per interval as a share of one core ('–' when not measured). */
function coreShare(ms, interval) {
  return ms === null || ms === undefined ? '–' : `${fmt((ms / interval) * 100, 2)}%`;
}

/** At each N: ours against `none` in a sentence, CPU as a share of one core and probe p99 (the figures a user plans capacity with). */
function renderAgainstNone({ runs }) {
  const lines = [];
  for (const n of [...new Set(runs.map((r) => r.connections))]) {
    const at = (name) => runs.find((r) => r.connections === n && r.contender === name);
    const ours = at(OURS);
    const none = at('none');
    if (!ours || !none) continue;
    lines.push(
      `At N = ${n.toLocaleString('en-US')}: the server with ${OURS} used ${coreShare(ours.cpuMsPerIntervalRaw, ours.interval)} of one core, \`none\` ${coreShare(none.cpuMsPerIntervalRaw, none.interval)}: the heartbeat's share is ${coreShare(ours.cpuMsPerInterval, ours.interval)}. Probe p99 ${fmt(ours.probeRttP99Ms)} ms against ${fmt(none.probeRttP99Ms)} ms (max ${fmt(ours.probeRttMaxMs, 1)} against ${fmt(none.probeRttMaxMs, 1)}).`,
    );
  }
  return lines.join('\n\n') || `No run of ${OURS} beside \`none\`.`;
}

/** Puts a generated section in BENCHMARKS.md between its markers: in place of the previous one, or at the end. */
function writeSection(target, begin, end, section) {
  const existing = existsSync(target) ? readFileSync(target, 'utf8') : '';
  const from = existing.indexOf(begin);
  const to = existing.indexOf(end);
  const next = from === -1 || to === -1 ? `${existing.trimEnd()}\n\n${section}\n` : existing.slice(0, from) + section + existing.slice(to + end.length);
  writeFileSync(target, next);
}

const RUNTIMES_BEGIN = '<!-- runtimes: generated by bench/run.mjs --runtime; do not edit -->';
const RUNTIMES_END = '<!-- end of runtimes -->';

/**
 * The "Runtimes" section of BENCHMARKS.md: per N, each runtime's none, ws-readme and ours, with
 * ours ÷ ws-readme on the figures that matter, and what went wrong in each run in its own columns.
 */
export function renderRuntimes(results, { resultsPath }) {
  const { runs, machine, settings } = results;
  const lines = [
    RUNTIMES_BEGIN,
    '## Runtimes',
    '',
    `The same benchmark with the **server** under each runtime (\`pnpm bench -- --runtime all\`): the load, the probe and the harness run under Node ${machine.node.replace(/^v/, '')}. Run of ${machine.date.slice(0, 10)} at ${machine.commit ?? 'an uncommitted tree'}, interval ${settings.interval} ms, timeout ${settings.timeout} ms, ${machine.cores} cores; raw figures in [${resultsPath}](${resultsPath}).`,
    '',
    "CPU here is the server process's user + system time from `/proc/<pid>/stat` (10 ms ticks), the same measure under every runtime: Bun's `process.cpuUsage()` reports no user time. Heap is `process.memoryUsage()` after `gc()` as each runtime reports it; JavaScriptCore (Bun) counts it differently from V8, so compare heap only within a runtime.",
    '',
  ];
  for (const n of [...new Set(runs.map((r) => r.connections))]) {
    lines.push(`### N = ${n.toLocaleString('en-US')} connections`, '');
    lines.push('| runtime | contender | probe RTT p99 / max (ms) | heartbeat CPU per interval above `none` (ms) | heap per connection above `none` (bytes) | detection worst ÷ bound (detected) | ours ÷ ws-readme: CPU / probe p99 | false terminations | healthy peers closed outside the stall |');
    lines.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const runtime of [...new Set(runs.map((r) => r.runtime))]) {
      const here = runs.filter((r) => r.connections === n && r.runtime === runtime);
      const readme = here.find((r) => r.contender === 'ws-readme');
      for (const r of here) {
        const name = r.contender === OURS ? `**${OURS}**` : r.contender;
        const vsReadme = r.contender === OURS && readme ? `${times(ratio(r.cpuMsPerInterval, readme.cpuMsPerInterval))} / ${times(ratio(r.probeRttP99Ms, readme.probeRttP99Ms))}` : '';
        const detection = r.detectionRatio ? `${fmt(r.detectionRatio.max, 3)} (${r.detected} of ${r.silentPeers})` : '–';
        lines.push(
          `| ${runtime} | ${name} | ${fmt(r.probeRttP99Ms)} / ${fmt(r.probeRttMaxMs, 1)} | ${r.contender === 'none' ? '–' : fmt(r.cpuMsPerInterval)} | ${r.contender === 'none' ? '–' : fmt(r.heapBytesPerConnection, 0)} | ${detection} | ${vsReadme} | ${r.falseTerminations} | ${closesCell(r.unexpectedCloses, r.unexpectedCloseReasons)} |`,
        );
      }
    }
    const stalled = runs.filter((r) => r.connections === n && loadStalled(r));
    if (stalled.length > 0) lines.push('', `**The load generator stalled longer than the timeout** in: ${stalled.map((r) => `${r.runtime} ${r.contender}`).join(', ')}.`);
    lines.push('');
  }
  lines.push(RUNTIMES_END);
  return lines.join('\n');
}

/** Puts the runtimes section in BENCHMARKS.md: in place of the previous one, or at the end. */
export function writeRuntimes(target, section) {
  writeSection(target, RUNTIMES_BEGIN, RUNTIMES_END, section);
}

/** Where the generated part of BENCHMARKS.md ends: the sections after it are written by hand (the cluster's). */
const HAND_WRITTEN = '\n## Cluster (Redis)\n';

/** Writes the generated Markdown to `target`, keeping the hand-written sections at its end. */
export function writeBenchmarks(target, markdown) {
  const existing = existsSync(target) ? readFileSync(target, 'utf8') : '';
  const kept = existing.indexOf(HAND_WRITTEN);
  writeFileSync(target, kept === -1 ? markdown : `${markdown.trimEnd()}\n${existing.slice(kept)}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url) && process.argv[2] === '--cost') {
  // node bench/report.mjs --cost a.json [b.json…]: the cost figures, in place in BENCHMARKS.md.
  const target = join(here, '..', 'BENCHMARKS.md');
  const files = process.argv.slice(3).map((file) => ({ path: relative(dirname(target), resolve(file)), results: JSON.parse(readFileSync(file, 'utf8')) }));
  writeSection(target, COST_BEGIN, COST_END, renderCost(files));
  console.error(`wrote the cost section of ${relative(process.cwd(), target)}`);
} else if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = resolve(process.argv[2] ?? join(here, 'results', 'latest.json'));
  const target = join(here, '..', 'BENCHMARKS.md');
  writeBenchmarks(target, renderMarkdown(JSON.parse(readFileSync(file, 'utf8')), { resultsPath: relative(dirname(target), file) }));
  console.error(`wrote ${relative(process.cwd(), target)}`);
}
