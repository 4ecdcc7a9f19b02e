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

/**
 * Runs a keyset listing for the request's page_size and page_token; the token is bound to
 * `filters` so that it cannot be replayed against a different listing.
 */
export async function servePage<T extends { createdAt: number }>(
  req: { pageSize: number; pageToken: string },
  filters: Readonly<Record<string, string | number | undefined>>,
  fetch: (page: PageParams) => Promise<Page<T>>,
  idOf: (item: T) => string,
): Promise<ServedPage<T>> {
  const limit = resolvePageSize(req.pageSize);
  const after = decodePageToken(req.pageToken, filters);
  const page = await fetch({ after, limit });
  const last = page.items[page.items.length - 1];
  const nextPageToken =
    page.more && last ? encodePageToken({ createdAt: last.createdAt, id: idOf(last) }, filters) : "";
  return { items: page.items, nextPageToken, total: page.total };
}
