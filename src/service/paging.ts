/** Keyset paging shared by every List RPC: page size rules, token binding, next token. */
import { decodePageToken, encodePageToken } from "../domain/page-token";
import { resolvePageSize } from "../domain/validate";
import type { Page, PageParams } from "../storage/repository";

/** One resolved page ready for a response. */
export interface ServedPage<T> {
  items: T[];
  nextPageToken: string;
  total: number;
}

/** Largest page a list answers, in (estimated) bytes; past it the page ends early with a next token. */
export const MAX_PAGE_BYTES = 4 * 1024 * 1024;

/**
 * Runs a keyset listing for the request's page_size and page_token; the token is bound to
 * `filters` so that it cannot be replayed against a different listing.
 */
export async function servePage<T extends { createdAt: number }>(
  req: { pageSize: number; pageToken: string },
  filters: Readonly<Record<string, string | number | undefined>>,
  fetch: (page: PageParams) => Promise<Page<T>>,
  idOf: (item: T) => string,
  sizeOf?: (item: T) => number,
): Promise<ServedPage<T>> {
  const limit = resolvePageSize(req.pageSize);
  const after = decodePageToken(req.pageToken, filters);
  const page = await fetch({ after, limit });
  let items = page.items;
  let more = page.more;
  if (sizeOf) {
    // Bounded in bytes as well as rows: stop before the page would pass MAX_PAGE_BYTES.
    let bytes = 0;
    const fits = items.findIndex((item, i) => (bytes += sizeOf(item)) > MAX_PAGE_BYTES && i > 0);
    if (fits > 0) {
      items = items.slice(0, fits);
      more = true;
    }
  }
  const last = items[items.length - 1];
  const nextPageToken = more && last ? encodePageToken({ createdAt: last.createdAt, id: idOf(last) }, filters) : "";
  return { items, nextPageToken, total: page.total };
}
