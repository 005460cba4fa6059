export { Heartbeat } from './heartbeat';
export { checkCloseOptions } from './shutdown';
export { TERMINATE_REASONS } from './types';
export type {
  CloseOptions,
  EngineOptions,
  EventLoopDelay,
  HeartbeatEngineOptions,
  HeartbeatEvents,
  HeartbeatStats,
  LatencySummary,
  OverloadInfo,
  RouteStats,
  RttSummary,
  TerminateInfo,
  TerminateReason,
  TrackInfo,
  HeartbeatLogger,
} from './types';
export { DEFAULTS, TICK_MS } from './options';
export type { AppHeartbeatOptions, HeartbeatOptions, ResolvedOptions } from './options';
export { UpgradeRouter } from './router';
export { DEFAULT_AUTH_TIMEOUT, DEFAULT_MAX_PAYLOAD } from './router-options';
export type {
  Authenticate,
  ConnectionHandler,
  OriginPolicy,
  RouteOptions,
  RouterErrorPhase,
  RouteWsOptions,
  UpgradeRouterOptions,
  UpgradeServer,
} from './router-options';
export type { PathParams } from './path';
export type { PresenceCluster, PresenceKeys } from './presence';
export { abortHandshake, refuseUnmatched, socketOnError, upgradeBelongsElsewhere } from './http';
export type { ResponseHeaders } from './http';
export { adapterEngine } from './adapter';
export { UpgradeListeners } from './upgrade-listeners';
export type { TakeUpgrade } from './upgrade-listeners';
export type { AdapterEngine } from './adapter';
export { checkKeys } from './errors';
export { collectMetrics, isMetricsRegistry } from './metrics';
export type { CollectMetricsOptions, MetricsRegistry } from './metrics';
export type { HistogramBucket } from './histogram';
export { logEvents } from './log';
