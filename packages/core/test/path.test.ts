import { compilePath, splitPath } from '../src/path';

describe('compilePath: matching', () => {
  it('matches literal segments exactly, and nothing longer or shorter (no prefix matching)', () => {
    const m = compilePath('/ws/echo');
    expect(m.match('/ws/echo')).toEqual({});
    expect(m.match('/ws/echo/more')).toBeNull();
    expect(m.match('/ws')).toBeNull();
    expect(m.match('/ws/echoes')).toBeNull();
    expect(m.match('/ws/ech')).toBeNull();
    expect(m.match('/WS/echo')).toBeNull();
    expect(m.match('/other/echo')).toBeNull();
  });

  it('treats the trailing slash as significant', () => {
    expect(compilePath('/ws').match('/ws/')).toBeNull();
    expect(compilePath('/ws/').match('/ws')).toBeNull();
    expect(compilePath('/ws/').match('/ws/')).toEqual({});
    expect(compilePath('/rooms/:id').match('/rooms/a/')).toBeNull();
  });

  it('matches the root pattern only against "/"', () => {
    const m = compilePath('/');
    expect(m.match('/')).toEqual({});
    expect(m.match('/?x=1')).toEqual({});
    expect(m.match('/a')).toBeNull();
    expect(m.match('//')).toBeNull();
    expect(m.match('')).toBeNull();
  });

  it('ignores the query string', () => {
    expect(compilePath('/ws').match('/ws?token=abc&x=/y')).toEqual({});
    expect(compilePath('/rooms/:id').match('/rooms/7?x=1')).toEqual({ id: '7' });
    expect(compilePath('/ws').match('/ws/?token=abc')).toBeNull();
  });

  it('captures one non-empty segment per parameter, percent-decoded', () => {
    const m = compilePath('/rooms/:id/users/:user');
    expect(m.match('/rooms/42/users/ann')).toEqual({ id: '42', user: 'ann' });
    expect(m.match('/rooms/a%20b/users/%C3%A9')).toEqual({ id: 'a b', user: 'é' });
    expect(m.match('/rooms/a+b/users/x')).toEqual({ id: 'a+b', user: 'x' });
    expect(m.match('/rooms//users/ann')).toBeNull();
    expect(m.match('/rooms/42/users/')).toBeNull();
    expect(m.match('/rooms/42/users')).toBeNull();
    expect(m.match('/rooms/42/43/users/ann')).toBeNull();
  });

  it('refuses a parameter segment with a bad escape, a decoded "/" or a dot segment', () => {
    const m = compilePath('/rooms/:id');
    expect(m.match('/rooms/%')).toBeNull();
    expect(m.match('/rooms/%zz')).toBeNull();
    expect(m.match('/rooms/%C3')).toBeNull(); // truncated UTF-8
    expect(m.match('/rooms/a%2Fb')).toBeNull();
    expect(m.match('/rooms/a%2fb')).toBeNull();
    expect(m.match('/rooms/.')).toBeNull();
    expect(m.match('/rooms/..')).toBeNull();
    expect(m.match('/rooms/%2e')).toBeNull();
    expect(m.match('/rooms/%2E%2e')).toBeNull();
    expect(m.match('/rooms/...')).toEqual({ id: '...' });
    expect(m.match('/rooms/.a')).toEqual({ id: '.a' });
  });

  it('never normalises a path: dot segments and empty segments match nothing', () => {
    expect(compilePath('/admin').match('/ws/../admin')).toBeNull();
    expect(compilePath('/ws/admin').match('/ws/./admin')).toBeNull();
    expect(compilePath('/h/ws').match('//h/ws')).toBeNull();
    expect(compilePath('/ws/echo').match('/ws//echo')).toBeNull();
    expect(compilePath('/ws/echo').match('/ws/echo//')).toBeNull();
  });

  it('compares literal segments with the decoded request segment', () => {
    expect(compilePath('/café').match('/caf%C3%A9')).toEqual({});
    expect(compilePath('/ws').match('/w%73')).toEqual({});
    expect(compilePath('/ws').match('/w%zz')).toBeNull();
  });

  it('matches nothing but origin-form targets', () => {
    const m = compilePath('/ws');
    expect(m.match('http://example.com/ws')).toBeNull();
    expect(m.match('*')).toBeNull();
    expect(m.match('ws')).toBeNull();
  });

  it('does not let a parameter named like an Object.prototype member reach the prototype', () => {
    const params = compilePath('/:constructor/:toString').match('/a/b');
    expect(params).toEqual({ constructor: 'a', toString: 'b' });
    expect(Object.getPrototypeOf(params)).toBe(Object.prototype);
  });
});

describe('compilePath: malformed patterns', () => {
  it.each([
    ['', /must start with "\/"/],
    ['ws', /must start with "\/"/],
    ['//ws', /empty segment/],
    ['/ws//echo', /empty segment/],
    ['/ws//', /empty segment/],
    ['/rooms/:', /parameter name ""/],
    ['/rooms/:1id', /parameter name "1id"/],
    ['/rooms/:id-x', /parameter name "id-x"/],
    ['/rooms/:id/:id', /appears twice/],
    ['/rooms/:__proto__', /reserved/],
    ['/rooms/a:b', /":" is only allowed at the start/],
    ['/ws/*', /character "\*"/],
    ['/ws?x=1', /character "\?"/],
    ['/ws#top', /character "#"/],
    ['/ws/(a)', /character "\("/],
    ['/ws/{id}', /character "\{"/],
    ['/ws/a%20b', /character "%"/],
    ['/ws/a b', /character " "/],
    ['/ws/..', /segment "\.\." is not allowed/],
    ['/./ws', /segment "\." is not allowed/],
  ])('%j is a TypeError', (pattern, message) => {
    expect(() => compilePath(pattern)).toThrow(TypeError);
    expect(() => compilePath(pattern)).toThrow(message);
  });

  it('rejects a pattern that is not a string', () => {
    expect(() => compilePath(42 as unknown as string)).toThrow(TypeError);
    expect(() => compilePath(undefined as unknown as string)).toThrow(TypeError);
  });
});

describe('compilePath: key and rank', () => {
  it('gives patterns that match the same paths the same key', () => {
    expect(compilePath('/rooms/:id').key).toBe(compilePath('/rooms/:name').key);
    expect(compilePath('/rooms/:id').key).not.toBe(compilePath('/rooms/lobby').key);
    expect(compilePath('/rooms/').key).not.toBe(compilePath('/rooms').key);
  });

  it('ranks a literal segment before a parameter, from left to right', () => {
    const rank = (p: string): string => compilePath(p).rank;
    expect(rank('/rooms/lobby') < rank('/rooms/:id')).toBe(true);
    expect(rank('/a/:x/c') < rank('/a/:x/:y')).toBe(true);
    expect(rank('/a/b/:c') < rank('/a/:b/c')).toBe(true);
  });
});

describe('splitPath', () => {
  it('decodes each segment once and keeps the trailing slash as an empty last segment', () => {
    expect(splitPath('/a/b%20c/')).toEqual(['a', 'b c', '']);
    expect(splitPath('/a%2525')).toEqual(['a%25']);
    expect(splitPath('/a//b')).toBeNull();
    expect(splitPath('/a/%2F')).toBeNull();
    expect(splitPath('no-slash')).toBeNull();
  });
});
