// Small pieces shared by the benchmark's processes: one clock, a request/reply protocol over the
// IPC channel of child_process.fork(), and the statistics of a list of samples.

/**
 * Milliseconds since the epoch, to a fraction: the same clock in every process of this machine,
 * whatever runtime runs it (Bun's `process.hrtime` starts at its own start, so the monotonic clock
 * is not shared with a server under Bun). The machine's clock is not stepped during a run.
 */
export function nowMs() {
  return performance.timeOrigin + performance.now();
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/**
 * In a child process: answers each `{ id, cmd, ...args }` from the parent with
 * `{ re: id, ...reply }`, where reply is what `handlers[cmd](args)` returns or resolves to.
 */
export function serve(handlers) {
  process.on('message', async (message) => {
    const { id, cmd } = message;
    try {
      const reply = await handlers[cmd](message);
      process.send({ re: id, ...reply });
    } catch (error) {
      process.send({ re: id, error: String(error?.stack ?? error) });
    }
  });
}

let lastId = 0;

/** In the parent: sends a command to a child started with fork() and resolves with its reply. */
export function request(child, cmd, args = {}, timeoutMs = 120_000) {
  const id = ++lastId;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`${cmd}: no reply within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message) => {
      if (message.re !== id) return;
      if (message.error) done(new Error(`${cmd}: ${message.error}`));
      else done(undefined, message);
    };
    const onExit = (code, signal) => done(new Error(`${cmd}: the process exited (${signal ?? code})`));
    function done(error, reply) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(reply);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
    child.send({ id, cmd, ...args });
  });
}

/** Resolves with the first message of a child that carries `ready: true`. */
export function ready(child, what, timeoutMs = 300_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: not ready within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message) => {
      if (!message.ready) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      child.off('message', onMessage);
      if (message.error) reject(new Error(`${what}: ${message.error}`));
      else resolve(message);
    };
    const onExit = (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what}: exited before it was ready (${signal ?? code})`));
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** The q-quantile (0…1) of sorted samples, nearest rank. */
export function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

/** min, median and max of samples, or null when there are none. */
export function spread(samples) {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  return { min: sorted[0], median: quantile(sorted, 0.5), max: sorted[sorted.length - 1] };
}

/** Rounds for the results file: ms to 0.01, larger figures to integers. */
export const round = (value, digits = 2) => (value === null || value === undefined ? null : Number(value.toFixed(digits)));
