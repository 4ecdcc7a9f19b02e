/**
 * REST transcoding of the `google.api.http` routes. Routes are read from the method
 * options of the generated descriptors at start-up, never listed by hand.
 *
 * A request is turned into the JSON form of the method's input message — path variables,
 * then query parameters (for fields not bound elsewhere) and the body for `body: "*"` —
 * and decoded with protobuf's JSON rules, unknown fields rejected. The handler of the
 * service registry is called directly (no Connect router in between, see
 * shared/notes/performance.md) and its reply is written as canonical JSON with every
 * field emitted.
 */
import { decodeJson, parseJsonBody } from "./json-errors";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  create,
  getOption,
  hasOption,
  ScalarType,
  toJson,
  type DescField,
  type DescMessage,
  type DescMethod,
  type JsonObject,
  type JsonValue,
} from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { createCallContext, type CallContext } from "./call-context";
import { http as httpRule } from "../../gen/google/api/annotations_pb";
import type { Logger } from "../log";
import { CALL_DONE, errorBody, httpStatusOf, toConnectError } from "./errors";
import { handlersOf, type ServiceEntry, type StreamHandler, type UnaryHandler } from "./services";
import { serveEventStream } from "./sse";

/** A path segment: a literal, a field bound to one segment, or (`{key=**}`) to one or more. */
type Segment = { literal: string } | { field: string; multi?: boolean };

/** One REST route derived from a method's HttpRule. */
export interface RestRoute {
  httpMethod: string;
  template: string;
  segments: Segment[];
  verb: string;
  body: string;
  entry: ServiceEntry;
  method: DescMethod;
  handler: UnaryHandler | StreamHandler;
  /** A server-streaming method, served as Server-Sent Events. */
  streaming: boolean;
}

/** Parses `/{bucket}/ingest/jobs/{job_id}:cancel` into segments and a custom verb. */
export function parseTemplate(template: string): { segments: Segment[]; verb: string } {
  if (!template.startsWith("/")) throw new Error(`http rule path ${template} must start with /`);
  let path = template;
  let verb = "";
  const colon = path.lastIndexOf(":");
  if (colon > path.lastIndexOf("}") && colon > path.lastIndexOf("/")) {
    verb = path.slice(colon + 1);
    path = path.slice(0, colon);
  }
  const segments = path
    .slice(1)
    .split("/")
    .map((s): Segment => {
      const m = /^\{([a-z_][a-z0-9_.]*)(=\*\*?)?\}$/.exec(s);
      if (m) return m[2] === "=**" ? { field: m[1], multi: true } : { field: m[1] };
      if (s.includes("{")) throw new Error(`unsupported http rule path segment ${s} in ${template}`);
      return { literal: s };
    });
  return { segments, verb };
}

/** Reads every `google.api.http` rule of the registered services. */
export function buildRoutes(entries: readonly ServiceEntry[]): RestRoute[] {
  const routes: RestRoute[] = [];
  for (const entry of entries) {
    for (const [method, handler, streaming] of handlersOf(entry)) {
      if (!hasOption(method, httpRule)) continue;
      const rule = getOption(method, httpRule);
      const p = rule.pattern;
      let httpMethod: string;
      let template: string;
      if (p.case === "custom") {
        httpMethod = p.value.kind.toUpperCase();
        template = p.value.path;
      } else if (p.case !== undefined) {
        httpMethod = p.case.toUpperCase();
        template = p.value;
      } else {
        continue;
      }
      routes.push({ httpMethod, template, ...parseTemplate(template), body: rule.body, entry, method, handler, streaming });
    }
  }
  // More literal segments first, so /{b}/ingest/jobs wins over /{b}/{x}/jobs-like shapes.
  const literals = (r: RestRoute) => r.segments.filter((s) => "literal" in s).length;
  return routes.sort((a, b) => literals(b) - literals(a));
}

/** The outcome of matching a request path against the routes. */
export type RouteMatch =
  | { route: RestRoute; params: Record<string, string> }
  | { allowed: string[] }
  | undefined;

