/** A small fetch-based JSON client for the REST door, as a curl user would call it. */
import { request, type IncomingHttpHeaders } from "node:http";

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

/**
 * One request with the path exactly as given, as `curl --path-as-is` sends it (fetch folds
 * `.` and `..` segments away, which S3 keys may hold).
 */
export function rawRequest(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: { ...headers, ...(body ? { "content-length": String(body.length) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A key's path segments percent-encoded, `.` and `..` kept as they are. */
export const keyPathOf = (key: string) => key.split("/").map(encodeURIComponent).join("/");
