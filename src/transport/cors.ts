/**
 * CORS for the API on the HTTP port (REST, Connect, gRPC-Web, server-sent events,
 * /openapi.json): web pages at the origins of K3_CORS_ORIGINS may call it from a browser
 * with their bearer token. Nothing here rides on cookies, so there is no credentials mode.
 * The byte plane answers from each bucket's own rules instead (s3/bucket-cors.ts); which
 * of the two a request belongs to is http.ts's routing.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { cors as connectCors } from "@connectrpc/connect";
import { requestedHeaders, wildcardMatch } from "../domain/cors";
import { sendJson } from "./rest";

const ALLOWED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/** What a page may read of an answer: Connect's and gRPC-Web's status headers, and ours. */
const EXPOSED_HEADERS = [...new Set([...connectCors.exposedHeaders, "X-Request-Id", "Retry-After"])].join(", ");
/** How long a browser may keep a preflight's answer (Chromium keeps it at most 2 hours). */
const MAX_AGE_SECONDS = 7200;

/** The API's CORS: `preflight` answers an OPTIONS, `allow` sets the headers of an actual request. */
export interface ApiCors {
  preflight(req: IncomingMessage, res: ServerResponse): void;
  allow(req: IncomingMessage, res: ServerResponse): void;
}

export function createApiCors(origins: readonly string[]): ApiCors {
  const allowed = (origin: string) => origins.some((o) => wildcardMatch(o, origin));
  return {
    preflight(req, res) {
      const origin = String(req.headers.origin);
      if (!allowed(origin)) {
        const now = origins.length ? origins.map((o) => JSON.stringify(o)).join(", ") : "none";
        sendJson(res, 403, { code: "permission_denied", message: `origin ${JSON.stringify(origin)} may not call this server's API from a browser; allowed origins (K3_CORS_ORIGINS): ${now}`, details: [] }, { vary: "Origin" });
        return;
      }
      const headers = requestedHeaders(req.headers["access-control-request-headers"]);
      res.writeHead(204, {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": ALLOWED_METHODS.join(", "),
        // The page's own headers are its business: the server reads the ones it knows.
        ...(headers.length ? { "access-control-allow-headers": headers.join(", ") } : {}),
        "access-control-max-age": String(MAX_AGE_SECONDS),
        vary: "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
      });
      res.end();
    },
    allow(req, res) {
      const origin = String(req.headers.origin);
      res.setHeader("vary", "Origin");
      if (!allowed(origin)) return;
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("access-control-expose-headers", EXPOSED_HEADERS);
    },
  };
}
