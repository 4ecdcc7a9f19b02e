/**
 * The web console at /console/: static files (src/console, copied to dist by the build)
 * read once at start and served from memory. They are plain ES modules — no bundler, no
 * CDN — and every call they make goes through the public API with the signed-in token, so
 * the console can do nothing the token cannot. A strict Content-Security-Policy allows
 * only this origin.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join } from "node:path";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

const HEADERS = {
  "cache-control": "no-cache",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

/** A handler answering GET/HEAD /console and /console/*; false for other paths. */
export function createConsole(dir = join(__dirname, "..", "console")): (req: IncomingMessage, res: ServerResponse, path: string) => boolean {
  const files = new Map<string, { body: Buffer; type: string }>();
  if (existsSync(dir)) {
    for (const name of readdirSync(dir)) {
      const type = TYPES[extname(name)];
      if (type) files.set(name, { body: readFileSync(join(dir, name)), type });
    }
  }
  return (req, res, path) => {
    if (path !== "/console" && !path.startsWith("/console/")) return false;
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    if (path === "/console") {
      res.writeHead(308, { location: "/console/", ...HEADERS });
      res.end();
      return true;
    }
    const name = path.slice("/console/".length) || "index.html";
    const file = files.get(name);
    if (!file) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8", ...HEADERS });
      res.end(`no console file ${name}\n`);
      return true;
    }
    res.writeHead(200, { "content-type": file.type, "content-length": file.body.length, ...HEADERS });
    res.end(req.method === "HEAD" ? undefined : file.body);
    return true;
  };
}
