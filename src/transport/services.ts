/**
 * The registry of implemented services shared by the three doors. Each method is wrapped
 * once, so every door authenticates, authorizes and reports errors the same way: the
 * caller comes from the request headers, must hold a grant for the request's bucket with
 * the role the method needs, and reaches the service on the handler context.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { Code, type HandlerContext } from "@connectrpc/connect";
import { checkBucket } from "../domain/validate";
import type { Logger } from "../log";
import type { Metrics } from "../metrics";
import { callerKey, requestIdKey } from "../service/caller";
import { checkStringFields } from "../service/check-strings";
import { ResourceExhausted } from "../domain/errors";
import { authorize, checkOrganization, requiredRole, type Authenticator } from "./auth";
import type { RateLimiter } from "./rate-limit";
import { codeName, toConnectError } from "./errors";

/** A unary handler: request message in, response init shape out. */
export type UnaryHandler = (req: unknown, ctx: HandlerContext) => Promise<unknown>;
/** A server-streaming handler: request message in, response init shapes out until it returns. */
export type StreamHandler = (req: unknown, ctx: HandlerContext) => AsyncIterable<unknown>;

/** One service and its implementation keyed by method local name. */
export interface ServiceEntry {
  service: DescService;
  methods: ReadonlyMap<DescMethod, UnaryHandler>;
  /** The server-streaming methods (WatchIngestJobs). */
  streams: ReadonlyMap<DescMethod, StreamHandler>;
  /** The implementation object, as Connect's router expects it. */
  impl: Record<string, UnaryHandler | StreamHandler>;
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

// Generated ids: a random per-process prefix and a counter (unique without a syscall per call).
const ID_PREFIX = `req_${randomBytes(8).toString("hex")}`;
let idCounter = 0;

/** The caller's x-request-id when it is sane (printable, at most 128 chars), else a new one. */
export function requestIdOf(headers: Headers): string {
  const given = headers.get("x-request-id");
  if (given !== null && REQUEST_ID.test(given)) return given;
  idCounter = (idCounter + 1) % 0x100000000;
  return `${ID_PREFIX}${idCounter.toString(16).padStart(8, "0")}`;
}

/**
 * The bucket a request is scoped to: its `bucket` field, or the `name` of a bucket request
 * (StorageService); undefined for org-wide requests that carry neither (ListBuckets).
 */
function bucketOf(req: unknown): string | undefined {
  const r = req as { bucket?: unknown; name?: unknown; $typeName?: string };
  if (typeof r.bucket === "string") return r.bucket;
  if (r.$typeName?.startsWith("dodil.k3.storage.v1.") && typeof r.name === "string") return r.name;
  return undefined;
}

/** Every handler of an entry, unary and streaming, with whether it streams (what each door walks). */
export function handlersOf(entry: ServiceEntry): Array<[DescMethod, UnaryHandler | StreamHandler, boolean]> {
  return [
    ...[...entry.methods].map(([m, h]): [DescMethod, UnaryHandler, boolean] => [m, h, false]),
    ...[...entry.streams].map(([m, h]): [DescMethod, StreamHandler, boolean] => [m, h, true]),
  ];
}

/** Wraps every method of `impl` so that thrown errors leave as ConnectErrors. */
export function registerService(
  service: DescService,
  impl: object,
  log: Logger,
  auth: Authenticator,
  metrics?: Metrics,
  limiter?: RateLimiter,
): ServiceEntry {
  const methods = new Map<DescMethod, UnaryHandler>();
  const streams = new Map<DescMethod, StreamHandler>();
  const wrapped: Record<string, UnaryHandler | StreamHandler> = {};
  /** Authenticates and authorizes a call; the caller lands on the context. */
  const admit = async (method: DescMethod, req: unknown, ctx: HandlerContext) => {
    const caller = await auth.authenticate(ctx.requestHeader);
    checkStringFields(method.input, req);
    const bucket = bucketOf(req);
    if (bucket === undefined) {
      // Org-wide calls (ListBuckets): the service shows only what the caller's grants reach.
      checkOrganization(caller, ctx.requestHeader);
    } else {
      checkBucket(bucket, "bucket" in (req as object) ? "bucket" : "name");
      authorize(caller, ctx.requestHeader, bucket, method);
    }
    if (limiter && requiredRole(method) !== "reader") {
      const wait = limiter.take(caller.tokenId || "anonymous");
      if (wait > 0) {
        ctx.responseHeader.set("retry-after", String(wait));
        throw new ResourceExhausted(`this token made too many write calls; retry in ${wait} s (K3_WRITE_RATE_LIMIT)`);
      }
    }
    ctx.values.set(callerKey, caller);
  };
  /** Turns a thrown error into the ConnectError the client sees (logged once). */
  const failure = (method: DescMethod, requestId: string, ctx: HandlerContext, err: unknown) => {
    const ce = toConnectError(err, log.child({ requestId, method: method.name }));
    if (ce.code === Code.Unauthenticated) ctx.responseHeader.set("www-authenticate", 'Bearer realm="k3-ingest"');
    return ce;
  };
  const begin = (ctx: HandlerContext) => {
    const requestId = requestIdOf(ctx.requestHeader);
    ctx.responseHeader.set("x-request-id", requestId);
    ctx.values.set(requestIdKey, requestId);
    return requestId;
  };
  for (const method of service.methods) {
    const kind = method.methodKind;
    if (kind !== "unary" && kind !== "server_streaming") throw new Error(`${method.name}: only unary and server-streaming methods are supported`);
    const fn = (impl as Record<string, ((req: unknown, ctx: HandlerContext) => unknown) | undefined>)[method.localName];
    if (!fn) throw new Error(`${service.typeName}.${method.name} has no implementation`);
    if (kind === "server_streaming") {
      const stream: StreamHandler = async function* (req, ctx) {
        const requestId = begin(ctx);
        let code = "ok";
        try {
          await admit(method, req, ctx);
          yield* fn.call(impl, req, ctx) as AsyncIterable<unknown>;
        } catch (err) {
          const ce = failure(method, requestId, ctx, err);
          code = codeName(ce.code);
          throw ce;
        } finally {
          log.debug("rpc stream ended", { requestId, method: method.name, door: ctx.protocolName, code });
          metrics?.rpcs.inc({ method: method.name, code, door: ctx.protocolName });
        }
      };
      streams.set(method, stream);
      wrapped[method.localName] = stream;
      continue;
    }
    const audited = requiredRole(method) !== "reader";
    const handler: UnaryHandler = async (req, ctx) => {
      const started = performance.now();
      let code = "ok";
      const requestId = begin(ctx);
      try {
        await admit(method, req, ctx);
        return await fn.call(impl, req, ctx);
      } catch (err) {
        const ce = failure(method, requestId, ctx, err);
        code = codeName(ce.code);
        throw ce;
      } finally {
        log.debug("rpc", { requestId, method: method.name, door: ctx.protocolName, code, ms: Math.round(performance.now() - started) });
        // What the web console changes is audited: who (token), what, where, and the outcome.
        if (audited && ctx.requestHeader.get("x-k3-client") === "console") {
          const caller = ctx.values.get(callerKey);
          log.info("console action", { requestId, method: method.name, org: caller?.org, bucket: bucketOf(req), token: caller?.tokenId, code });
        }
        if (metrics) {
          const door = ctx.protocolName;
          metrics.rpcs.inc({ method: method.name, code, door });
          metrics.rpcSeconds.observe({ method: method.name, door }, (performance.now() - started) / 1000);
        }
      }
    };
    methods.set(method, handler);
    wrapped[method.localName] = handler;
  }
  return { service, methods, streams, impl: wrapped };
}