/** Finds the route for a method and raw (still percent-encoded) path. */
export function matchRoute(routes: readonly RestRoute[], httpMethod: string, rawPath: string): RouteMatch {
  const parts = rawPath.slice(1).split("/");
  const last = parts[parts.length - 1] ?? "";
  const allowed: string[] = [];
  for (const route of routes) {
    // A `{field=**}` segment takes the surplus segments (at least one).
    const multiAt = route.segments.findIndex((seg) => "field" in seg && seg.multi);
    const extra = parts.length - route.segments.length;
    if (multiAt < 0 ? extra !== 0 : extra < 0) continue;
    const segs = [...parts];
    if (route.verb) {
      if (!last.endsWith(`:${route.verb}`)) continue;
      segs[segs.length - 1] = last.slice(0, -route.verb.length - 1);
    } else if (last.includes(":") && route.segments[route.segments.length - 1] && "field" in route.segments[route.segments.length - 1]) {
      // "/b/ingest/jobs/x:cancel" must not match the GET route with job_id "x:cancel".
      if (routes.some((r) => r.verb && last.endsWith(`:${r.verb}`))) continue;
    }
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < route.segments.length && ok; i++) {
      const seg = route.segments[i];
      const at = multiAt >= 0 && i > multiAt ? i + extra : i;
      if ("literal" in seg) {
        ok = seg.literal === segs[at];
        continue;
      }
      const raw = seg.multi ? segs.slice(i, i + extra + 1) : [segs[at]];
      let value: string;
      try {
        value = raw.map((p) => decodeURIComponent(p)).join("/");
      } catch {
        throw new ConnectError(`path segment ${JSON.stringify(raw.join("/"))} is not valid percent-encoding`, Code.InvalidArgument);
      }
      ok = value !== "";
      params[seg.field] = value;
    }
    if (!ok) continue;
    if (route.httpMethod !== httpMethod) {
      allowed.push(route.httpMethod);
      continue;
    }
    return { route, params };
  }
  return allowed.length ? { allowed } : undefined;
}

