/**
 * Domain errors. Each carries a message that names the offending field and value;
 * transport/errors.ts is the only place that maps them to wire codes.
 */

/** The kinds of failure the domain can report, one per wire status it maps to. */
export type ErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "permission_denied"
  | "unauthenticated"
  | "resource_exhausted"
  | "unavailable"
  | "deadline_exceeded"
  | "cancelled"
  | "unimplemented"
  | "out_of_range";

/** Base class of every error the domain raises on purpose. */
export class DomainError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request is malformed: a field has a value the API does not accept. */
export class InvalidArgument extends DomainError {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super("invalid_argument", message);
  }
}

/** The named entity does not exist (or is not visible to the caller). */
export class NotFound extends DomainError {
  constructor(message: string) {
    super("not_found", message);
  }
}

/** An entity with the same unique key already exists. */
export class AlreadyExists extends DomainError {
  constructor(message: string) {
    super("already_exists", message);
  }
}

/** The request is well formed but the system is not in a state that allows it. */
export class FailedPrecondition extends DomainError {
  constructor(message: string) {
    super("failed_precondition", message);
  }
}

/** The request names something this server does not implement (a documented provider, say). */
export class Unimplemented extends DomainError {
  constructor(message: string) {
    super("unimplemented", message);
  }
}

/** A dependency (the database) cannot be reached; the call may be retried. */
export class Unavailable extends DomainError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("unavailable", message, options);
  }
}

/** The caller could not be identified (missing, malformed, unknown, expired or revoked token). */
export class Unauthenticated extends DomainError {
  constructor(message: string) {
    super("unauthenticated", message);
  }
}

/** The caller is known but not allowed to do this. */
export class PermissionDenied extends DomainError {
  constructor(message: string) {
    super("permission_denied", message);
  }
}

/** A position (a resume point) outside what the server still holds. */
export class OutOfRange extends DomainError {
  constructor(message: string) {
    super("out_of_range", message);
  }
}

/** The caller used up a quota (a rate limit); it may retry later. */
export class ResourceExhausted extends DomainError {
  constructor(message: string) {
    super("resource_exhausted", message);
  }
}

/** Throws InvalidArgument naming the field unless the condition holds. */
export function check(cond: boolean, field: string, message: string): asserts cond {
  if (!cond) throw new InvalidArgument(message, field);
}
