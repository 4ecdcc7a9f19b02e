/**
 * The HTTP port: health endpoints, the REST routes, unary Connect POSTs (connect-unary.ts),
 * and connect-node for the rest of the Connect protocol (GET for NO_SIDE_EFFECTS methods,
 * streams) and gRPC-Web. A plain `http.createServer`, so HTTP/1.1 clients such as curl work (see shared/notes/stack.md).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Readable } from "node:stream";
import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../log";
import { createConnectUnary } from "./connect-unary";
import { connectNodeHandler } from "./connect-node-handler";
import { decodeBinary } from "./json-errors";
import { createRestHandler, readBody, sendError, sendJson } from "./rest";
import type { ServiceEntry } from "./services";
import { isSigV4 } from "../s3/sigv4";
import { createConsole } from "./console";
import { createApiCors } from "./cors";

/** Options of the HTTP door. */
export interface HttpOptions {
  log: Logger;
  maxBodyBytes: number;
  /** Resolves when the server is ready to serve (database reachable, migrations done). */
  ready: () => Promise<boolean>;
  shutdownSignal?: AbortSignal;
  /** Serves GET /metrics when given. */
  metrics?: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** Served at GET /openapi.json when given. */
  openapi?: object;
  /** Aborted when the server starts draining (SIGTERM): keep-alive connections close, new requests get 503. */
  drainSignal?: AbortSignal;
  /** The S3 byte plane, when this server has one (see the routing rules in createHttpServer). */
  bytePlane?: { handle(req: IncomingMessage, res: ServerResponse): Promise<void> };
  /** False when the process can no longer work on its own (its embedded database is gone for good); /healthz then answers 503. */
  live?: () => boolean;
  /** Origins whose web pages may call the API from a browser (K3_CORS_ORIGINS, checked); none when absent. */
  corsOrigins?: readonly string[];
}

/** Paths the server answers itself, before the byte plane, REST and Connect. */
const OWN_PATHS = new Set(["/health", "/healthz", "/ready", "/readyz", "/openapi.json", "/metrics"]);

/**
 * Answers a request refused before any protocol handler ran, in the caller's protocol:
 * gRPC-Web as a trailers-only response (grpc-status / grpc-message headers), everyone
 * else (REST, Connect) with the JSON error body.
 */
function refuse(req: IncomingMessage, res: ServerResponse, err: ConnectError, status: number): void {
  const type = String(req.headers["content-type"] ?? "");
  if (type.startsWith("application/grpc-web")) {
    res.writeHead(status, { "content-type": type, "grpc-status": String(err.code), "grpc-message": encodeURIComponent(err.rawMessage) });
    res.end();
    return;
  }
  sendError(res, err, {}, status);
}

/**
 * Checks the message of a unary gRPC-Web body (one uncompressed frame; connect-node judges
 * compressed or cut-short ones): connect-node answered bad bytes with INTERNAL ("parse
 * binary: premature EOF"); INVALID_ARGUMENT in the native gRPC door's words instead.
 */
function checkGrpcWebBody(input: DescMessage, body: Buffer): void {
  if (body.length < 5 || (body[0] & 1) === 1) return;
  const length = body.readUInt32BE(1);
  if (body.length >= 5 + length) decodeBinary(input, body.subarray(5, 5 + length), "request");
}

/** The request again with its body already read: what connect-node reads from is the buffered body. */
function replayBody(req: IncomingMessage, body: Buffer): IncomingMessage {
  const again = Readable.from(body.length ? [body] : []) as unknown as IncomingMessage;
  return Object.assign(again, { headers: req.headers, rawHeaders: req.rawHeaders, method: req.method, url: req.url, httpVersion: req.httpVersion, socket: req.socket });
}

/** How many times a header occurs in the raw request (Node keeps only the first Authorization). */
function headerCount(req: IncomingMessage, name: string): number {
  let n = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() === name) n++;
  return n;
}