function findField(schema: DescMessage, name: string): DescField | undefined {
  return schema.fields.find((f) => f.name === name || f.jsonName === name);
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** Converts one query-string value to the JSON value protobuf expects for the field. */
function queryValue(field: DescField, raw: string, param: string): JsonValue {
  const kind = field.fieldKind === "list" ? field.listKind : field.fieldKind;
  if (kind === "enum") return /^-?\d+$/.test(raw) ? Number(raw) : raw;
  if (kind !== "scalar") throw invalid(`query parameter "${param}" cannot set the message field ${field.name}`);
  const scalar = field.scalar;
  if (scalar === ScalarType.BOOL) {
    if (raw === "true" || raw === "1") return true;
    if (raw === "false" || raw === "0") return false;
    throw invalid(`query parameter "${param}" = ${JSON.stringify(raw)} is not a boolean`);
  }
  return raw;
}

/** Merges query parameters into the JSON request object. */
function applyQuery(schema: DescMessage, json: JsonObject, query: URLSearchParams, bound: Set<string>): void {
  for (const param of new Set(query.keys())) {
    const values = query.getAll(param);
    const path = param.split(".");
    let target = json;
    let message: DescMessage = schema;
    for (let i = 0; i < path.length; i++) {
      const field = findField(message, path[i]);
      if (!field || (i === 0 && bound.has(field.name))) {
        throw invalid(`unknown query parameter "${param}" for ${schema.name}`);
      }
      if (i < path.length - 1) {
        if (field.fieldKind !== "message") throw invalid(`unknown query parameter "${param}" for ${schema.name}`);
        const next = (target[field.jsonName] ??= {});
        if (typeof next !== "object" || next === null || Array.isArray(next)) {
          throw invalid(`query parameter "${param}" conflicts with another parameter`);
        }
        target = next;
        message = field.message;
        continue;
      }
      if (field.fieldKind === "list") {
        target[field.jsonName] = values.map((v) => queryValue(field, v, param));
      } else {
        if (values.length > 1) throw invalid(`query parameter "${param}" is given ${values.length} times`);
        target[field.jsonName] = queryValue(field, values[0], param);
      }
    }
  }
}

/** A request's whole body, refused past `maxBytes`. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > maxBytes) {
    throw new ConnectError(`request body of ${declared} bytes exceeds the limit of ${maxBytes} bytes (K3_MAX_BODY_BYTES); send less in one call, or raise the limit`, Code.ResourceExhausted);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) {
        throw new ConnectError(`request body exceeds the limit of ${maxBytes} bytes (K3_MAX_BODY_BYTES); send less in one call, or raise the limit`, Code.ResourceExhausted);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof ConnectError) throw err;
    // The client went away mid-body: nothing to answer, nothing to log above debug.
    throw new ConnectError("the client disconnected while sending the request body", Code.Canceled);
  }
  return Buffer.concat(chunks);
}

/** Builds the request message of a matched route. */
async function decodeRequest(
  route: RestRoute,
  params: Record<string, string>,
  req: IncomingMessage,
  query: URLSearchParams,
  maxBodyBytes: number,
): Promise<unknown> {
  const schema = route.method.input;
  let json: JsonObject = {};
  const bound = new Set<string>();
  if (route.body === "*") {
    const raw = await readBody(req, maxBodyBytes);
    if (raw.length > 0) {
      const parsed = parseJsonBody(raw);
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        throw invalid(`request body must be a JSON object`);
      }
      json = parsed as JsonObject;
    }
    for (const f of schema.fields) bound.add(f.name);
  }
  for (const [name, value] of Object.entries(params)) {
    const field = findField(schema, name);
    if (!field) throw new Error(`route variable ${name} is not a field of ${schema.typeName}`);
    for (const key of [field.name, field.jsonName]) {
      if (key in json) {
        if (json[key] !== value) {
          throw invalid(`${field.name} ${JSON.stringify(json[key])} in the body does not match ${JSON.stringify(value)} in the path`);
        }
        delete json[key];
      }
    }
    json[field.jsonName] = value;
    bound.add(field.name);
  }
  if (route.body !== "*") applyQuery(schema, json, query, bound);
  else if ([...query.keys()].length > 0) throw invalid(`unknown query parameter "${[...query.keys()][0]}" for ${schema.name}`);
  return decodeJson(schema, coerceStringMaps(schema, json));
}

/**
 * Option maps are map<string, string>, and people type `"chunk_size": 2000`: on this door
 * numbers and booleans in a string map are taken as their text (what `"2000"` would be).
 */
function coerceStringMaps(schema: DescMessage, json: JsonObject): JsonObject {
  for (const f of schema.fields) {
    const v = json[f.jsonName] ?? json[f.name];
    if (v === null || typeof v !== "object" || Array.isArray(v)) continue;
    if (f.fieldKind === "map" && f.mapKind === "scalar" && f.scalar === ScalarType.STRING) {
      for (const [k, x] of Object.entries(v)) if (typeof x === "number" || typeof x === "boolean") (v as JsonObject)[k] = String(x);
    } else if (f.fieldKind === "message") {
      coerceStringMaps(f.message, v as JsonObject);
    }
  }
  return json;
}


/** Writes a JSON reply. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** Writes an error reply in the REST error format. */
export function sendError(
  res: ServerResponse,
  err: ConnectError,
  extraHeaders: Record<string, string> = {},
  status: number = httpStatusOf(err.code),
): void {
  if (err.code === Code.ResourceExhausted && /request body/.test(err.rawMessage)) status = 413;
  sendJson(res, status, errorBody(err), extraHeaders);
}

/** Options of the REST door. */
export interface RestOptions {
  log: Logger;
  maxBodyBytes: number;
  shutdownSignal?: AbortSignal;
}

/**
 * Returns a handler that serves a request when it matches a REST route (resolving true)
 * and leaves it alone otherwise (resolving false).
 */
