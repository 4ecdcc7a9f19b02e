/**
 * Real clients for every door, behind one JSON-in/JSON-out call so that scenarios can run
 * unchanged through each: grpc-js (native gRPC), the Connect client (Connect protocol
 * over HTTP/1.1), the gRPC-Web client, and plain fetch against the REST routes.
 */
import * as grpc from "@grpc/grpc-js";
import {
  fromBinary,
  fromJson,
  getOption,
  toBinary,
  toJson,
  type DescMethod,
  type DescService,
  type JsonObject,
  type JsonValue,
} from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { http as httpRule } from "../../gen/google/api/annotations_pb";

/** The doors a scenario can go through. */
export type Door = "grpc" | "connect" | "grpcweb" | "rest";
export const DOORS: readonly Door[] = ["grpc", "connect", "grpcweb", "rest"];

/** The result of a call, in a door-independent form. */
export type CallResult =
  | { ok: true; body: JsonValue }
  | { ok: false; code: string; message: string; httpStatus?: number; wwwAuthenticate?: string };

const GRPC_CODE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(Code)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [v as number, k.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase().replace("canceled", "cancelled")]),
);

/** Calls a method through native gRPC with grpc-js. */
export function grpcCall(
  client: grpc.Client,
  service: DescService,
  method: DescMethod,
  request: JsonObject,
  metadata: grpc.Metadata = new grpc.Metadata(),
): Promise<CallResult> {
  const msg = fromJson(method.input, request);
  return new Promise((resolve) => {
    client.makeUnaryRequest<Uint8Array, Buffer>(
      `/${service.typeName}/${method.name}`,
      (m) => Buffer.from(m),
      (b) => b,
      toBinary(method.input, msg),
      metadata,
      { deadline: Date.now() + 10_000 },
      (err, res) => {
        if (err) {
          resolve({ ok: false, code: GRPC_CODE_NAMES[err.code] ?? String(err.code), message: err.details });
        } else {
          const out = fromBinary(method.output, res!);
          resolve({ ok: true, body: toJson(method.output, out, { alwaysEmitImplicit: true }) });
        }
      },
    );
  });
}

async function connectCall(
  transport: Transport,
  service: DescService,
  method: DescMethod,
  request: JsonObject,
  headers: Record<string, string>,
): Promise<CallResult> {
  const client = createClient(service, transport) as unknown as Record<string, (req: unknown, opts: unknown) => Promise<unknown>>;
  try {
    const out = await client[method.localName](fromJson(method.input, request), { headers });
    return { ok: true, body: toJson(method.output, out as never, { alwaysEmitImplicit: true }) };
  } catch (err) {
    const ce = ConnectError.from(err);
    return { ok: false, code: GRPC_CODE_NAMES[ce.code], message: ce.rawMessage };
  }
}

/** Builds the REST request of a method from its http rule and a JSON request. */
export function restRequest(method: DescMethod, request: JsonObject): { verb: string; path: string; body?: string } {
  const rule = getOption(method, httpRule);
  if (rule.pattern.case === undefined || rule.pattern.case === "custom") throw new Error(`${method.name} has no REST route`);
  const verb = rule.pattern.case.toUpperCase();
  const rest: JsonObject = { ...request };
  const path = rule.pattern.value.replace(/\{([a-z_]+)\}/g, (_, name: string) => {
    const camel = name.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
    const v = rest[name] ?? rest[camel];
    delete rest[name];
    delete rest[camel];
    return encodeURIComponent(String(v ?? ""));
  });
  if (rule.body === "*") return { verb, path, body: JSON.stringify(rest) };
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(rest)) {
    for (const item of Array.isArray(v) ? v : [v]) qs.append(k, String(item));
  }
  const q = qs.toString();
  return { verb, path: q ? `${path}?${q}` : path };
}

/** Calls a REST route with fetch. */
export async function restCall(
  baseUrl: string,
  verb: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<CallResult> {
  const res = await fetch(baseUrl + path, {
    method: verb,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body,
  });
  const text = await res.text();
  const json = JSON.parse(text) as JsonObject;
  if (res.status === 200) return { ok: true, body: json };
  const challenge = res.headers.get("www-authenticate");
  return {
    ok: false,
    code: String(json.code),
    message: String(json.message),
    httpStatus: res.status,
    ...(challenge ? { wwwAuthenticate: challenge } : {}),
  };
}

/** One set of clients against a running server. */
export interface Clients {
  call(door: Door, service: DescService, methodName: string, request: JsonObject, headers?: Record<string, string>): Promise<CallResult>;
  grpc: grpc.Client;
  close(): void;
}

/** Connects a client of every door to the server. */
export function connectClients(httpUrl: string, grpcAddress: string): Clients {
  const grpcClient = new grpc.Client(grpcAddress, grpc.credentials.createInsecure());
  const transports: Record<"connect" | "grpcweb", Transport> = {
    connect: createConnectTransport({ baseUrl: httpUrl, httpVersion: "1.1" }),
    grpcweb: createGrpcWebTransport({ baseUrl: httpUrl, httpVersion: "1.1" }),
  };
  return {
    grpc: grpcClient,
    async call(door, service, methodName, request, headers = {}) {
      const method = service.methods.find((m) => m.name === methodName);
      if (!method) throw new Error(`no method ${methodName}`);
      switch (door) {
        case "grpc": {
          const md = new grpc.Metadata();
          for (const [k, v] of Object.entries(headers)) md.set(k, v);
          return grpcCall(grpcClient, service, method, request, md);
        }
        case "connect":
        case "grpcweb":
          return connectCall(transports[door], service, method, request, headers);
        case "rest": {
          const r = restRequest(method, request);
          return restCall(httpUrl, r.verb, r.path, r.body, headers);
        }
      }
    },
    close() {
      grpcClient.close();
    },
  };
}