/** An http.Server serving health, REST, Connect and gRPC-Web. */
export function createHttpServer(entries: readonly ServiceEntry[], opts: HttpOptions): Server {
  const rest = createRestHandler(entries, opts);
  const consoleFiles = createConsole();
  const apiCors = createApiCors(opts.corsOrigins ?? []);
  const adapter = (streams: boolean) =>
    connectNodeHandler({
      log: opts.log,
      routes(router) {
        for (const e of entries) router.service(e.service, e.impl as never);
      },
      jsonOptions: { alwaysEmitImplicit: true, ignoreUnknownFields: false },
      readMaxBytes: opts.maxBodyBytes,
      // Streams are ended by the job hub on drain: linking thousands of long-lived streams to
      // the one shutdown signal would make every other call's link and unlink walk them all.
      shutdownSignal: streams ? undefined : opts.shutdownSignal,
    });
  const connectNodeUnary = adapter(false);
  const connectStreams = adapter(true);
  const streamPaths = new Set(entries.flatMap((e) => [...e.streams.keys()].map((m) => `/${e.service.typeName}/${m.name}`)));
  const connect = (req: IncomingMessage, res: ServerResponse) => (streamPaths.has((req.url ?? "/").split("?")[0]) ? connectStreams : connectNodeUnary)(req, res);
  const connectPaths = new Set(
    entries.flatMap((e) => e.service.methods.map((m) => `/${e.service.typeName}/${m.name}`)),
  );
  // Unary Connect POSTs (connect-unary.ts); connect-node serves Connect GETs and streams, and gRPC-Web.
  const connectUnary = createConnectUnary(entries, opts);
  const unaryInputs = new Map(
    entries.flatMap((e) => e.service.methods.filter((m) => m.methodKind === "unary").map((m): [string, DescMessage] => [`/${e.service.typeName}/${m.name}`, m.input])),
  );
  /**
   * Whether a request (or the request a preflight announces, with `method`) is the byte
   * plane's before any REST route is tried; see the routing rules below.
   */
  const bytePlaneFirst = (req: IncomingMessage, method: string, path: string) =>
    opts.bytePlane !== undefined &&
    (isSigV4(req.headers, req.url ?? "") || (method === "PUT" && !rest.matches(method, path)) || method === "HEAD" || path === "/");

  /**
   * A browser's cross-origin request (it carries Origin): a preflight is answered by the
   * byte plane (the bucket's rules) or here (K3_CORS_ORIGINS), wherever the request it
   * announces would go; an API call gets its CORS headers. True when answered.
   */
  async function crossOrigin(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    const announced = req.method === "OPTIONS" ? req.headers["access-control-request-method"] : undefined;
    const method = String(announced ?? req.method ?? "GET").toUpperCase();
    const s3 =
      opts.bytePlane !== undefined &&
      (bytePlaneFirst(req, method, path) ||
        // An S3 SDK signing in the page announces its x-amz-* headers.
        (announced !== undefined && /(^|,)\s*x-amz-/i.test(String(req.headers["access-control-request-headers"] ?? ""))) ||
        (!OWN_PATHS.has(path) && !path.startsWith("/console") && !rest.matches(method, path) && !connectPaths.has(path)));
    if (announced === undefined) {
      if (!s3) apiCors.allow(req, res);
      return false;
    }
    if (s3) await opts.bytePlane?.handle(req, res);
    else apiCors.preflight(req, res);
    return true;
  }

  // Responses still to be written when draining starts are told to close their connection.
  const open = new Set<ServerResponse>();
  opts.drainSignal?.addEventListener("abort", () => {
    for (const res of open) if (!res.headersSent) res.setHeader("connection", "close");
  });
  const server = createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (opts.drainSignal?.aborted) {
      // A request on a kept-alive connection after SIGTERM: not accepted, and the connection closes.
      res.setHeader("connection", "close");
      refuse(req, res, new ConnectError("the server is shutting down; retry on another instance", Code.Unavailable), 503);
      return;
    }
    open.add(res);
    res.once("close", () => open.delete(res));
    try {
      if (req.method === "GET" && (path === "/health" || path === "/healthz")) {
        const live = opts.live?.() ?? true;
        sendJson(res, live ? 200 : 503, { status: live ? "ok" : "unavailable" });
        return;
      }
      if (req.headers.origin !== undefined && (await crossOrigin(req, res, path))) return;
      const auths = headerCount(req, "authorization");
      if (auths > 1) {
        refuse(req, res, new ConnectError(`send exactly one Authorization header; this request has ${auths}`, Code.InvalidArgument), 400);
        return;
      }
      if (req.method === "GET" && (path === "/ready" || path === "/readyz")) {
        const ok = await opts.ready().catch(() => false);
        sendJson(res, ok ? 200 : 503, { status: ok ? "ok" : "unavailable" });
        return;
      }
      if (req.method === "GET" && path === "/openapi.json" && opts.openapi) {
        sendJson(res, 200, opts.openapi);
        return;
      }
      if (req.method === "GET" && path === "/metrics" && opts.metrics) {
        await opts.metrics(req, res);
        return;
      }
      // The console (GET /console/…), unless the request is S3-signed (a bucket named "console").
      if (!isSigV4(req.headers, req.url ?? "") && consoleFiles(req, res, path)) return;
      // Who serves what on the shared port: a SigV4-signed request, any PUT but a REST
      // route's (a bucket's CORS rules and policy, UpsertVectors), any HEAD, and GET / are
      // S3; otherwise a REST route wins (so GET /{bucket}/rules is the rule list, not an
      // object named "rules"), then the Connect paths, then S3 again.
      const bytePlane = opts.bytePlane;
      if (bytePlane && bytePlaneFirst(req, req.method ?? "GET", path)) {
        await bytePlane.handle(req, res);
        return;
      }
      if (await rest(req, res)) return;
      if (!connectPaths.has(path)) {
        if (bytePlane) await bytePlane.handle(req, res);
        else sendError(res, new ConnectError(`no route for ${req.method} ${path}`, Code.NotFound));
        return;
      }
      const declared = Number(req.headers["content-length"] ?? "0");
      if (declared > opts.maxBodyBytes) {
        // 413, as on REST: Connect's own limit would answer 429, which clients retry.
        const err = new ConnectError(`request body of ${declared} bytes exceeds the limit of ${opts.maxBodyBytes} bytes (K3_MAX_BODY_BYTES)`, Code.ResourceExhausted);
        res.setHeader("connection", "close");
        refuse(req, res, err, 413);
        return;
      }
      if (await connectUnary(req, res, path)) return;
      const input = unaryInputs.get(path);
      if (input && req.method === "POST" && /^application\/grpc-web(\+proto)?$/.test(String(req.headers["content-type"] ?? ""))) {
        const body = await readBody(req, opts.maxBodyBytes);
        try {
          checkGrpcWebBody(input, body);
        } catch (err) {
          refuse(req, res, err as ConnectError, 200);
          return;
        }
        connect(replayBody(req, body), res);
        return;
      }
      connect(req, res);
    } catch (err) {
      if (req.destroyed || (err as NodeJS.ErrnoException).code === "ECONNRESET") {
        opts.log.debug("client went away", { path });
        return;
      }
      opts.log.error("http handler failed", { err });
      if (!res.headersSent) sendError(res, new ConnectError("internal error", Code.Internal));
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 65_000;
  // Requests Node refuses before any handler runs (a request line or headers past 16 KiB,
  // malformed HTTP) still get a JSON error body, as every other error does.
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || (err.code !== "HPE_HEADER_OVERFLOW" && !err.code?.startsWith("HPE_"))) {
      socket.destroy();
      return;
    }
    const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
    const body = JSON.stringify({
      code: "invalid_argument",
      message: tooLarge ? "the request line and headers are larger than 16 KiB; send long values in a POST body" : "malformed HTTP request",
      details: [],
    });
    socket.end(
      `HTTP/1.1 ${tooLarge ? "431 Request Header Fields Too Large" : "400 Bad Request"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}
