/**
 * Opaque page tokens for keyset pagination. A token carries the sort key of the last
 * item served and a fingerprint of the filters it was issued for; reusing it with other
 * filters is an InvalidArgument rather than a silently wrong page.
 */
import { createHash } from "node:crypto";
import { InvalidArgument } from "./errors";

/** Sort key of the last item of a page: (created_at, id), both descending. */
export interface Cursor {
  createdAt: number;
  id: string;
}

function fingerprint(filters: Readonly<Record<string, string | number | undefined>>): string {
  const canonical = Object.keys(filters)
    .sort()
    .map((k) => `${k}=${filters[k] ?? ""}`)
    .join("&");
  return createHash("sha256").update(canonical).digest("base64url").slice(0, 16);
}

/** Encodes the cursor for the given filters. */
export function encodePageToken(
  cursor: Cursor,
  filters: Readonly<Record<string, string | number | undefined>>,
): string {
  const body = JSON.stringify([cursor.createdAt, cursor.id, fingerprint(filters)]);
  return Buffer.from(body).toString("base64url");
}

/** Decodes a token, or returns undefined for an empty one; throws InvalidArgument when it is bad. */
export function decodePageToken(
  token: string,
  filters: Readonly<Record<string, string | number | undefined>>,
  field = "page_token",
): Cursor | undefined {
  if (token === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 3 ||
    !Number.isSafeInteger(parsed[0]) ||
    typeof parsed[1] !== "string" ||
    typeof parsed[2] !== "string"
  ) {
    throw new InvalidArgument(`${field} "${token.slice(0, 64)}" is not a valid page token`, field);
  }
  if (parsed[2] !== fingerprint(filters)) {
    throw new InvalidArgument(
      `${field} was issued for different filters; start again without a page_token`,
      field,
    );
  }
  return { createdAt: parsed[0] as number, id: parsed[1] };
}
