export { Heartbeat } from './heartbeat';
export type {
  HeartbeatEvents,
  HeartbeatStats,
  RouteStats,
  RttSummary,
  TerminateReason,
  TrackInfo,
} from './heartbeat';
export { DEFAULTS, TICK_MS } from './options';
export type { AppHeartbeatOptions, HeartbeatOptions, ResolvedOptions } from './options';
export { UpgradeRouter } from './upgrade';
export type {
  Authenticate,
  ConnectionHandler,
  OriginPolicy,
  RouteOptions,
  RouterErrorPhase,
  RouteWsOptions,
  UpgradeRouterOptions,
  UpgradeServer,
} from './upgrade';
export type { PathParams } from './path';
export { abortHandshake } from './http';
