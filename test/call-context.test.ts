/**
 * The handler context of the gRPC and REST doors (src/transport/call-context.ts): its
 * signal fires on the deadline, on shutdown and when the call ends, once, with the reason
 * a handler can report; and a call that ends leaves nothing on the shared shutdown signal.
 */
import { getEventListeners, setMaxListeners } from "node:events";
import { Code, ConnectError } from "@connectrpc/connect";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { createCallContext } from "../src/transport/call-context";

const init = (over: { timeoutMs?: number; shutdownSignal?: AbortSignal } = {}) => ({
  service: IngestService,
  method: IngestService.method.triggerIngest,
  protocolName: "grpc",
  requestMethod: "POST",
  url: "/dodil.k3.ingest.v1.IngestService/TriggerIngest",
  requestHeader: new Headers({ authorization: "Bearer x" }),
  ...over,
});

test("the deadline aborts the signal with DEADLINE_EXCEEDED and timeoutMs counts down to it", async () => {
  const ctx = createCallContext(init({ timeoutMs: 50 }));
  const left = ctx.timeoutMs()!;
  expect(left).toBeGreaterThan(0);
  expect(left).toBeLessThanOrEqual(50);
  await new Promise((r) => setTimeout(r, 80));
  expect(ctx.signal.aborted).toBe(true);
  expect(ctx.signal.reason).toBeInstanceOf(ConnectError);
  expect((ctx.signal.reason as ConnectError).code).toBe(Code.DeadlineExceeded);
  expect(createCallContext(init()).timeoutMs()).toBeUndefined();
});

test("shutdown aborts running calls with its reason; ended calls leave no listener on it", () => {
  const shutdown = new AbortController();
  setMaxListeners(0, shutdown.signal); // as the app does (app.ts): one listener per call in flight is no leak
  const ended = Array.from({ length: 100 }, () => createCallContext(init({ shutdownSignal: shutdown.signal })));
  const running = createCallContext(init({ shutdownSignal: shutdown.signal }));
  expect(getEventListeners(shutdown.signal, "abort")).toHaveLength(101);
  for (const ctx of ended) ctx.abort("done");
  expect(getEventListeners(shutdown.signal, "abort")).toHaveLength(1);
  const reason = new ConnectError("draining", Code.Unavailable);
  shutdown.abort(reason);
  expect(running.signal.reason).toBe(reason);
  expect(getEventListeners(shutdown.signal, "abort")).toHaveLength(0);
  // A context made after shutdown starts aborted.
  expect(createCallContext(init({ shutdownSignal: shutdown.signal })).signal.reason).toBe(reason);
});

test("the first abort wins and clears the deadline; response headers exist only once set", async () => {
  const ctx = createCallContext(init({ timeoutMs: 30 }));
  expect(ctx.responseHeaderIfAny()).toBeUndefined();
  ctx.responseHeader.set("x-request-id", "r1");
  expect(ctx.responseHeaderIfAny()?.get("x-request-id")).toBe("r1");
  ctx.abort("client left");
  ctx.abort("call done");
  await new Promise((r) => setTimeout(r, 50));
  expect(ctx.signal.reason).toBe("client left");
  expect(ctx.requestHeader.get("authorization")).toBe("Bearer x");
});

test("a signal first read after the call was aborted is already aborted, with the first reason", async () => {
  // The controller is made on first read; the abort before it must still be seen.
  const left = createCallContext(init());
  left.abort("client left");
  left.abort("call done");
  expect(left.signal.aborted).toBe(true);
  expect(left.signal.reason).toBe("client left");
  const expired = createCallContext(init({ timeoutMs: 10 }));
  await new Promise((r) => setTimeout(r, 40));
  expect((expired.signal.reason as ConnectError).code).toBe(Code.DeadlineExceeded);
  // Read before: the same signal object fires later, once.
  const live = createCallContext(init());
  const signal = live.signal;
  let fired = 0;
  signal.addEventListener("abort", () => fired++);
  expect(live.signal).toBe(signal);
  live.abort("done");
  live.abort("again");
  expect(fired).toBe(1);
  expect(signal.reason).toBe("done");
});
