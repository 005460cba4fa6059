import { Heartbeat, DEFAULTS, type HeartbeatOptions } from '@ws-heartbeat/core';
import { resolveOptions } from '../src/options';

describe('heartbeat options', () => {
  test('defaults are the documented ones', () => {
    expect(resolveOptions()).toEqual({
      interval: 30_000,
      timeout: 10_000,
      closeTimeout: 5_000,
      idleOnly: true,
      appHeartbeat: false,
      maxBufferedAmount: 64 * 1024 * 1024,
      proxyIdleTimeout: false,
    });
    expect(DEFAULTS).toMatchObject({ interval: 30_000, timeout: 10_000, closeTimeout: 5_000 });
  });

  const bad: [keyof HeartbeatOptions | string, unknown][] = [
    ['interval', -1],
    ['interval', 0],
    ['interval', NaN],
    ['interval', Infinity],
    ['interval', '1000'],
    ['interval', 2 ** 31],
    ['timeout', 1], // below two ticks: the wheel could not honour it
    ['timeout', -5],
    ['closeTimeout', Infinity],
    ['closeTimeout', null],
    ['idleOnly', 'yes'],
    ['appHeartbeat', 42],
    ['appHeartbeat', null],
    ['maxBufferedAmount', -1],
    ['maxBufferedAmount', 0],
    ['maxBufferedAmount', 1.5],
    ['maxBufferedAmount', true],
    ['proxyIdleTimeout', 0],
    ['proxyIdleTimeout', true],
    ['proxyIdleTimeout', '60000'],
  ];
  test.each(bad)('%s = %p throws a TypeError naming the option and the value', (name, value) => {
    const attempt = () => new Heartbeat({ [name]: value } as HeartbeatOptions);
    expect(attempt).toThrow(TypeError);
    expect(attempt).toThrow(new RegExp(`"${name}"`));
    expect(attempt).toThrow(new RegExp(`got ${typeof value === 'string' ? `"${value}"` : value === null ? 'null' : String(value)}`));
  });

  test('appHeartbeat parts are checked by name', () => {
    expect(() => new Heartbeat({ appHeartbeat: { match: 1 as never } })).toThrow(/"appHeartbeat.match"/);
    expect(() => new Heartbeat({ appHeartbeat: { reply: 5 as never } })).toThrow(/"appHeartbeat.reply"/);
  });

  test('an unknown option is refused by name (a typo must not pass silently)', () => {
    expect(() => new Heartbeat({ intervl: 1000 } as HeartbeatOptions)).toThrow(/Unknown heartbeat option "intervl"/);
  });

  test('route overrides merge over the constructor options and are checked the same way', () => {
    const heartbeat = new Heartbeat({ interval: 1_000, closeTimeout: 700 });
    const fast = heartbeat.route('fast', { timeout: 200 });
    expect(fast).toMatchObject({ interval: 1_000, timeout: 200, closeTimeout: 700 });
    expect(heartbeat.settings()).toMatchObject({ interval: 1_000, timeout: 10_000 });
    expect(() => heartbeat.route('broken', { timeout: -1 })).toThrow(/"timeout".*got -1/);
    expect(() => heartbeat.settings('nowhere')).toThrow(TypeError);
  });

  test('proxyIdleTimeout: an interval not safely below it (0.8 × it, less a tick) throws at route definition, naming both values and the largest safe interval; without it nothing is checked', () => {
    // 0.8 × 2000 − 5 = 1595: the largest interval a 2 s proxy idle timeout allows.
    expect(resolveOptions({ interval: 1_595, proxyIdleTimeout: 2_000 })).toMatchObject({ interval: 1_595, proxyIdleTimeout: 2_000 });
    const refused = () => resolveOptions({ interval: 1_596, proxyIdleTimeout: 2_000 });
    expect(refused).toThrow(TypeError);
    expect(refused).toThrow('The "interval" option (1596 ms) is not safely below "proxyIdleTimeout" (2000 ms)');
    expect(refused).toThrow(/The largest safe interval is 1595 ms/);

    // Global: the engine's default route is checked when the engine is made; each route when defined.
    expect(() => new Heartbeat({ interval: 3_000, proxyIdleTimeout: 2_000 })).toThrow(/"interval" option \(3000 ms\)/);
    const heartbeat = new Heartbeat({ interval: 1_000, proxyIdleTimeout: 2_000 });
    expect(() => heartbeat.route('slow', { interval: 3_000 })).toThrow(/"interval" option \(3000 ms\) is not safely below "proxyIdleTimeout" \(2000 ms\)/);
    // Per route: a route behind a shorter timeout than the rest.
    expect(() => new Heartbeat().route('behind-heroku', { proxyIdleTimeout: 30_000 })).toThrow(/largest safe interval is 23995 ms/);
    expect(heartbeat.route('fine', { interval: 1_500 })).toMatchObject({ interval: 1_500 });

    // The default interval (30 s) is safe behind every common proxy (the shortest: Heroku's 55 s).
    expect(resolveOptions({ proxyIdleTimeout: 55_000 }).interval).toBe(30_000);
    // Without the option, any interval passes.
    expect(resolveOptions({ interval: 3_000 }).proxyIdleTimeout).toBe(false);
  });

  test('the default app heartbeat reply carries the route settings, so a client can match them', () => {
    const heartbeat = new Heartbeat({ appHeartbeat: true });
    const route = heartbeat.route('r', { interval: 4_000, timeout: 1_500 });
    expect(route.appHeartbeat).not.toBe(false);
    const app = route.appHeartbeat as Exclude<typeof route.appHeartbeat, false>;
    expect(JSON.parse(app.reply as string)).toEqual({ type: 'pong', interval: 4_000, timeout: 1_500 });
    expect(app.match(Buffer.from('{"type":"ping"}'), false)).toBe(true);
    expect(app.match(Buffer.from('{"type":"ping"}'), true)).toBe(false);
    expect(app.match(Buffer.from('{"type":"ping"} '), false)).toBe(false);
  });
});
