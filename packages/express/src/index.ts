/**
 * @ws-heartbeat/express: not built yet. The Express adapter lands with its own issue;
 * until then this package only re-exports the core engine so that the workspace builds.
 */
export { Heartbeat } from '@ws-heartbeat/core';
