// The cluster benchmark's Redis: a redis-server of its own on a free port (no persistence), and a
// small RESP2 connection for the harness's own reads (INFO, MEMORY USAGE, HLEN, ...). The harness
// does not use @redis/client: it is not a dependency of the benchmarks, and the figures should
// not depend on the client under test.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { sleep } from './lib.mjs';

/** A port the kernel says is free now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `redis-server` on a free port, without persistence (`--save "" --appendonly no`), and
 * resolves once it answers PING. `stop()` ends it (SIGTERM, SIGKILL after 3 s).
 */
export async function startRedis({ binary = 'redis-server' } = {}) {
  const port = await freePort();
  const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const spawnError = new Promise((_, reject) => child.once('error', (error) => reject(new Error(`${binary} could not start: ${error.message}`))));
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null) throw new Error(`${binary} exited (${child.exitCode}): ${stderr.trim()}`);
    try {
      const redis = await Promise.race([connect(port), spawnError]);
      await redis.call('PING');
      redis.close();
      break;
    } catch (error) {
      if (attempt >= 50 || String(error).includes('could not start')) throw error;
      await sleep(100);
    }
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A RESP2 reply from `buffer` at `offset`: `{ value, next }`, or undefined while incomplete. Error replies are `Error` values. */
function parse(buffer, offset) {
  const end = buffer.indexOf('\r\n', offset);
  if (end === -1) return undefined;
  const type = String.fromCharCode(buffer[offset]);
  const line = buffer.toString('utf8', offset + 1, end);
  const next = end + 2;
  switch (type) {
    case '+':
      return { value: line, next };
    case '-':
      return { value: new Error(line), next };
    case ':':
      return { value: Number(line), next };
    case '$': {
      const length = Number(line);
      if (length === -1) return { value: null, next };
      if (buffer.length < next + length + 2) return undefined;
      return { value: buffer.toString('utf8', next, next + length), next: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count === -1) return { value: null, next };
      const items = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parse(buffer, at);
        if (item === undefined) return undefined;
        items.push(item.value);
        at = item.next;
      }
      return { value: items, next: at };
    }
    default:
      throw new Error(`RESP: unexpected type byte ${JSON.stringify(type)}`);
  }
}

/** One connection to Redis: `call(...args)` sends a command and resolves with its reply (rejects with an error reply). */
export function connect(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const waiting = [];
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      let reply;
      while (buffer.length > 0 && (reply = parse(buffer, 0)) !== undefined) {
        buffer = buffer.subarray(reply.next);
        const { resolve: settle, reject: fail } = waiting.shift();
        if (reply.value instanceof Error) fail(reply.value);
        else settle(reply.value);
      }
    });
    const failAll = (error) => {
      for (const { reject: fail } of waiting.splice(0)) fail(error);
    };
    socket.on('error', (error) => {
      failAll(error);
      reject(error);
    });
    socket.on('close', () => failAll(new Error('Redis connection closed')));
    socket.once('connect', () =>
      resolve({
        call(...args) {
          const parts = [`*${args.length}\r\n`];
          for (const arg of args) {
            const text = String(arg);
            parts.push(`$${Buffer.byteLength(text)}\r\n${text}\r\n`);
          }
          return new Promise((settle, fail) => {
            waiting.push({ resolve: settle, reject: fail });
            socket.write(parts.join(''));
          });
        },
        close() {
          socket.end();
        },
      }),
    );
  });
}

/** An INFO reply as `{ field: value }` (numbers where they are numbers); `cmdstat_*` lines as `{ calls, usec, ... }`. */
export function parseInfo(text) {
  const info = {};
  for (const line of text.split('\r\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1);
    if (name.startsWith('cmdstat_')) {
      info[name] = Object.fromEntries(value.split(',').map((pair) => pair.split('=')).map(([k, v]) => [k, Number(v)]));
    } else {
      info[name] = value !== '' && !Number.isNaN(Number(value)) ? Number(value) : value;
    }
  }
  return info;
}
