/** The one place that turns PostgreSQL and driver errors into domain errors. */
import { AlreadyExists, DomainError, FailedPrecondition, Unavailable } from "../../domain/errors";

const UNIQUE_MESSAGES: Readonly<Record<string, string>> = {
  pipelines_bucket_name_key: "a pipeline with this name already exists in the bucket",
  pipelines_pkey: "a pipeline with this pipeline_id already exists",
  rules_pkey: "a rule with this rule_id already exists",
  jobs_pkey: "a job with this job_id already exists",
};

const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH"]);

const CONNECTION_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300", "3D000"]);

interface PgLikeError {
  code?: unknown;
  constraint?: string;
  message?: string;
}

/** True for errors that mean "the database cannot be reached right now". */
export function isConnectionError(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as PgLikeError;
  // Only driver and socket errors carry string codes (a ConnectError has a number).
  const code = typeof e.code === "string" ? e.code : "";
  if (NETWORK_CODES.has(code)) return true;
  // 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now;
  // 53300: too many connections; 3D000 and 28xxx: the database or the login is gone.
  if (code.startsWith("08") || code.startsWith("28") || CONNECTION_SQLSTATES.has(code)) return true;
  const msg = e.message ?? "";
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(msg);
}

/** Maps a driver error to a domain error; anything unrecognised is returned unchanged. */
export function mapPgError(err: unknown): unknown {
  if (err instanceof DomainError) return err;
  if (isConnectionError(err)) {
    return new Unavailable("the database is unavailable; retry later", { cause: err });
  }
  if (typeof err !== "object" || err === null) return err;
  const e = err as PgLikeError;
  switch (e.code) {
    case "23505":
      return new AlreadyExists(UNIQUE_MESSAGES[e.constraint ?? ""] ?? `duplicate value violates ${e.constraint ?? "a unique constraint"}`);
    case "23514":
      return new FailedPrecondition(`the change violates ${e.constraint ?? "a check constraint"}`);
    default:
      return err;
  }
}
