#!/usr/bin/env node
// Where a server's CPU time goes: the self time of each function in a V8 CPU profile (a
// .cpuprofile, as `pnpm bench -- --profile` writes one per run over the quiet CPU window), and the
// same time summed by whose code it is (ours, `ws`, Node's own JavaScript, native work such as
// syscalls and GC).
//
//   node bench/profile.mjs bench/results/profiles/ws-heartbeat-19000.cpuprofile [more…]

import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Whose code a frame is. */
export function ownerOf({ functionName, url }) {
  if (url === '') {
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(garbage collector)') return 'gc';
    // A native binding called from JavaScript (writeBuffer, now(), ...), or (program): native work
    // not attributed to a JavaScript function (libuv, syscalls outside a binding).
    return 'native';
  }
  if (url.includes('/packages/core/') || url.includes('@ws-heartbeat/core')) return 'ours';
  if (url.includes('/node_modules/ws/') || url.includes('/ws/lib/')) return 'ws';
  if (url.startsWith('node:')) return 'node';
  if (url.includes('/bench/')) return 'harness';
  return 'other';
}

/**
 * Self time per function, and per owner, in ms. `busyMs` is everything but idle: the shares are
 * of that, the time the process was on a CPU as V8 saw it.
 */
export function summarize(profile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const frames = new Map();
  const owners = {};
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const { callFrame } = byId.get(id);
    const owner = ownerOf(callFrame);
    totalUs += us;
    if (owner === 'idle') {
      idleUs += us;
      continue;
    }
    owners[owner] = (owners[owner] ?? 0) + us;
    const where = callFrame.url === '' ? '' : `${basename(callFrame.url)}:${callFrame.lineNumber + 1}`;
    const key = `${callFrame.functionName || '(anonymous)'} ${where}`;
    const frame = frames.get(key) ?? { name: callFrame.functionName || '(anonymous)', where, owner, us: 0 };
    frame.us += us;
    frames.set(key, frame);
  }
  const busyUs = totalUs - idleUs;
  const share = (us) => (busyUs === 0 ? 0 : us / busyUs);
  return {
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    owners: Object.fromEntries(
      Object.entries(owners)
        .sort((a, b) => b[1] - a[1])
        .map(([owner, us]) => [owner, { ms: us / 1000, share: share(us) }]),
    ),
    frames: [...frames.values()].sort((a, b) => b.us - a.us).map(({ us, ...frame }) => ({ ...frame, ms: us / 1000, share: share(us) })),
  };
}

const pct = (share) => `${(share * 100).toFixed(1)}%`;

/** A Markdown table of the top frames of one summary, and a line of the shares per owner. */
export function renderProfile(title, summary, top = 12) {
  const lines = [
    `**${title}**: ${summary.busyMs.toFixed(0)} ms on a CPU in ${summary.totalMs.toFixed(0)} ms profiled; by owner: ${Object.entries(summary.owners)
      .map(([owner, { share }]) => `${owner} ${pct(share)}`)
      .join(', ')}.`,
    '',
    '| frame | where | owner | self time | share |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const frame of summary.frames.slice(0, top)) lines.push(`| \`${frame.name}\` | ${frame.where || '–'} | ${frame.owner} | ${frame.ms.toFixed(0)} ms | ${pct(frame.share)} |`);
  return lines.join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const file of process.argv.slice(2)) {
    console.log(`${renderProfile(basename(file), summarize(JSON.parse(readFileSync(file, 'utf8'))))}\n`);
  }
}
