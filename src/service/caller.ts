/** The authenticated caller travels from the transport to the services on the handler context. */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Caller } from "../domain/auth";
import type { Scope } from "../domain/job";

/** Set by the transport wrapper after authentication, read by the services. */
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

/**
 * The organization's bucket a request works in. Its signal is the call's, read only when
 * used: on our own doors reading it is what makes the call's AbortController.
 */
export function scopeOf(ctx: HandlerContext, bucket: string): Scope {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new Error("request reached a service without an authenticated caller");
  return {
    org: caller.org,
    bucket,
    get signal() {
      return ctx.signal;
    },
  };
}

/** The request id of the call (x-request-id, given or generated), set by the transport wrapper. */
export const requestIdKey = createContextKey<string>("", { description: "request id" });
