#!/usr/bin/env node
// `pnpm demo:cluster` (after its build): a local redis-server and three demo processes
// (examples/server.mjs) on three ports, one cluster. Every dashboard shows all three nodes.
//   PORT=8080 node scripts/demo-cluster.mjs   the demos on PORT, PORT+1, PORT+2 (default 8080; 0: free ports)
//   REDIS_URL=redis://…                       use that Redis instead of starting one
// Redis runs on a free port of 127.0.0.1 without persistence (--save "" --appendonly no). Ctrl-C
// or SIGTERM: each demo gets one SIGTERM and exits by itself, then Redis is stopped the same way;
// a second signal kills everything at once (exit code 1).
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SERVER = join(ROOT, 'examples', 'server.mjs');
const NODES = 3;
const BASE_PORT = Number(process.env.PORT || 8080);
const HOST = process.env.HOST || '127.0.0.1';
/** How long Redis and each demo may take to say they are ready. */
const START_TIMEOUT_MS = 10_000;
const URL_LINE = /listening on (http:\/\/\S+)/;

function say(line) {
  console.log(`demo:cluster: ${line}`);
}

/** A port of 127.0.0.1 that was free a moment ago (redis-server cannot take port 0). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Calls `onLine` with each complete line of `stream`. */
function eachLine(stream, onLine) {
  let pending = '';
  stream.setEncoding('utf8').on('data', (chunk) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const line of lines) onLine(line);
  });
}

/**
 * Spawns a child in a process group of its own, so that a Ctrl-C in the terminal reaches only this
 * script, which then stops each child once. `ready(line)` recognises the line that says it is up.
 */
function start(name, command, args, { env, ready, echo }) {
  const child = spawn(command, args, { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // Not spawned at all (no such command): there will be no 'exit'.
    child.once('error', () => child.pid === undefined && resolve({ code: null, signal: null }));
  });
  const up = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${START_TIMEOUT_MS} ms:\n${output.join('\n')}`)), START_TIMEOUT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${name} could not be started: ${error.message}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (code ${code}, signal ${signal}) before it was up:\n${output.join('\n')}`));
    });
    const onLine = (stream) => (line) => {
      output.push(line);
      if (echo) stream.write(`[${name}] ${line}\n`);
      const result = ready(line);
      if (result) {
        clearTimeout(timer);
        resolve(result);
      }
    };
    eachLine(child.stdout, onLine(process.stdout));
    eachLine(child.stderr, onLine(process.stderr));
  });
  return { name, child, up, exited };
}

const children = [];
let stopping = false;

/** Stops the demos (each exits by itself after one SIGTERM), then Redis; exits 1 if any did not exit cleanly. */
async function stop(reason) {
  if (stopping) {
    say(`${reason} again: killing everything now`);
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    process.exit(1);
  }
  stopping = true;
  const redis = children.find(({ name }) => name === 'redis');
  const demos = children.filter((entry) => entry !== redis);
  const names = [...demos.map(({ name }) => name), ...(redis === undefined ? [] : ['then redis'])];
  say(`${reason}: stopping ${names.length === 0 ? 'nothing' : names.join(', ')} (send it again to kill them at once)`);
  let clean = reason === 'SIGINT' || reason === 'SIGTERM';
  const stopOne = async ({ name, child, exited }) => {
    // One that ended before (Redis stopped by hand) was reported then: only those stopped here count.
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const { code, signal } = await exited;
    say(`${name} (pid ${child.pid}) exited with ${signal === null ? `code ${code}` : `signal ${signal}`}`);
    if (code !== 0) clean = false;
  };
  // The demos first, so that each leaves the cluster through Redis (its keys go offline at once).
  await Promise.all(demos.map(stopOne));
  if (redis !== undefined) await stopOne(redis);
  process.exitCode = clean ? 0 : 1;
}

process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));

try {
  if (!Number.isInteger(BASE_PORT) || BASE_PORT < 0 || BASE_PORT > 65535 - (NODES - 1)) throw new Error(`PORT must be a port number from 0 to ${65535 - (NODES - 1)}: got ${process.env.PORT}`);
  let redisUrl = process.env.REDIS_URL;
  if (redisUrl === undefined || redisUrl === '') {
    const version = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
    if (version.error !== undefined || version.status !== 0) {
      console.error(
        'demo:cluster: redis-server was not found. Install Debian\'s redis-server package (apt-get install redis-server), ' +
          'or run `node scripts/system-deps.mjs` as root, which installs it with the tests\' other system packages. ' +
          'Or point REDIS_URL at a Redis you run.',
      );
      process.exit(1);
    }
    const port = await freePort();
    const redis = start('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      env: process.env,
      ready: (line) => line.includes('Ready to accept connections'),
      echo: false,
    });
    children.push(redis);
    await redis.up;
    redisUrl = `redis://127.0.0.1:${port}`;
    say(`redis-server (pid ${redis.child.pid}) on ${redisUrl}, without persistence`);
  } else {
    say(`using the Redis at REDIS_URL`);
  }

  const urls = [];
  // One after the other, so that their output reads in order and each sees the ones before it.
  for (let i = 0; i < NODES && !stopping; i++) {
    const port = BASE_PORT === 0 ? 0 : BASE_PORT + i;
    let url;
    const demo = start(port === 0 ? `node ${i + 1}` : String(port), process.execPath, [SERVER], {
      env: { ...process.env, HOST, PORT: String(port), REDIS_URL: redisUrl },
      // Up once it said whether it joined the cluster (the line after its URL line).
      ready: (line) => {
        url = URL_LINE.exec(line)?.[1] ?? url;
        return url !== undefined && /^(joined the cluster|warning:)/.test(line) && url;
      },
      echo: true,
    });
    children.push(demo);
    urls.push(`${await demo.up} (pid ${demo.child.pid})`);
  }
  if (!stopping) say(`${NODES} demos in one cluster: ${urls.join(', ')}. Each dashboard shows them all. Ctrl-C stops them and Redis.`);
  // A demo that ends by itself (a crash) ends the others too. Redis may go: the demos keep serving.
  for (const { name, child, exited } of children) {
    void exited.then(({ code, signal }) => {
      if (stopping) return;
      if (name !== 'redis') return stop(`${name} exited (${signal ?? `code ${code}`})`);
      say(
        `redis-server exited (${signal ?? `code ${code}`}): the demos keep serving WebSockets and show Redis unavailable. ` +
          `Start it again with: redis-server ${child.spawnargs.slice(1).map((arg) => (arg === '' ? '""' : arg)).join(' ')}`,
      );
    });
  }
} catch (error) {
  console.error(`demo:cluster: ${error.message}`);
  await stop('failed to start');
}
