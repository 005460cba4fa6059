// The contenders: one small server setup each, all with the same routes and the same settings
// (interval I, timeout T). Each is written the way its own README shows it.
//
// A setup gets `{ interval, timeout, wss, heartbeatSent }`. `wss` is a `ws` WebSocketServer (for
// socket.io the harness creates the server itself, with pingInterval/pingTimeout = I/T, and `wss`
// is undefined). `heartbeatSent(ws?)` tells the harness that a heartbeat frame went out (the
// busy-wait of the false-termination phase starts right after one, while the answers are in
// flight; --trace records when, per connection); the harness already reports every `ws.ping()`,
// so only contenders that send something else call it.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** client: which peers connect ('ws', 'npm' or 'socket.io'). bound: the promised detection time. */
export const contenders = {
  /** `ws` with no heartbeat: the floor for CPU and heap, and a dead peer is never noticed. */
  none: {
    client: 'ws',
    bound: () => null,
    setup() {},
  },

  /**
   * The yardstick, not a product: the least a heartbeat can do on `ws`. One prebuilt ping frame
   * written straight to each raw socket, in ticks of 5 ms that each take an even share of the
   * connections; pongs are not even counted (`ws` parses them whether anyone listens or not); no
   * verdicts, so a dead peer is never noticed. Its CPU above `none` is the wire's floor: one 2-byte
   * write and one small read per connection per interval.
   */
  floor: {
    client: 'ws',
    bound: () => null,
    setup({ interval, wss, heartbeatSent }) {
      const PING = Buffer.from([0x89, 0x00]);
      const TICK_MS = 5;
      const ticks = Math.max(1, Math.round(interval / TICK_MS));
      /** The open connections' raw sockets; a closed one is swapped with the last. */
      const sockets = [];
      const slot = new WeakMap();
      function forget() {
        const index = slot.get(this);
        const last = sockets.pop();
        if (last !== this) {
          sockets[index] = last;
          slot.set(last, index);
        }
      }
      wss.on('connection', (ws, req) => {
        slot.set(req.socket, sockets.length);
        sockets.push(req.socket);
        req.socket.once('close', forget);
      });
      let tick = 0;
      const timer = setInterval(() => {
        // Tick t of an interval pings the t-th share: [t·n/ticks, (t+1)·n/ticks).
        const n = sockets.length;
        const end = Math.floor(((tick + 1) * n) / ticks);
        for (let i = Math.floor((tick * n) / ticks); i < end; i++) sockets[i].write(PING);
        tick = (tick + 1) % ticks;
        heartbeatSent();
      }, TICK_MS);
      wss.on('close', () => clearInterval(timer));
    },
  },

  /** The recipe from the `ws` README: one setInterval over wss.clients, isAlive flag per client. */
  'ws-readme': {
    client: 'ws',
    // A peer answers the ping of sweep k, then goes silent: sweep k+1 clears isAlive and pings,
    // sweep k+2 terminates. At most two intervals after its last frame.
    bound: ({ interval }) => 2 * interval,
    setup({ interval, wss }) {
      function heartbeat() {
        this.isAlive = true;
      }
      wss.on('connection', function connection(ws) {
        ws.isAlive = true;
        ws.on('error', console.error);
        ws.on('pong', heartbeat);
      });
      const timer = setInterval(function ping() {
        wss.clients.forEach(function each(ws) {
          if (ws.isAlive === false) return ws.terminate();
          ws.isAlive = false;
          ws.ping();
        });
      }, interval);
      wss.on('close', function close() {
        clearInterval(timer);
      });
    },
  },

  /**
   * The `ws-heartbeat` package from npm (1.3.0), as its README shows: clients send an app-level
   * ping every interval, the server answers it and close()s every connection that sent no
   * message during the last pingTimeout (= I + T here). Its README compares `data` with a string;
   * `ws` 8 delivers a Buffer, so the answer converts it first.
   */
  'ws-heartbeat-npm': {
    client: 'npm',
    // Its README: "in pingTimeout ms, if no message accepted from client, close the connection".
    bound: ({ interval, timeout }) => interval + timeout,
    setup({ interval, timeout, wss, heartbeatSent }) {
      const { setWsHeartbeat } = require('ws-heartbeat-npm/server');
      setWsHeartbeat(
        wss,
        (ws, data) => {
          if (String(data) === NPM_PING) {
            ws.send(NPM_PONG);
            heartbeatSent();
          }
        },
        interval + timeout,
      );
    },
  },

  /**
   * One setTimeout per connection, as engine.io does it: a ping `interval` after the last pong,
   * termination `timeout` after the ping.
   */
  'per-connection-timers': {
    client: 'ws',
    bound: ({ interval, timeout }) => interval + timeout,
    setup({ interval, timeout, wss }) {
      wss.on('connection', (ws) => {
        let pingTimer;
        let pongTimer;
        const schedulePing = () => {
          pingTimer = setTimeout(() => {
            ws.ping();
            pongTimer = setTimeout(() => ws.terminate(), timeout);
          }, interval);
        };
        ws.on('error', () => {});
        ws.on('pong', () => {
          clearTimeout(pongTimer);
          clearTimeout(pingTimer);
          schedulePing();
        });
        ws.on('close', () => {
          clearTimeout(pingTimer);
          clearTimeout(pongTimer);
        });
        schedulePing();
      });
    },
  },

  /** A socket.io 4 server, pingInterval/pingTimeout = I/T, socket.io-client peers. */
  'socket.io': {
    client: 'socket.io',
    // engine.io pings `pingInterval` after the last pong and closes `pingTimeout` after the ping.
    bound: ({ interval, timeout }) => interval + timeout,
    setup({ heartbeatSent }) {
      // engine.io sends its pings as packets, not ws pings: report them from its Socket class.
      const eio = createRequire(require.resolve('socket.io'))('engine.io');
      const sendPacket = eio.Socket.prototype.sendPacket;
      eio.Socket.prototype.sendPacket = function (type, ...rest) {
        if (type === 'ping') heartbeatSent();
        return sendPacket.call(this, type, ...rest);
      };
    },
  },

  /** Ours: @ws-heartbeat/core's engine on the same WebSocketServer. */
  'ws-heartbeat': {
    client: 'ws',
    // Terminated at t0 + interval + timeout, at most one 5 ms tick late.
    bound: ({ interval, timeout }) => interval + timeout + 5,
    async setup({ interval, timeout, wss, heartbeatSent }) {
      const { Heartbeat } = await import('@ws-heartbeat/core');
      const heartbeat = new Heartbeat({ interval, timeout });
      wss.on('connection', (ws, req) => heartbeat.track(ws, { socket: req.socket }));
      // The engine writes its ping frames to the raw socket, not through ws.ping(): its 'ping'
      // event reports them (one listener call per ping, a fraction of a microsecond).
      heartbeat.on('ping', heartbeatSent);
      // For the harness's close reasons: why the engine ended a connection.
      heartbeat.on('terminate', (ws, reason, route, info) => {
        ws.endedBy = `ws-heartbeat ${reason}`;
        ws.endedInfo = info;
      });
      wss.on('close', () => heartbeat.close());
    },
  },
};

export const NPM_PING = '{"kind":"ping"}';
export const NPM_PONG = '{"kind":"pong"}';
