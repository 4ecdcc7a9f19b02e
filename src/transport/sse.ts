/**
 * Server-Sent Events for the server-streaming methods on REST (WatchIngestJobs at
 * `GET /{bucket}/ingest/jobs:watch`). An error before the first message is an ordinary
 * JSON error with its HTTP status; once the stream is open, each message is an event —
 * `id:` its event_id (what EventSource sends back as Last-Event-ID), `event:` its type
 * (`snapshot`, `synced`, `change`), `data:` the message's canonical JSON — and an error
 * ends it with an `error` event carrying the usual error body. A comment every 15 s keeps
 * proxies from closing an idle stream.
 */
import type { ServerResponse } from "node:http";
import { create, toJson, type DescMethod, type JsonObject } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import type { Logger } from "../log";
import { drainedOrGone } from "./drain";
import { errorBody, toConnectError } from "./errors";

const KEEPALIVE_MS = 15_000;

/** Writes `chunk`, waiting for the socket to drain (or close) when its buffer is full. */
async function write(res: ServerResponse, chunk: string): Promise<void> {
  if (!res.write(chunk)) await drainedOrGone(res);
}

/** The SSE event name of a message: its `type` enum without the enum's prefix, lowercased. */
function eventName(json: JsonObject): string {
  const t = json.type;
  return typeof t === "string" ? t.replace(/^[A-Z_]*?_TYPE_/, "").toLowerCase() : "message";
}

/** Streams `messages` as Server-Sent Events (throws, for a JSON error reply, if the first message fails). */
export async function serveEventStream(method: DescMethod, messages: AsyncIterable<unknown>, ctx: HandlerContext, res: ServerResponse, log: Logger): Promise<void> {
  const it = messages[Symbol.asyncIterator]();
  let next = await it.next();
  const headers: Record<string, string> = {};
  ctx.responseHeader.forEach((v, k) => (headers[k] = v));
  res.writeHead(200, { ...headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" });
  const keepalive = setInterval(() => res.write(": keepalive\n\n"), KEEPALIVE_MS);
  try {
    while (!next.done && !res.destroyed) {
      const json = toJson(method.output, create(method.output, next.value as never), { alwaysEmitImplicit: true }) as JsonObject;
      const id = typeof json.eventId === "string" && json.eventId !== "" ? `id: ${json.eventId}\n` : "";
      await write(res, `${id}event: ${eventName(json)}\ndata: ${JSON.stringify(json)}\n\n`);
      next = await it.next();
    }
  } catch (err) {
    if (!res.destroyed) res.write(`event: error\ndata: ${JSON.stringify(errorBody(toConnectError(err, log)))}\n\n`);
  } finally {
    clearInterval(keepalive);
    await it.return?.(undefined);
    res.end();
  }
}
