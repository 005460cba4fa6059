/**
 * Path patterns of the upgrade router: `/rooms/:id` style, matched segment by segment.
 *
 * - A literal segment matches the same text in the percent-decoded request segment
 *   (`/café` matches `/caf%C3%A9`). Write literals decoded; `%` is not allowed in a pattern.
 * - `:name` matches exactly one non-empty segment; its value is percent-decoded.
 * - No prefix matching: the request must have exactly as many segments as the pattern.
 * - A trailing slash is significant: `/a/` and `/a` are different paths.
 * - The query string is ignored.
 * - A request path never matches when one of its segments is empty (`//`), has a bad percent
 *   escape, decodes to `.` or `..`, or contains `/` once decoded (`%2F`): such paths resolve
 *   differently in different servers and proxies, so none of them reaches a route.
 */

/** Values of a pattern's `:name` segments, percent-decoded. */
export type PathParams = Record<string, string>;

/** A compiled pattern. */
export interface PathMatcher {
  /** The pattern as it was given. */
  readonly pattern: string;
  /**
   * The pattern's shape with parameter names left out (`/rooms/:`): two patterns with the same
   * key match exactly the same paths.
   */
  readonly key: string;
  /**
   * Orders patterns so that the more specific one is tried first: compared left to right, a
   * literal segment sorts before a parameter. Compare with `<` on strings.
   */
  readonly rank: string;
  /** Matches a request target (`req.url`); returns the parameters, or `null` for no match. */
  match(url: string): PathParams | null;
  /** Matches the segments {@link splitPath} returned (decode once, try many patterns). */
  matchSegments(segments: readonly string[]): PathParams | null;
}

type Segment = { readonly kind: 'literal'; readonly text: string } | { readonly kind: 'param'; readonly name: string };

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Characters that are syntax in other routers' patterns or cannot appear in a decoded path segment. */
const FORBIDDEN = /[%?#*()[\]{}\s]/;

function malformed(pattern: string, why: string): never {
  throw new TypeError(`Invalid path pattern ${JSON.stringify(pattern)}: ${why}`);
}

function parseSegment(pattern: string, text: string, index: number, last: boolean, names: Set<string>): Segment {
  if (text === '') {
    if (last) return { kind: 'literal', text: '' }; // the trailing slash
    return malformed(pattern, 'empty segment (//)');
  }
  if (text.startsWith(':')) {
    const name = text.slice(1);
    if (!PARAM_NAME.test(name)) return malformed(pattern, `parameter name ${JSON.stringify(name)} must be letters, digits and _, not starting with a digit`);
    if (name === '__proto__') return malformed(pattern, 'parameter name "__proto__" is reserved');
    if (names.has(name)) return malformed(pattern, `parameter ":${name}" appears twice`);
    names.add(name);
    return { kind: 'param', name };
  }
  if (text.includes(':')) return malformed(pattern, `":" is only allowed at the start of a segment (segment ${index + 1})`);
  if (text === '.' || text === '..') return malformed(pattern, `segment ${JSON.stringify(text)} is not allowed`);
  const bad = FORBIDDEN.exec(text);
  if (bad) return malformed(pattern, `character ${JSON.stringify(bad[0])} is not allowed (write literal segments decoded)`);
  return { kind: 'literal', text };
}

/**
 * Splits the path of a request target (`req.url`, query ignored) into percent-decoded segments;
 * `null` if the path can match no pattern (see the rules at the top of this file).
 */
export function splitPath(url: string): string[] | null {
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  if (path.charCodeAt(0) !== 0x2f /* / */) return null;
  const raw = path.slice(1).split('/');
  const segments: string[] = new Array<string>(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const segment = raw[i]!;
    if (segment === '') {
      if (i !== raw.length - 1) return null; // `//`
      segments[i] = '';
      continue;
    }
    let decoded = segment;
    if (segment.includes('%')) {
      try {
        decoded = decodeURIComponent(segment);
      } catch {
        return null;
      }
      if (decoded.includes('/')) return null;
    }
    if (decoded === '.' || decoded === '..') return null;
    segments[i] = decoded;
  }
  return segments;
}

/**
 * Compiles a path pattern such as `/rooms/:id`. Throws a `TypeError` for a malformed pattern:
 * not a string, not starting with `/`, an empty segment, a bad or repeated parameter name, or a
 * character that is pattern syntax elsewhere (`* ? # ( ) [ ] { }`), whitespace or `%`.
 */
export function compilePath(pattern: string): PathMatcher {
  if (typeof pattern !== 'string') throw new TypeError(`A path pattern must be a string: got ${typeof pattern}`);
  if (!pattern.startsWith('/')) malformed(pattern, 'it must start with "/"');
  const texts = pattern.slice(1).split('/');
  const names = new Set<string>();
  const segments = texts.map((text, i) => parseSegment(pattern, text, i, i === texts.length - 1, names));
  const key = '/' + segments.map((s) => (s.kind === 'param' ? ':' : s.text)).join('/');
  const rank = segments.map((s) => (s.kind === 'param' ? '1' : '0')).join('');

  function matchSegments(decoded: readonly string[]): PathParams | null {
    if (decoded.length !== segments.length) return null;
    const params: PathParams = {};
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      const value = decoded[i]!;
      if (segment.kind === 'literal') {
        if (value !== segment.text) return null;
      } else {
        if (value === '') return null;
        params[segment.name] = value;
      }
    }
    return params;
  }

  return {
    pattern,
    key,
    rank,
    match(url: string): PathParams | null {
      const decoded = splitPath(url);
      return decoded === null ? null : matchSegments(decoded);
    },
    matchSegments,
  };
}
