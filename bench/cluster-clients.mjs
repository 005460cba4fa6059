// A load process of the cluster benchmark: opens connections `from` … `to − 1` of the layout
// (cluster-layout.mjs: which node, which presence key) in batches, as clients.mjs does, and keeps
// them healthy: `ws` answers every ping, and each connection answers the server's first message.
// It reports the healthy connections that closed before it was told to exit, and its own worst
// event-loop delay, while opening and after: a load process that stalls longer than the timeout
// would make its peers look dead.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket from 'ws';
import { nodeOf, presenceKey } from './cluster-layout.mjs';
import { serve, sleep } from './lib.mjs';

const { urls, from, to, batch } = JSON.parse(process.argv[2]);

let healthyCloses = 0;
let shuttingDown = false;

/** Opens connection `i`; resolves once the server's first message arrived and was answered. */
function open(i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${urls[nodeOf(i)]}/?k=${encodeURIComponent(presenceKey(i))}`);
    ws.once('message', () => {
      ws.send('hello');
      resolve();
    });
    ws.once('error', reject);
    ws.on('close', () => {
      if (!shuttingDown) healthyCloses += 1;
    });
  });
}

const lag = monitorEventLoopDelay({ resolution: 10 });
lag.enable();
let failed = 0;
for (let start = from; start < to; start += batch) {
  const opening = [];
  for (let i = start; i < Math.min(to, start + batch); i++) opening.push(open(i));
  const results = await Promise.allSettled(opening);
  failed += results.filter((r) => r.status === 'rejected').length;
  await sleep(10);
}

serve({
  closes: () => ({ healthyCloses, lagMaxMs: lag.max / 1e6 }),
  exit: () => {
    shuttingDown = true;
    setImmediate(() => process.exit(0));
    return {};
  },
});

process.send({ ready: true, opened: to - from - failed, failed, lagMaxMs: lag.max / 1e6 });
lag.reset();
