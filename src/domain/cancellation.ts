/**
 * The abort signal of the call being served, available anywhere below the transport
 * without threading it through every signature: the transport wrapper runs each handler
 * inside withCallSignal(), and the storage layer reads callSignal() to cancel its queries
 * when the client's deadline passes or it disconnects.
 */
import { AsyncLocalStorage } from "node:async_hooks";

const storage = new AsyncLocalStorage<AbortSignal>();

/** Runs `fn` with `signal` as the current call's signal. */
export function withCallSignal<T>(signal: AbortSignal, fn: () => T): T {
  return storage.run(signal, fn);
}

/** The current call's signal, or undefined outside a call (workers, maintenance). */
export function callSignal(): AbortSignal | undefined {
  return storage.getStore();
}

/** Runs `fn` outside any call: for work shared by several calls (a batched insert). */
export function withoutCallSignal<T>(fn: () => T): T {
  return storage.exit(fn);
}
