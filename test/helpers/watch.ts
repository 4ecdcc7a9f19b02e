/**
 * WatchIngestJobs through each door with its real client: grpc-js server streaming,
 * the Connect and gRPC-Web clients' async iterators, and Server-Sent Events over fetch on
 * REST. Messages arrive as canonical JSON; a test waits for the one it expects.
 */
import * as grpc from "@grpc/grpc-js";
import { fromBinary, fromJson, toBinary, toJson, type JsonObject } from "@bufbuild/protobuf";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { IngestService, WatchIngestJobsRequestSchema, WatchIngestJobsResponseSchema } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import type { Door } from "./clients";
import type { J } from "./http";

/** A running watch: what it received, how it ended. */
export interface Watch {
  messages: J[];
  /** Set when the stream ended: "ok" or the error's code. */
  ended?: { code: string; message: string; httpStatus?: number };
  /** Resolves with the first message (from the start) that `pred` accepts. */
  until(pred: (m: J) => boolean, timeoutMs?: number): Promise<J>;
  /** Resolves when the stream has ended. */
  done(timeoutMs?: number): Promise<Watch["ended"]>;
  close(): void;
}

const codeName = (c: number) =>
  (Object.entries(grpc.status).find(([, v]) => v === c)?.[0] ?? String(c)).toLowerCase().replace("canceled", "cancelled");

/** Parses one SSE event block into its fields. */
export function parseSse(block: string): { id?: string; event?: string; data: string } {
  const out: { id?: string; event?: string; data: string } = { data: "" };
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "id") out.id = value;
    else if (field === "event") out.event = value;
    else if (field === "data") out.data += (out.data ? "\n" : "") + value;
  }
  return out;
}

export function startWatch(
  door: Door,
  target: { httpUrl: string; grpcAddress: string },
  request: JsonObject,
  opts: { headers?: Record<string, string>; lastEventId?: string } = {},
): Watch {
  const messages: J[] = [];
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((l) => l());
  const w: Watch = {
    messages,
    until(pred, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = messages.find(pred);
          if (hit) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(hit);
          } else if (w.ended) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(new Error(`the ${door} watch ended (${JSON.stringify(w.ended)}) before the message came; got ${JSON.stringify(messages.map((m) => [m.type, m.job?.jobId, m.job?.status]))}`));
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no matching message on the ${door} watch within ${timeoutMs} ms; got ${JSON.stringify(messages.map((m) => [m.type, m.job?.jobId, m.job?.status]))}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    done(timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!w.ended) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve(w.ended);
        };
        const timer = setTimeout(() => reject(new Error(`the ${door} watch did not end within ${timeoutMs} ms`)), timeoutMs);
        listeners.add(check);
        check();
      });
    },
    close: () => undefined,
  };
  const push = (m: J) => {
    messages.push(m);
    notify();
  };
  const end = (e: NonNullable<Watch["ended"]>) => {
    w.ended ??= e;
    notify();
  };
  const headers = opts.headers ?? {};
  if (door === "grpc") {
    const client = new grpc.Client(target.grpcAddress, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(headers)) md.set(k, v);
    const call = client.makeServerStreamRequest<Uint8Array, Buffer>(
      "/dodil.k3.ingest.v1.IngestService/WatchIngestJobs",
      (m) => Buffer.from(m),
      (b) => b,
      toBinary(WatchIngestJobsRequestSchema, fromJson(WatchIngestJobsRequestSchema, request)),
      md,
    );
    call.on("data", (b: Buffer) => push(toJson(WatchIngestJobsResponseSchema, fromBinary(WatchIngestJobsResponseSchema, b), { alwaysEmitImplicit: true }) as J));
    call.on("error", (err: grpc.ServiceError) => end({ code: codeName(err.code), message: err.details }));
    call.on("end", () => end({ code: "ok", message: "" }));
    w.close = () => {
      call.cancel();
      client.close();
    };
    return w;
  }
  const abort = new AbortController();
  w.close = () => abort.abort();
  if (door === "connect" || door === "grpcweb") {
    const transport = (door === "connect" ? createConnectTransport : createGrpcWebTransport)({ baseUrl: target.httpUrl, httpVersion: "1.1" });
    const client = createClient(IngestService, transport);
    void (async () => {
      try {
        for await (const m of client.watchIngestJobs(fromJson(WatchIngestJobsRequestSchema, request), { headers, signal: abort.signal })) {
          push(toJson(WatchIngestJobsResponseSchema, m, { alwaysEmitImplicit: true }) as J);
        }
        end({ code: "ok", message: "" });
      } catch (err) {
        const ce = ConnectError.from(err);
        end({ code: codeName(ce.code), message: ce.rawMessage });
      }
    })();
    return w;
  }
  // REST: Server-Sent Events.
  const { bucket, ...query } = request;
  const qs = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)])).toString();
  void (async () => {
    try {
      const res = await fetch(`${target.httpUrl}/${bucket}/ingest/jobs:watch${qs ? `?${qs}` : ""}`, {
        headers: { accept: "text/event-stream", ...headers, ...(opts.lastEventId ? { "last-event-id": opts.lastEventId } : {}) },
        signal: abort.signal,
      });
      if (res.status !== 200) {
        const body = (await res.json()) as J;
        end({ code: body.code, message: body.message, httpStatus: res.status });
        return;
      }
      if (!res.headers.get("content-type")?.startsWith("text/event-stream")) throw new Error(`content-type ${res.headers.get("content-type")}`);
      const decoder = new TextDecoder();
      let buf = "";
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
          const ev = parseSse(buf.slice(0, i));
          buf = buf.slice(i + 2);
          if (!ev.data) continue;
          const data = JSON.parse(ev.data) as J;
          if (ev.event === "error") {
            end({ code: data.code, message: data.message });
            return;
          }
          push({ ...data, sseId: ev.id, sseEvent: ev.event });
        }
      }
      end({ code: "ok", message: "" });
    } catch (err) {
      end({ code: abort.signal.aborted ? "cancelled" : "unknown", message: (err as Error).message });
    }
  })();
  return w;
}
