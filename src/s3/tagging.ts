/**
 * S3 object tags: up to 10 key–value pairs an object carries besides its metadata, set with
 * an upload's `x-amz-tagging` header (URL-encoded, `k=v&k2=v2`) or PutObjectTagging's XML, and
 * checked as S3 checks them (InvalidTag naming the tag). An object keeps them in its metadata
 * as one stored header (TAGGING_KEY, the header form), so they travel with it through copies
 * and multipart uploads; no user metadata name can collide with it (STORED_HEADER_PREFIX).
 */
import { STORED_HEADER_PREFIX } from "../domain/bucket";
import { S3Error, xmlEscape, xmlUnescape } from "./errors";

/** Where an object's metadata keeps its tags. */
export const TAGGING_KEY = `${STORED_HEADER_PREFIX}x-amz-tagging`;

const MAX_TAGS = 10;
const MAX_KEY = 128;
const MAX_VALUE = 256;

export type Tags = Array<[string, string]>;

function invalid(message: string): S3Error {
  return new S3Error("InvalidTag", 400, message);
}

/** Checks tags as S3 does: at most 10, keys 1–128 characters and unique, values at most 256. */
function checked(tags: Tags): Tags {
  if (tags.length > MAX_TAGS) throw invalid(`${tags.length} tags given; an object may have at most ${MAX_TAGS}`);
  const seen = new Set<string>();
  for (const [key, value] of tags) {
    const chars = [...key].length;
    if (chars < 1 || chars > MAX_KEY) throw invalid(`the tag key ${JSON.stringify(key.slice(0, 140))} is ${chars} characters long; a key has 1 to ${MAX_KEY}`);
    if ([...value].length > MAX_VALUE) throw invalid(`the value of tag ${JSON.stringify(key)} is ${[...value].length} characters long; a value has at most ${MAX_VALUE}`);
    if (seen.has(key)) throw invalid(`the tag key ${JSON.stringify(key)} is given twice; keys must be unique`);
    seen.add(key);
  }
  return tags;
}

/** The tags of an `x-amz-tagging` header (a URL-encoded query string). */
export function parseTaggingHeader(header: string): Tags {
  return checked([...new URLSearchParams(header)]);
}

/** The tags of a PutObjectTagging body (`<Tagging><TagSet><Tag><Key>…</Key><Value>…</Value></Tag>…`). */
export function parseTaggingXml(body: string): Tags {
  const set = /<TagSet>([\s\S]*)<\/TagSet>/.exec(body);
  if (!/<Tagging[\s>]/.test(body) || !set) throw new S3Error("MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema (a Tagging element holding a TagSet)");
  const tags: Tags = [];
  for (const m of set[1].matchAll(/<Tag>([\s\S]*?)<\/Tag>/g)) {
    const key = /<Key>([\s\S]*?)<\/Key>/.exec(m[1]);
    const value = /<Value>([\s\S]*?)<\/Value>/.exec(m[1]) ?? /<Value\s*\/>/.exec(m[1]);
    if (!key || !value) throw new S3Error("MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema (each Tag has a Key and a Value)");
    tags.push([xmlUnescape(key[1]), xmlUnescape(value[1] ?? "")]);
  }
  return checked(tags);
}

/** The stored (header) form of tags; undefined for none. */
export function taggingHeader(tags: Tags): string | undefined {
  return tags.length ? new URLSearchParams(tags).toString() : undefined;
}

/** An object's tags, from its metadata. */
export function tagsOf(metadata: Record<string, string>): Tags {
  const stored = metadata[TAGGING_KEY];
  return stored ? [...new URLSearchParams(stored)] : [];
}

/** `metadata` with its tags set to `stored` (the header form), or removed when undefined. */
export function withTagging(metadata: Record<string, string>, stored: string | undefined): Record<string, string> {
  const { [TAGGING_KEY]: _old, ...rest } = metadata;
  return stored ? { ...rest, [TAGGING_KEY]: stored } : rest;
}

/** GetObjectTagging's answer. */
export function taggingXml(tags: Tags, xmlns: string): string {
  return `<Tagging xmlns="${xmlns}"><TagSet>${tags.map(([k, v]) => `<Tag><Key>${xmlEscape(k)}</Key><Value>${xmlEscape(v)}</Value></Tag>`).join("")}</TagSet></Tagging>`;
}
