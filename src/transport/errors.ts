/**
 * The only place that maps errors to wire codes: domain errors to Connect/gRPC codes, and
 * codes to HTTP statuses and JSON bodies. Unknown errors become INTERNAL with a generic
 * message; their cause goes to the log, never to the client.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainError, type ErrorKind } from "../domain/errors";
import type { Logger } from "../log";

const CODE_OF: Readonly<Record<ErrorKind, Code>> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  unimplemented: Code.Unimplemented,
  permission_denied: Code.PermissionDenied,
  unauthenticated: Code.Unauthenticated,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  cancelled: Code.Canceled,
  out_of_range: Code.OutOfRange,
};

const HTTP_STATUS: Readonly<Record<Code, number>> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 400,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

/**
 * The reason given when a finished call's context is released: aborting with a reason
 * avoids building a DOMException per call.
 */
export const CALL_DONE = new Error("call finished");

/** Connect's snake_case name of a code (`invalid_argument`), as used in JSON error bodies. */
export function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase().replace("canceled", "cancelled");
}

/** Turns any thrown value into the ConnectError the client will see. */
export function toConnectError(err: unknown, log: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof DomainError) return new ConnectError(err.message, CODE_OF[err.kind]);
  log.error("unexpected error", { err });
  return new ConnectError("internal error", Code.Internal);
}

/** The HTTP status for a code. */
export function httpStatusOf(code: Code): number {
  return HTTP_STATUS[code] ?? 500;
}

/** The JSON error body of the REST door: `{code, message, details}`. */
export function errorBody(err: ConnectError): { code: string; message: string; details: unknown[] } {
  return { code: codeName(err.code), message: err.rawMessage, details: [] };
}
