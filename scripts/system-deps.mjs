#!/usr/bin/env node
// The Debian packages the test suite's real third-party peers, network faults and browser need,
// installed when missing (the test command runs this first; CI and a fresh machine have none of them):
//   python3-websockets  Python's `websockets`, a client with its own keepalive (/usr/bin/python3)
//   iptables, iproute2  a peer that vanishes without FIN, in a network namespace of the suite's own
//   chromium            the browser that the dashboard test drives with playwright-core (/usr/bin/chromium)
//   redis-server        the Redis that the cluster tests start, one per test, on a free port
//   nginx               the reverse proxy that the HA suite (test/ha) puts in front of three backends
// Installing needs root (as on these machines); without it this says what to install and fails.
import { spawnSync } from 'node:child_process';

const CHECKS = [
  { pkg: 'python3-websockets', cmd: '/usr/bin/python3', args: ['-c', 'import websockets'] },
  { pkg: 'iptables', cmd: 'iptables', args: ['--version'] },
  { pkg: 'iproute2', cmd: 'ip', args: ['-V'] },
  { pkg: 'chromium', cmd: '/usr/bin/chromium', args: ['--version'] },
  { pkg: 'redis-server', cmd: 'redis-server', args: ['--version'] },
  { pkg: 'nginx', cmd: '/usr/sbin/nginx', args: ['-v'] },
];

const ok = ({ cmd, args }) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const missing = CHECKS.filter((check) => !ok(check)).map((check) => check.pkg);
if (missing.length === 0) process.exit(0);

if (process.getuid?.() !== 0) {
  console.error(`system-deps: missing ${missing.join(', ')}; install them as root: apt-get install -y ${missing.join(' ')}`);
  process.exit(1);
}
console.log(`system-deps: installing ${missing.join(', ')} with apt-get`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
const apt = (args) => spawnSync('apt-get', args, { env, stdio: ['ignore', 'ignore', 'inherit'] }).status === 0;
if (!apt(['update', '-qq']) || !apt(['install', '-y', '-qq', '--no-install-recommends', ...missing])) {
  console.error('system-deps: apt-get failed');
  process.exit(1);
}
const still = CHECKS.filter((check) => !ok(check)).map((check) => check.pkg);
if (still.length > 0) {
  console.error(`system-deps: still missing after apt-get: ${still.join(', ')}`);
  process.exit(1);
}
