/**
 * Glob matching without backtracking. A pattern compiles to a list of tokens and is run
 * as a nondeterministic automaton over the key: the set of pattern positions reachable
 * after each character is kept (at most one entry per position), so a match costs at most
 * key length × pattern length steps, whatever the pattern — `*a*a*a…x` cannot explode the
 * way a backtracking RegExp does. Rule and pattern caps (rules.ts) bound the product.
 *
 * Syntax (ASCII case-insensitive): `**` spans `/`, `*` and `?` stay within one segment,
 * `[abc]`, `[a-z]`, `[!abc]`/`[^abc]` are classes (a negated class never matches `/`),
 * and `**​/` also matches zero directories (`docs/**​/x` matches `docs/x`).
 */
import { InvalidArgument } from "./errors";
import { quote } from "./validate";

/** Longest glob pattern, in characters. */
export const MAX_GLOB_LENGTH = 256;
/** Most wildcards (`*`, `**`, `?`, classes) in one pattern. */
export const MAX_GLOB_WILDCARDS = 16;

const SLASH = 47;

type Token =
  | { t: "lit"; c: number }
  | { t: "one" }
  | { t: "class"; negate: boolean; ranges: number[] }
  | { t: "star" }
  /** `**`; `optional` when it began `**​/`, whose both tokens may be skipped together. */
  | { t: "globstar"; optional: boolean };

/** A compiled glob. */
export interface Glob {
  readonly source: string;
  /** True when the whole (already ASCII-lower-cased) key matches. */
  test(key: string): boolean;
}

function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

function parseClass(body: string): number[] {
  const ranges: number[] = [];
  const cps = Array.from(body, (c) => c.codePointAt(0) as number);
  for (let i = 0; i < cps.length; i++) {
    if (i + 2 < cps.length && cps[i + 1] === 45 /* - */) {
      ranges.push(cps[i], cps[i + 2]);
      i += 2;
    } else {
      ranges.push(cps[i], cps[i]);
    }
  }
  return ranges;
}

function tokenize(pattern: string, field: string): Token[] {
  const p = Array.from(asciiLower(pattern));
  const tokens: Token[] = [];
  let wildcards = 0;
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === "*") {
      wildcards++;
      if (p[i + 1] === "*") {
        i++;
        while (p[i + 1] === "*") i++; // `***` is `**`
        const optional = p[i + 1] === "/";
        tokens.push({ t: "globstar", optional });
        if (optional) {
          i++;
          tokens.push({ t: "lit", c: SLASH });
        }
      } else {
        tokens.push({ t: "star" });
      }
    } else if (c === "?") {
      wildcards++;
      tokens.push({ t: "one" });
    } else if (c === "[") {
      wildcards++;
      let end = -1;
      for (let j = i + 2; j < p.length; j++) {
        if (p[j] === "]") {
          end = j;
          break;
        }
      }
      if (end < 0) throw new InvalidArgument(`${field} ${quote(pattern)} has an unterminated [ class`, field);
      let body = p.slice(i + 1, end).join("");
      let negate = false;
      if (body.startsWith("!") || body.startsWith("^")) {
        negate = true;
        body = body.slice(1);
      }
      if (body.length === 0) throw new InvalidArgument(`${field} ${quote(pattern)} has an empty [] class`, field);
      tokens.push({ t: "class", negate, ranges: parseClass(body) });
      i = end;
    } else {
      tokens.push({ t: "lit", c: c.codePointAt(0) as number });
    }
  }
  if (wildcards > MAX_GLOB_WILDCARDS) {
    throw new InvalidArgument(
      `${field} ${quote(pattern)} has ${wildcards} wildcards; at most ${MAX_GLOB_WILDCARDS} are allowed`,
      field,
    );
  }
  return tokens;
}

function consumes(tok: Token, c: number): boolean {
  switch (tok.t) {
    case "lit":
      return tok.c === c;
    case "one":
      return c !== SLASH;
    case "class": {
      if (tok.negate && c === SLASH) return false;
      let inside = false;
      for (let k = 0; k < tok.ranges.length; k += 2) {
        if (c >= tok.ranges[k] && c <= tok.ranges[k + 1]) {
          inside = true;
          break;
        }
      }
      return inside !== tok.negate;
    }
    default:
      return false;
  }
}

/** Compiles a glob; throws InvalidArgument naming the field, the pattern and the limit it breaks. */
export function compileGlobMatcher(pattern: string, field = "pattern"): Glob {
  if (pattern.length === 0) throw new InvalidArgument(`${field} must not be empty`, field);
  if (pattern.length > MAX_GLOB_LENGTH) {
    throw new InvalidArgument(
      `${field} is ${pattern.length} characters long; at most ${MAX_GLOB_LENGTH} are allowed`,
      field,
    );
  }
  const tokens = tokenize(pattern, field);
  const m = tokens.length;
  // Position i means "tokens [0, i) are matched". Stars may match nothing, so a position
  // in front of a star also stands for the position after it (the epsilon closure).
  let cur = new Uint8Array(m + 1);
  let nxt = new Uint8Array(m + 1);
  const curList = new Int32Array(m + 1);
  const nxtList = new Int32Array(m + 1);

  function add(set: Uint8Array, list: Int32Array, n: number, i: number): number {
    // Iterative closure: a chain of stars adds every position after it.
    while (i <= m && !set[i]) {
      set[i] = 1;
      list[n++] = i;
      const tok = tokens[i];
      if (!tok) break;
      if (tok.t === "star") {
        i++;
      } else if (tok.t === "globstar") {
        if (tok.optional) n = add(set, list, n, i + 2);
        i++;
      } else {
        break;
      }
    }
    return n;
  }

  return {
    source: pattern,
    test(key: string): boolean {
      cur.fill(0);
      let count = add(cur, curList, 0, 0);
      for (let k = 0; k < key.length && count > 0; k++) {
        let c = key.charCodeAt(k);
        if (c >= 0xd800 && c <= 0xdbff && k + 1 < key.length) {
          c = key.codePointAt(k) as number;
          k++;
        }
        nxt.fill(0);
        let n = 0;
        for (let j = 0; j < count; j++) {
          const i = curList[j];
          const tok = tokens[i];
          if (!tok) continue;
          if (tok.t === "star") {
            if (c !== SLASH) n = add(nxt, nxtList, n, i);
          } else if (tok.t === "globstar") {
            n = add(nxt, nxtList, n, i);
          } else if (consumes(tok, c)) {
            n = add(nxt, nxtList, n, i + 1);
          }
        }
        [cur, nxt] = [nxt, cur];
        curList.set(nxtList.subarray(0, n));
        count = n;
      }
      return cur[m] === 1;
    },
  };
}
