import type { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import type { HeartbeatEvents, HeartbeatLogger, OverloadInfo, TerminateInfo, TerminateReason } from './types';

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

function debugEnabled(logger: HeartbeatLogger): boolean {
  if (typeof logger.isLevelEnabled === 'function') return logger.isLevelEnabled('debug');
  if (typeof logger.level === 'string' && logger.level in LEVELS) return LEVELS[logger.level]! <= LEVELS.debug!;
  // A logger that cannot tell its level (Fastify's no-op logger when its logging is off) gets no
  // debug lines: a line per ping and pong is opt-in.
  return false;
}

/**
 * Writes the engine's events to `logger`: each ping and pong at debug, each termination at info
 * (reason, route, remote address, connection age, time since the peer's last sign of life), an overload
 * at warn and its end at info. Whether debug lines are wanted is decided once, here: the ping and
 * pong listeners are only added when they are (they run on every heartbeat otherwise).
 * Returns the function that removes exactly these listeners.
 */
export function logEvents(engine: EventEmitter<HeartbeatEvents>, logger: HeartbeatLogger): () => void {
  const engineOnPing = (_ws: WebSocket, route: string): void => logger.debug({ route }, 'ws-heartbeat: ping');
  const engineOnPong = (_ws: WebSocket, rttMs: number, route: string): void => logger.debug({ route, rttMs }, 'ws-heartbeat: pong');
  const engineOnTerminate = (_ws: WebSocket, reason: TerminateReason, route: string, info: TerminateInfo): void => {
    const { remoteAddress, ageMs, silentMs } = info;
    logger.info({ reason, route, remoteAddress, ageMs: Math.round(ageMs), silentMs: Math.round(silentMs) }, `ws-heartbeat: terminated a connection (${reason})`);
  };
  const engineOnOverload = (overloaded: boolean, info: OverloadInfo): void => {
    if (overloaded) logger.warn(info, 'ws-heartbeat: event loop overloaded');
    else logger.info(info, 'ws-heartbeat: event loop no longer overloaded');
  };
  const debug = debugEnabled(logger);
  if (debug) engine.on('ping', engineOnPing).on('pong', engineOnPong);
  engine.on('terminate', engineOnTerminate).on('overload', engineOnOverload);
  return () => {
    if (debug) engine.off('ping', engineOnPing).off('pong', engineOnPong);
    engine.off('terminate', engineOnTerminate).off('overload', engineOnOverload);
  };
}
