/**
 * Native gRPC through grpc-js, serving the same handlers as the other doors. The
 * ServiceDefinition is derived from the generated descriptors (path and binary codecs);
 * reflection is fed the serialized FileDescriptorProtos of the generated files and all
 * their imports, so grpcurl and `buf curl` work without a .proto file.
 */
import * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { create, toBinary, type DescFile, type DescMethod } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { createCallContext, type CallContext } from "./call-context";
import type { Logger } from "../log";
import type { Authenticator } from "./auth";
import { CALL_DONE, toConnectError } from "./errors";
import { decodeBinary } from "./json-errors";
import { addHealthService } from "./health";
import { Health } from "../../gen/grpc/health/v1/health_pb";
import { handlersOf, type ServiceEntry, type StreamHandler, type UnaryHandler } from "./services";
import { drainedOrGone } from "./drain";

/** Options of the gRPC door. */
export interface GrpcOptions {
  log: Logger;
  maxReceiveBytes: number;
  shutdownSignal?: AbortSignal;
  /** When set, reflection calls need a valid token too. */
  reflectionAuth?: Authenticator;
  /** Readiness for grpc.health.v1 (the same check as /readyz). */
  ready: () => Promise<boolean>;
}

/** A server interceptor that authenticates reflection calls (any valid token will do). */
function reflectionAuthInterceptor(auth: Authenticator): grpc.ServerInterceptor {
  return (descriptor, call) => {
    if (!descriptor.path.startsWith("/grpc.reflection.")) return new grpc.ServerInterceptingCall(call);
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next(
          new grpc.ServerListenerBuilder()
            .withOnReceiveMetadata((metadata, mdNext) => {
              auth.authenticate(metadataToHeaders(metadata)).then(
                () => mdNext(metadata),
                (err: unknown) =>
                  call.sendStatus({
                    code: grpc.status.UNAUTHENTICATED,
                    details: err instanceof Error ? err.message : "unauthenticated",
                    metadata: new grpc.Metadata(),
                  }),
              );
            })
            .build(),
        );
      },
    });
  };
}

function metadataToHeaders(md: grpc.Metadata): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(md.getMap())) {
    if (typeof v === "string") h.append(k, v);
  }
  return h;
}

/** Sends the handler's response headers (x-request-id, …) as the call's initial metadata. */
function sendHeaders(call: grpc.ServerUnaryCall<Uint8Array, Uint8Array> | grpc.ServerWritableStream<Uint8Array, Uint8Array>, headers: Headers | undefined): void {
  const md = new grpc.Metadata();
  headers?.forEach((v, k) => md.set(k, v));
  call.sendMetadata(md);
}

function collectFiles(file: DescFile, out: Map<string, DescFile>): void {
  if (out.has(file.name)) return;
  for (const dep of file.dependencies) collectFiles(dep, out);
  out.set(file.name, file);
}

/** A package definition in the shape @grpc/reflection reads: serialized file descriptors. */
function reflectionPackage(entries: readonly ServiceEntry[]): Record<string, { fileDescriptorProtos: Buffer[] }> {
  const services = [...entries.map((e) => e.service), Health];
  const files = new Map<string, DescFile>();
  for (const service of services) collectFiles(service.file, files);
  const protos = [...files.values()].map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  const pkg: Record<string, { fileDescriptorProtos: Buffer[] }> = {};
  for (const service of services) pkg[service.typeName] = { fileDescriptorProtos: protos };
  return pkg;
}

/** The decoded request and handler context of a call (the call's cancel and deadline abort it). */
function callContext(entry: ServiceEntry, method: DescMethod, call: grpc.ServerUnaryCall<Uint8Array, Uint8Array> | grpc.ServerWritableStream<Uint8Array, Uint8Array>, opts: GrpcOptions, streaming = false) {
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  const timeoutMs = Number.isFinite(deadlineMs) && deadlineMs > 0 ? Math.max(0, deadlineMs - Date.now()) : undefined;
  const auths = call.metadata.get("authorization").length;
  if (auths > 1) throw new ConnectError(`send exactly one authorization header; this call has ${auths}`, Code.InvalidArgument);
  const input = decodeBinary(method.input, call.request, "request");
  const ctx = createCallContext({
    service: entry.service,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: `/${entry.service.typeName}/${method.name}`,
    timeoutMs,
    requestHeader: metadataToHeaders(call.metadata),
    // Streams are ended by the job hub on drain; thousands of long-lived links on the one
    // shutdown signal would make every other call's link and unlink walk them all.
    shutdownSignal: streaming ? undefined : opts.shutdownSignal,
  });
  // grpc-js reports "cancelled" also after a call has ended; only a live call is aborted
  // (and reading ctx.signal to tell would make every call's AbortController).
  const cancelled = () => ctx.abort(new ConnectError("client cancelled the call", Code.Canceled));
  if (call.cancelled) cancelled();
  else call.on("cancelled", () => ctx.ended || cancelled());
  return { input, ctx };
}

