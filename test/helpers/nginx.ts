/**
 * A real nginx of the test's own (Debian's `nginx`, installed by scripts/system-deps.mjs) in front
 * of backends on 127.0.0.1: a config file written to a temp dir, a free port, no root port, no
 * system file touched, stopped by the test's cleanup. Never a mock.
 *
 * The config is the one the README's "Behind a proxy or load balancer" recommends for WebSockets:
 * HTTP/1.1 to the upstream, the `Upgrade` and `Connection` headers passed on, round robin over the
 * backends, and a failed connect or a backend that does not answer tried on the next one. Each
 * server has `max_fails=0`: with nginx's default (1, with `fail_timeout=10s`) one refused connect
 * takes a backend out of rotation, and a WebSocket it then accepts counts as its recovery only
 * when that WebSocket ends, so a restarted backend gets about one new connection per
 * `fail_timeout`, and during a rolling restart nginx can find no backend at all
 * (502, "no live upstreams").
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cleanup } from './cleanup';
import { freePort } from './redis';
import { ms, now, sleep } from './time';

export interface NginxOptions {
  /** The backends' ports, all on 127.0.0.1: one `upstream`, round robin. */
  upstreams: number[];
  /** `proxy_read_timeout`, ms: an upgraded connection with no byte either way for this long is cut. @default 60000 */
  readTimeout?: number;
  /** `proxy_connect_timeout`, ms. @default 1000 */
  connectTimeout?: number;
  /** `worker_shutdown_timeout`, ms: how long an old worker keeps its connections after a reload. @default 1000 */
  shutdownTimeout?: number;
}

export interface TestNginx {
  port: number;
  /** `ws://127.0.0.1:<port>` */
  url: string;
  /** The master process (daemon off). */
  process: ChildProcess;
  /** `nginx -s reload`: new workers take new connections, old ones close theirs within `shutdownTimeout`. */
  reload(): void;
  /** The pids of the current worker processes. */
  workers(): number[];
  /** What nginx logged (warnings and errors). */
  log(): string;
  /** Fast shutdown (SIGTERM), waits for the master; SIGKILL to the whole group if it hangs. */
  kill(): Promise<void>;
}

/** Debian's nginx, where the package puts it (a PATH without /usr/sbin does not find it). */
const NGINX = '/usr/sbin/nginx';

/** nginx durations are whole units: milliseconds are written as `Nms`. */
const duration = (n: number): string => `${Math.max(1, Math.round(n))}ms`;

function config(dir: string, port: number, options: NginxOptions): string {
  const { upstreams, readTimeout = 60_000, connectTimeout = 1000, shutdownTimeout = 1000 } = options;
  return `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_shutdown_timeout ${duration(shutdownTimeout)};
events { worker_connections 4096; }
http {
  access_log off;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  upstream backends {
${upstreams.map((p) => `    server 127.0.0.1:${p} max_fails=0;`).join('\n')}
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_buffering off;
      proxy_connect_timeout ${duration(connectTimeout)};
      proxy_read_timeout ${duration(readTimeout)};
      proxy_send_timeout ${duration(readTimeout)};
      proxy_next_upstream error timeout;
    }
  }
}
`;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts nginx; resolves once it accepts connections on its port. */
export async function startNginx(cleanup: Cleanup, options: NginxOptions): Promise<TestNginx> {
  const dir = mkdtempSync(join(tmpdir(), 'wsh-nginx-'));
  cleanup.defer(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, config(dir, port, options));
  const log = (): string => {
    try {
      return readFileSync(join(dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  // Its own process group, so that a hung nginx and its workers can all be killed at once.
  const child = spawn(NGINX, ['-p', dir, '-c', file], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const hung = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), ms(5000));
    await exited;
    clearTimeout(hung);
  };
  cleanup.defer(kill);
  const spawned = new Promise<never>((_, reject) => {
    child.once('error', (error) => reject(new Error(`nginx could not be started (is the nginx package installed?): ${error.message}`)));
    void exited.then(() => reject(new Error(`nginx exited at start: ${stderr}${log()}`)));
  });
  const deadline = now() + ms(10_000);
  const ready = (async () => {
    while (child.exitCode === null && child.signalCode === null && !(await accepts(port))) {
      if (now() > deadline) throw new Error(`nginx did not listen within ${ms(10_000)} ms: ${stderr}${log()}`);
      await sleep(10);
    }
  })();
  await Promise.race([ready, spawned]);
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    process: child,
    reload() {
      const result = spawnSync(NGINX, ['-p', dir, '-c', file, '-s', 'reload'], { encoding: 'utf8' });
      if (result.status !== 0) throw new Error(`nginx -s reload failed: ${result.stderr}`);
    },
    workers() {
      const result = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' });
      return result.stdout.split('\n').filter(Boolean).map(Number);
    },
    log,
    kill,
  };
}
