export { Heartbeat, shutdownFrame } from './heartbeat';
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
} from './heartbeat';
export { DEFAULTS, TICK_MS } from './options';
export type { AppHeartbeatOptions, HeartbeatOptions, ResolvedOptions } from './options';
export { DEFAULT_MAX_PAYLOAD, UpgradeRouter } from './upgrade';
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
export { collectMetrics, isMetricsRegistry } from './metrics';
export type { CollectMetricsOptions, MetricsRegistry } from './metrics';
export type { HistogramBucket } from './histogram';
export { logEvents } from './log';
export type { HeartbeatLogger } from './log';