/** A server-streaming method: each message written as it comes, the stream's error as the call's status. */
function streamHandler(entry: ServiceEntry, method: DescMethod, handler: StreamHandler, opts: GrpcOptions) {
  return (call: grpc.ServerWritableStream<Uint8Array, Uint8Array>) => {
    let ctx: CallContext | undefined;
    let headersSent = false;
    const sendHeadersOnce = () => {
      if (headersSent || !ctx) return;
      headersSent = true;
      sendHeaders(call, ctx.responseHeaderIfAny());
    };
    const run = async () => {
      const made = callContext(entry, method, call, opts, true);
      ctx = made.ctx;
      for await (const out of handler(made.input, ctx)) {
        sendHeadersOnce();
        if (call.cancelled) return;
        const bytes = toBinary(method.output, create(method.output, out as never));
        // Backpressure: a slow reader pauses the stream here (and its events queue in the hub, bounded).
        if (!call.write(bytes)) await drainedOrGone(call, ["close", "cancelled"]);
      }
    };
    run().then(
      () => {
        sendHeadersOnce();
        call.end();
      },
      (err: unknown) => {
        sendHeadersOnce();
        const ce = toConnectError(err, opts.log);
        call.emit("error", { code: ce.code as number as grpc.status, details: ce.rawMessage });
      },
    ).finally(() => ctx?.abort(CALL_DONE));
  };
}

function unaryHandler(entry: ServiceEntry, method: DescMethod, handler: UnaryHandler, opts: GrpcOptions) {
  return (call: grpc.ServerUnaryCall<Uint8Array, Uint8Array>, callback: grpc.sendUnaryData<Uint8Array>) => {
    const run = async () => {
      const { input, ctx } = callContext(entry, method, call, opts);
      try {
        const out = await handler(input, ctx);
        sendHeaders(call, ctx.responseHeaderIfAny());
        return toBinary(method.output, create(method.output, out as never));
      } catch (err) {
        sendHeaders(call, ctx.responseHeaderIfAny());
        throw err;
      } finally {
        // Unlinks the context from the shutdown signal and clears its deadline timer.
        ctx.abort(CALL_DONE);
      }
    };
    run().then(
      (bytes) => callback(null, bytes),
      (err: unknown) => {
        const ce = toConnectError(err, opts.log);
        // Connect's Code numbers are gRPC status codes.
        callback({ code: ce.code as number as grpc.status, details: ce.rawMessage });
      },
    );
  };
}

/** A grpc-js server with every registered service and reflection (v1 and v1alpha). */
export function createGrpcServer(entries: readonly ServiceEntry[], opts: GrpcOptions): grpc.Server {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": opts.maxReceiveBytes,
    interceptors: opts.reflectionAuth ? [reflectionAuthInterceptor(opts.reflectionAuth)] : [],
  });
  for (const entry of entries) {
    const definition: Record<string, grpc.MethodDefinition<Uint8Array, Uint8Array>> = {};
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const [method, handler, streaming] of handlersOf(entry)) {
      definition[method.name] = {
        path: `/${entry.service.typeName}/${method.name}`,
        requestStream: false,
        responseStream: streaming,
        // Decoding happens in the handler, so a malformed message is INVALID_ARGUMENT
        // rather than grpc-js's INTERNAL deserialization error.
        requestSerialize: (b: Uint8Array) => Buffer.from(b),
        requestDeserialize: (b: Buffer): Uint8Array => b,
        responseSerialize: (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
        responseDeserialize: (b: Buffer) => b,
        originalName: method.localName,
      };
      handlers[method.name] = streaming
        ? streamHandler(entry, method, handler as StreamHandler, opts)
        : unaryHandler(entry, method, handler as UnaryHandler, opts);
    }
    server.addService(definition as grpc.ServiceDefinition, handlers);
  }
  addHealthService(server, opts.ready, entries.map((e) => e.service.typeName));
  new ReflectionService(reflectionPackage(entries) as never).addToServer(server);
  return server;
}

/** Binds the server to host:port and resolves with the bound port. */
export function bindGrpc(server: grpc.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    );
  });
}
