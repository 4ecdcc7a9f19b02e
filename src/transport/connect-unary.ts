/**
 * Unary Connect calls over POST, answered with our own call context (call-context.ts), as
 * the REST and native gRPC doors are, instead of through connect-node: its universal
 * request and response, its linked abort controllers and the DOMException of every call's
 * end were half of the Connect door's server time under TriggerIngest (0.70 ms a call,
 * against 0.33 on REST). The wire format stays Connect's, made with connect's own protocol
 * helpers (content types, timeouts, error JSON, status codes, trailers as `trailer-`
 * headers, the negotiation of compressions) and connect-node's compressions, with its
 * defaults (responses of 1 KiB or more compressed as the client accepts). Those helpers are
 * connect's internal ones (not under semver): the version is pinned in package.json, and
 * test/connect-unary.test.ts checks the wire. GET and streams connect-node still serves.
 *
 * Two differences, on purpose: a binary body that is not a valid message is INVALID_ARGUMENT
 * naming the message type, as on the gRPC door (connect-node answered INTERNAL, "parse
 * binary: premature EOF", to a client's bad bytes); an empty JSON body says so and what to
 * send (it was "Unexpected end of JSON input").
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { create, toBinary, toJson, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionNegotiate } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes, parseContentType, parseTimeout, trailerMux } from "@connectrpc/connect/protocol-connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { Logger } from "../log";
import { createCallContext, type CallContext } from "./call-context";
import { CALL_DONE, toConnectError } from "./errors";
import { decodeBinary, decodeJson, parseJsonBody } from "./json-errors";
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

type Negotiated = ReturnType<typeof compressionNegotiate>;

/** A request's message from its (decompressed) body; INVALID_ARGUMENT saying what is wrong. */
function decodeInput(schema: DescMessage, body: Uint8Array, binary: boolean): unknown {
  if (binary) return decodeBinary(schema, body, "request body");
  if (body.length === 0) {
    throw new ConnectError(`request body is empty: send a JSON object ({} when no field of ${schema.typeName} is set)`, Code.InvalidArgument);
  }
  try {
    // The words REST answers (json-errors.ts), as before this door took these calls.
    return decodeJson(schema, parseJsonBody(body));
  } catch (err) {
    // Whatever else a hostile body does to the decoder (a stack overflow at 10,000 levels of
    // nesting) is still the body's fault.
    throw ConnectError.from(err, Code.InvalidArgument);
  }
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
    if (!type || type.stream) return false;
    const header = (name: string) => (req.headers[name] as string | undefined) ?? null;
    const compression = compressionNegotiate(COMPRESSIONS, header("content-encoding"), header("accept-encoding"), "accept-encoding");
    let input: unknown;
    if (!compression.error) {
      try {
        let body: Uint8Array = await readBody(req, opts.maxBodyBytes);
        if (compression.request) body = await compression.request.decompress(body, opts.maxBodyBytes);
        input = decodeInput(found.method.input, body, type.binary);
      } catch (err) {
        // Not a valid message, past the size limit (413), or the client left mid-body.
        if (!res.headersSent && !res.destroyed) sendError(res, toConnectError(err, opts.log));
        return true;
      }
    }
    await answer(req, res, found, input, type.binary, compression, opts);
    return true;
  };
}

/** Runs the handler and writes its answer (or its error) as connect-node would. */
async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  { entry, method, handler }: { entry: ServiceEntry; method: DescMethod; handler: UnaryHandler },
  input: unknown,
  binary: boolean,
  compression: Negotiated,
  opts: ConnectUnaryOptions,
): Promise<void> {
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
    // As connect-node: an unknown request compression, then a bad timeout, are the call's error.
    if (compression.error) throw compression.error;
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
  if (compression.response && body.byteLength >= COMPRESS_MIN_BYTES) {
    body = await compression.response.compress(body);
    headers.set("content-encoding", compression.response.name);
  }
  headers.set("content-length", String(body.byteLength));
  const out: Record<string, string> = {};
  headers.forEach((v, k) => (out[k] = v));
  res.writeHead(status, out);
  res.end(body);
}
