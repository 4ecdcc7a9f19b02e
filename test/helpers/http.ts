/** A small fetch-based JSON client for the REST door, as a curl user would call it. */

// JSON replies are checked field by field; `any` keeps those assertions readable.
export type J = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Returns `http(method, path, body?)` against the base URL `base()` gives at call time. */
export function jsonClient(base: () => string, headers: Record<string, string> = {}) {
  return async function http(method: string, path: string, body?: unknown): Promise<{ status: number; json: J }> {
    const res = await fetch(base() + path, {
      method,
      headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    return { status: res.status, json: (await res.json()) as J };
  };
}
