/**
 * Unary Connect calls over POST, answered with our own call context (call-context.ts), as
 * the REST and native gRPC doors are, instead of through connect-node: its universal
 * request and response, its linked abort controllers and the DOMException of every call's
 * end were half of the Connect door's server time under TriggerIngest (0.70 ms a call,
 * against 0.33 on REST). The wire format stays Connect's, made with connect's own protocol
 * helpers (content types, timeouts, error JSON, status codes, trailers as `trailer-`
 * headers) and connect-node's compressions, with connect-node's defaults (responses of
 * 1 KiB or more compressed as the client accepts). What this does not take — GET, a
 * compressed request body, streams — connect-node still serves.
 *
 * Two differences, on purpose: a binary body that is not a valid message is INVALID_ARGUMENT
 * naming the message type, as on the gRPC door (connect-node answered INTERNAL, "parse
 * binary: premature EOF", to a client's bad bytes); an empty JSON body says so and what to
 * send (it was "Unexpected end of JSON input").
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { create, fromBinary, toBinary, toJson, type DescMethod, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes, parseContentType, parseTimeout, trailerMux } from "@connectrpc/connect/protocol-connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { Logger } from "../log";
import { createCallContext, type CallContext } from "./call-context";
import { CALL_DONE, toConnectError } from "./errors";
import { decodeJson } from "./json-errors";
import { headersOf, readBody, sendError } from "./rest";
import type { ServiceEntry, UnaryHandler } from "./services";

/** connect-node's defaults, kept: the smallest response worth compressing, the compressions it offers in order. */
const COMPRESS_MIN_BYTES = 1024;
const COMPRESSIONS = [compressionGzip, compressionBrotli];
const JSON_WRITE = { alwaysEmitImplicit: true } as const;

/** Options of the Connect unary door. */
export interface ConnectUnaryOptions {
  log: Logger;
  maxBodyBytes: number;
  shutdownSignal?: AbortSignal;
}

/** The compression of the response: the first encoding of the client's list that connect-node offers too. */
function responseCompression(accept: string | undefined) {
  if (!accept) return undefined;
  for (const name of accept.split(",").map((n) => n.trim())) {
    const found = COMPRESSIONS.find((c) => c.name === name);
    if (found) return found;
  }
  return undefined;
}

/**
 * Returns a handler that serves a unary Connect POST it can take (resolving true) and leaves
 * every other request to connect-node (resolving false).
 */
export function createConnectUnary(entries: readonly ServiceEntry[], opts: ConnectUnaryOptions) {
  const methods = new Map<string, { entry: ServiceEntry; method: DescMethod; handler: UnaryHandler }>();
  for (const entry of entries) {
    for (const [method, handler] of entry.methods) methods.set(`/${entry.service.typeName}/${method.name}`, { entry, method, handler });
  }

  return async function serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    const found = methods.get(path);
    if (!found || req.method !== "POST") return false;
    const type = parseContentType(req.headers["content-type"] ?? null);
    const encoding = req.headers["content-encoding"];
    if (!type || type.stream || (encoding !== undefined && encoding !== "identity")) return false;
    let body: Buffer;
    try {
      body = await readBody(req, opts.maxBodyBytes);
    } catch (err) {
      // Past the size limit (413), or the client left mid-body.
      if (!res.headersSent && !req.destroyed) sendError(res, toConnectError(err, opts.log));
      return true;
    }
    const { method, handler, entry } = found;
    let input: unknown;
    if (type.binary) {
      try {
        input = fromBinary(method.input, body);
      } catch (err) {
        sendError(res, new ConnectError(`request body is not a valid ${method.input.typeName}: ${(err as Error).message}`, Code.InvalidArgument));
        return true;
      }
    } else {
      if (body.length === 0) {
        sendError(res, new ConnectError(`request body is empty: send a JSON object ({} when no field of ${method.input.typeName} is set)`, Code.InvalidArgument), {}, 400);
        return true;
      }
      let json: JsonValue;
      try {
        json = JSON.parse(body.toString("utf8")) as JsonValue;
        input = decodeJson(method.input, json);
      } catch (err) {
        // The words REST answers (json-errors.ts), as before this door took these calls.
        const message = err instanceof SyntaxError ? `request body is not valid JSON: ${err.message}` : ConnectError.from(err).rawMessage;
        sendError(res, new ConnectError(message, Code.InvalidArgument), {}, 400);
        return true;
      }
    }
    await answer(req, res, entry, method, handler, input, type.binary, opts);
    return true;
  };
}

/** Runs the handler and writes its answer (or its error) as connect-node would. */
async function answer(req: IncomingMessage, res: ServerResponse, entry: ServiceEntry, method: DescMethod, handler: UnaryHandler, input: unknown, binary: boolean, opts: ConnectUnaryOptions): Promise<void> {
  const timeout = parseTimeout((req.headers["connect-timeout-ms"] as string | undefined) ?? null, Number.MAX_SAFE_INTEGER);
  const ctx: CallContext = createCallContext({
    service: entry.service,
    method,
    protocolName: "connect",
    requestMethod: "POST",
    url: req.url ?? "/",
    requestHeader: headersOf(req),
    timeoutMs: timeout.timeoutMs,
    shutdownSignal: opts.shutdownSignal,
  });
  const onClose = () => {
    if (!res.writableFinished) ctx.abort(new ConnectError("client disconnected", Code.Canceled));
  };
  res.on("close", onClose);
  let status = 200;
  let body: Uint8Array;
  let contentType = binary ? "application/proto" : "application/json";
  try {
    if (timeout.error) throw timeout.error;
    const out = create(method.output, (await handler(input, ctx)) as never);
    body = binary ? toBinary(method.output, out) : Buffer.from(JSON.stringify(toJson(method.output, out, JSON_WRITE)));
  } catch (err) {
    const error = toConnectError(err, opts.log);
    status = codeToHttpStatus(error.code);
    contentType = "application/json";
    error.metadata.forEach((value, key) => ctx.responseHeader.set(key, value));
    body = errorToJsonBytes(error, JSON_WRITE);
  } finally {
    res.off("close", onClose);
    ctx.abort(CALL_DONE);
  }
  const headers = trailerMux(ctx.responseHeaderIfAny() ?? new Headers(), ctx.responseTrailerIfAny() ?? new Headers());
  headers.set("content-type", contentType);
  const compression = body.byteLength >= COMPRESS_MIN_BYTES ? responseCompression(req.headers["accept-encoding"]) : undefined;
  if (compression) {
    body = await compression.compress(body);
    headers.set("content-encoding", compression.name);
  }
  headers.set("content-length", String(body.byteLength));
  const out: Record<string, string> = {};
  headers.forEach((v, k) => (out[k] = v));
  res.writeHead(status, out);
  res.end(body);
}