/** Serves a request when a REST route matches it (false otherwise); `matches` asks without serving. */
export interface RestHandler {
  (req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  /** Whether a request of this method and raw path is a REST route's (or would be refused by one as a wrong method). */
  matches(method: string, rawPath: string): boolean;
}

export function createRestHandler(entries: readonly ServiceEntry[], opts: RestOptions): RestHandler {
  const routes = buildRoutes(entries);
  const matches = (method: string, rawPath: string) => {
    try {
      return matchRoute(routes, method, rawPath) !== undefined;
    } catch {
      return true; // a path the REST routes refuse (bad percent-encoding) is answered by them
    }
  };
  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const rawPath = q < 0 ? url : url.slice(0, q);
    let match: RouteMatch;
    try {
      match = matchRoute(routes, req.method ?? "GET", rawPath);
    } catch (err) {
      sendError(res, toConnectError(err, opts.log));
      return true;
    }
    if (!match) return false;
    if ("allowed" in match) {
      const allow = [...new Set(match.allowed)].join(", ");
      const err = new ConnectError(`method ${req.method} is not allowed on ${rawPath}; allowed: ${allow}`, Code.Unimplemented);
      sendError(res, err, { allow }, 405);
      return true;
    }
    const { route, params } = match;
    // A client that leaves aborts the call's context (no controller of our own to link).
    let ctx: CallContext | undefined;
    let left = false;
    const onClose = () => {
      if (res.writableFinished) return;
      left = true;
      ctx?.abort(new ConnectError("client disconnected", Code.Canceled));
    };
    res.on("close", onClose);
    try {
      const query = new URLSearchParams(q < 0 ? "" : url.slice(q + 1));
      const input = await decodeRequest(route, params, req, query, opts.maxBodyBytes);
      ctx = createCallContext({
        service: route.entry.service,
        method: route.method,
        protocolName: "rest",
        requestMethod: req.method ?? "GET",
        url,
        requestHeader: headersOf(req),
        // A stream is ended by the hub on drain; linking thousands of long-lived streams to the one
        // shutdown signal would make every other call's link and unlink walk them all.
        shutdownSignal: route.streaming ? undefined : opts.shutdownSignal,
      });
      if (left) ctx.abort(new ConnectError("client disconnected", Code.Canceled));
      if (route.streaming) {
        await serveEventStream(route.method, (route.handler as StreamHandler)(withLastEventId(input, req), ctx), ctx, res, opts.log);
        return true;
      }
      const out = await (route.handler as UnaryHandler)(input, ctx);
      // Handlers may return init shapes; create() turns them into full messages.
      const message = create(route.method.output, out as never);
      const headers: Record<string, string> = {};
      ctx.responseHeaderIfAny()?.forEach((v, k) => (headers[k] = v));
      sendJson(res, 200, toJson(route.method.output, message, { alwaysEmitImplicit: true }), headers);
    } catch (err) {
      const headers: Record<string, string> = {};
      ctx?.responseHeaderIfAny()?.forEach((v, k) => (headers[k] = v));
      if (!res.headersSent) sendError(res, toConnectError(err, opts.log), headers);
    } finally {
      res.off("close", onClose);
      // Unlinks the context from the shutdown signal and clears its deadline timer.
      ctx?.abort(CALL_DONE);
    }
    return true;
  };
  return Object.assign(handler, { matches });
}

/** An SSE reconnect's Last-Event-ID header as the request's resume_after, unless the query sets one. */
function withLastEventId(input: unknown, req: IncomingMessage): unknown {
  const last = req.headers["last-event-id"];
  const msg = input as { resumeAfter?: string };
  if (typeof last === "string" && last !== "" && msg.resumeAfter === "") msg.resumeAfter = last.trim();
  return input;
}

/** Node's incoming headers as name/value pairs (HTTP/2 pseudo-headers left out). */
function headerPairs(req: IncomingMessage): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || k.startsWith(":")) continue;
    if (Array.isArray(v)) for (const value of v) pairs.push([k, value]);
    else pairs.push([k, v]);
  }
  return pairs;
}

/** Node's incoming headers as a Fetch Headers object. */
export function headersOf(req: IncomingMessage): Headers {
  return new Headers(headerPairs(req));
}
