#!/usr/bin/env node
// The whole test suite: install the Debian packages the fault suite's peers need and the runtimes
// of the conformance suite (when missing), type-check and build every package, type-check an ESM consumer of the built packages, run jest
// once over all tests,
// then print the plain summary line `N passed, N failed` derived from jest's results.
// Extra arguments go to jest (e.g. `pnpm test -- packages/core`).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { replaceRuntimeTable, runtimeTable } from './runtimes.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const outDir = join(root, 'test-results');
const resultsFile = join(outDir, 'jest.json');

function run(bin, args) {
  return spawnSync(process.execPath, [require.resolve(bin), ...args], { cwd: root, stdio: 'inherit' });
}

mkdirSync(outDir, { recursive: true });
rmSync(resultsFile, { force: true });

const deps = spawnSync(process.execPath, [join(root, 'scripts', 'system-deps.mjs')], { cwd: root, stdio: 'inherit' });
if (deps.status !== 0) console.error('system packages missing: the fault suite will fail');
// Node 22 and 24 and Bun for the runtime conformance suite (test/runtimes), pinned in
// runtimes/package-lock.json, installed into runtimes/node_modules when missing.
const runtimes = spawnSync(process.execPath, [join(root, 'scripts', 'runtimes.mjs')], { cwd: root, stdio: 'inherit' });
if (runtimes.status !== 0) console.error('runtimes missing: the runtime conformance suite will fail');

const tsc = run('typescript/bin/tsc', ['-p', 'tsconfig.json', '--noEmit']);
if (tsc.status !== 0) console.error('typecheck failed');
// Build every package to dist/ with its own build script (declarations included): the demo and
// its test run the built code, and the ESM consumer check below reads the built types.
// Each package's script sees its own tools first (the client's esbuild), then the root's (tsc), as
// under `pnpm run`.
const bin = join(root, 'node_modules', '.bin');
const build = ['protocol', 'core', 'fastify', 'express', 'client', 'cluster'].map((name) => {
  const cwd = join(root, 'packages', name);
  const { scripts } = JSON.parse(readFileSync(join(cwd, 'package.json'), 'utf8'));
  const env = { ...process.env, PATH: [join(cwd, 'node_modules', '.bin'), bin, process.env.PATH ?? ''].join(delimiter) };
  return spawnSync(scripts.build, { cwd, env, shell: true, stdio: 'inherit' });
});
if (build.some((b) => b.status !== 0)) console.error('build failed');
// How an ES-module TypeScript project sees the published packages (exports map, ESM types).
const esm = build.every((b) => b.status === 0) ? run('typescript/bin/tsc', ['-p', 'test/esm/tsconfig.json']) : { status: 1 };
if (esm.status !== 0) console.error('ESM consumer typecheck failed');
const typecheckFailed = tsc.status !== 0 || build.some((b) => b.status !== 0) || esm.status !== 0;

const jest = run('jest/bin/jest', ['--json', `--outputFile=${resultsFile}`, ...process.argv.slice(2)]);

let passed = 0;
let failed = typecheckFailed ? 1 : 0;
try {
  const results = JSON.parse(readFileSync(resultsFile, 'utf8'));
  passed += results.numPassedTests;
  failed += results.numFailedTests;
  // A suite that fails to load (syntax error, throw at import) counts no test: count it as one failure.
  failed += results.testResults.filter((r) => r.status === 'failed' && r.assertionResults.length === 0).length;
} catch {
  failed += 1;
}

// The README's "Runtimes" table is what this run of the conformance suite saw, when it ran whole.
try {
  const table = runtimeTable(JSON.parse(readFileSync(resultsFile, 'utf8')));
  const readme = join(root, 'README.md');
  if (table !== undefined) writeFileSync(readme, replaceRuntimeTable(readFileSync(readme, 'utf8'), table));
} catch (error) {
  console.error(`the README's runtimes table was not updated: ${error.message}`);
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(jest.status === 0 && !typecheckFailed && failed === 0 ? 0 : 1);
