/**
 * Conditional requests of the byte plane, as S3 applies them (RFC 7232's order).
 *
 * Reads (GET, HEAD): `If-Match` and `If-Unmodified-Since` fail with 412 PreconditionFailed;
 * `If-None-Match` and `If-Modified-Since` answer 304 Not Modified. A date is only looked at
 * when its ETag counterpart is absent, and a date that does not parse is ignored. The AWS
 * SDKs' transfer managers send `If-Match` with every ranged GET after the first, so a
 * download of an object replaced halfway fails instead of stitching two objects together.
 *
 * Writes (PutObject, CopyObject, CompleteMultipartUpload): `If-None-Match: *` writes only
 * when the key holds nothing (412 otherwise); `If-Match` only over the object with that
 * ETag (412 for another, 404 NoSuchKey for none). They are checked in the key's turn, right
 * before the bytes take its place, so of two conditional writes racing for a key exactly
 * one wins.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { StoredObject } from "../../domain/bucket";
import { S3Error } from "../../s3/errors";

/** Whether an object's ETag is among an If-Match / If-None-Match list (`*` matches any object). */
function etagListed(list: string, etag: string): boolean {
  return list.split(",").some((item) => {
    const tag = item.trim().replace(/^W\//, "");
    return tag === "*" || tag.replace(/^"(.*)"$/, "$1") === etag;
  });
}

/** The header's date in whole seconds, or undefined when absent or not a date (then ignored). */
function secondsOf(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

/** 412 PreconditionFailed naming the condition that did not hold. */
export function preconditionFailed(condition: string): S3Error {
  return new S3Error("PreconditionFailed", 412, `At least one of the pre-conditions you specified did not hold (${condition})`);
}

/**
 * Checks a read's conditions against the object: throws 412 PreconditionFailed (naming the
 * condition after `named`), answers "not-modified" for a 304, or "send".
 */
export function readConditions(h: IncomingHttpHeaders, o: StoredObject, named = ""): "send" | "not-modified" {
  const modified = Math.floor(o.updatedAt / 1000);
  const ifMatch = h["if-match"];
  if (ifMatch !== undefined) {
    if (!etagListed(ifMatch, o.etag)) throw preconditionFailed(`${named}If-Match`);
  } else {
    const since = secondsOf(h["if-unmodified-since"]);
    if (since !== undefined && modified > since) throw preconditionFailed(`${named}If-Unmodified-Since`);
  }
  const ifNoneMatch = h["if-none-match"];
  if (ifNoneMatch !== undefined) return etagListed(ifNoneMatch, o.etag) ? "not-modified" : "send";
  const since = secondsOf(h["if-modified-since"]);
  return since !== undefined && modified <= since ? "not-modified" : "send";
}

/** A write's conditions, read from its headers; undefined for an unconditional write. */
export interface WriteConditions {
  /** `If-None-Match: *`: only when the key holds nothing. */
  absent: boolean;
  /** `If-Match`: only over an object with one of these ETags. */
  ifMatch?: string;
}

/** A write's conditions; 501 NotImplemented for an If-None-Match other than `*`, as S3. */
export function writeConditions(h: IncomingHttpHeaders): WriteConditions | undefined {
  const ifNoneMatch = h["if-none-match"];
  const ifMatch = h["if-match"];
  if (ifNoneMatch === undefined && ifMatch === undefined) return undefined;
  if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== "*") {
    throw new S3Error("NotImplemented", 501, `If-None-Match ${JSON.stringify(ifNoneMatch)} is not supported on a write; only "*" (write only when the key holds no object)`);
  }
  return { absent: ifNoneMatch !== undefined, ifMatch };
}

/** Why a write's conditions refuse it, given what the key holds now (`current`); undefined when they hold. */
export function writeRefusal(c: WriteConditions, current: StoredObject | undefined): S3Error | undefined {
  if (c.absent && current) return preconditionFailed("If-None-Match");
  if (c.ifMatch === undefined) return undefined;
  if (!current) return new S3Error("NoSuchKey", 404, "The specified key does not exist.");
  return etagListed(c.ifMatch, current.etag) ? undefined : preconditionFailed("If-Match");
}
