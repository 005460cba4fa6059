// Who connects where and joins what, in the cluster benchmark: defined once, for the harness and
// the load processes.
//
// Connection i (0 ≤ i < N) opens on node i mod 3 and joins the presence key `user:<i>`, except
// every tenth one (i mod 10 = 9), which joins the key of connection i − 1: a user with a second
// connection (another tab, another device) on another node. So N connections hold 0.9 N keys, and
// 10% of the keys are held on two nodes at once.

/** Server processes (cluster nodes) in every configuration. */
export const NODES = 3;

/** The node that connection `i` opens on. */
export const nodeOf = (i) => i % NODES;

/** The presence key that connection `i` joins. */
export const presenceKey = (i) => (i % 10 === 9 ? `user:${i - 1}` : `user:${i}`);

/** How many distinct keys N connections hold. */
export const presenceKeyCount = (n) => n - Math.floor(n / 10);
