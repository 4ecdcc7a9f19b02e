/**
 * Rule matching. An object matches a rule when every axis passes: path globs AND MIME
 * types AND size. Within an axis, includes OR together (an empty include list matches
 * everything) and excludes always win.
 *
 * Globs are matched against the whole key, ASCII case-insensitively, by the
 * non-backtracking matcher of glob.ts (its header has the syntax).
 * MIME patterns are `type/subtype` or `type/*`. Sizes are inclusive; max 0 = no limit.
 * Among matching rules the highest priority wins, ties go to the oldest rule.
 */
import { InvalidArgument } from "./errors";
import { compileGlobMatcher, type Glob } from "./glob";
import type { Rule } from "./pipeline";

/** What rule matching needs to know about an object. */
export interface ObjectFacts {
  key: string;
  mimeType: string;
  size: number;
}

const globCache = new Map<string, Glob>();

function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** Most rules one bucket may hold. */
export const MAX_RULES_PER_BUCKET = 500;
/** Most characters of glob patterns across all rules of one bucket (bounds a trigger's matching work). */
export const MAX_GLOB_CHARS_PER_BUCKET = 65_536;

/** Compiles a glob (see glob.ts); throws InvalidArgument naming the field. Compiled globs are cached. */
export function compileGlob(pattern: string, field = "pattern"): Glob {
  const cached = globCache.get(pattern);
  if (cached) return cached;
  const compiled = compileGlobMatcher(pattern, field);
  if (globCache.size > 10_000) globCache.clear();
  globCache.set(pattern, compiled);
  return compiled;
}

/** Characters of glob patterns a rule holds (what MAX_GLOB_CHARS_PER_BUCKET counts). */
export function globChars(rule: Pick<Rule, "includePatterns" | "excludePatterns">): number {
  let n = 0;
  for (const p of rule.includePatterns) n += p.length;
  for (const p of rule.excludePatterns) n += p.length;
  return n;
}

const MIME_PATTERN = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)$/;

/** Checks a MIME pattern (`type/subtype` or `type/*`); throws InvalidArgument naming the field. */
export function checkMimePattern(pattern: string, field = "mime_type"): void {
  if (!MIME_PATTERN.test(asciiLower(pattern))) {
    throw new InvalidArgument(
      `${field} "${pattern}" is not a MIME type pattern (type/subtype or type/*)`,
      field,
    );
  }
}

/** True when the MIME type matches the pattern. */
export function mimeMatches(pattern: string, mimeType: string): boolean {
  const p = asciiLower(pattern);
  const m = asciiLower(mimeType);
  if (p.endsWith("/*")) return m.startsWith(p.slice(0, -1));
  return p === m;
}

function axis(includes: string[], excludes: string[], test: (p: string) => boolean): boolean {
  if (excludes.some(test)) return false;
  return includes.length === 0 || includes.some(test);
}

/** True when the object passes every axis of the rule (the enabled flag is not checked). */
export function ruleMatches(rule: Rule, obj: ObjectFacts): boolean {
  const key = asciiLower(obj.key);
  const glob = (p: string) => compileGlob(p).test(key);
  if (!axis(rule.includePatterns, rule.excludePatterns, glob)) return false;
  const mime = (p: string) => mimeMatches(p, obj.mimeType);
  if (!axis(rule.includeMimeTypes, rule.excludeMimeTypes, mime)) return false;
  if (obj.size < rule.minSizeBytes) return false;
  if (rule.maxSizeBytes > 0 && obj.size > rule.maxSizeBytes) return false;
  return true;
}

/** Orders rules as matching tries them: highest priority first, then the oldest. */
export function compareRulePrecedence(a: Rule, b: Rule): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt;
  return a.ruleId < b.ruleId ? -1 : a.ruleId > b.ruleId ? 1 : 0;
}

/** Returns the enabled rule that wins for the object, or undefined when none matches. */
export function pickRule<R extends Rule>(rules: readonly R[], obj: ObjectFacts): R | undefined {
  return [...rules]
    .filter((r) => r.enabled)
    .sort(compareRulePrecedence)
    .find((r) => ruleMatches(r, obj));
}
