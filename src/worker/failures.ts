/**
 * How a pipeline says why it stopped. A TransientError (network, timeout, 5xx, 429) is
 * retried with backoff while attempts remain; a PermanentError (unsupported type, corrupt
 * file, bad option value) fails the job at once, as does PostgreSQL's refusal of a value
 * (a data exception, SQLSTATE class 22). Anything else thrown is treated as transient: an
 * unexpected error may be a passing fault, and the attempt limit bounds it.
 */

/** A failure that another attempt may not repeat. */
export class TransientError extends Error {
  constructor(
    readonly stage: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "TransientError";
  }
}

/** A failure that every attempt would repeat. */
export class PermanentError extends Error {
  constructor(
    readonly stage: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "PermanentError";
  }
}

/** Why a worker aborted a running job (the AbortSignal's reason). */
export class AbortReason extends Error {
  constructor(readonly kind: "cancel" | "shutdown" | "lease_lost") {
    super(kind === "cancel" ? "the job was cancelled" : kind === "shutdown" ? "the worker is shutting down" : "the job's lease was lost");
    this.name = "AbortReason";
  }
}

/** The one-line reason and the stage/cause details recorded on a failed job. */
export function describeFailure(err: unknown): { permanent: boolean; error: string; errorDetails: string } {
  const oneLine = (s: string) => s.replace(/\s+/g, " ").trim().slice(0, 500);
  if (err instanceof PermanentError || err instanceof TransientError) {
    const cause = err.cause instanceof Error ? `; cause: ${oneLine(err.cause.message)}` : "";
    return {
      permanent: err instanceof PermanentError,
      error: oneLine(err.message),
      errorDetails: `stage: ${err.stage}${cause}`,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  const sqlState = (err as { code?: unknown } | undefined)?.code;
  if (typeof sqlState === "string" && /^22[0-9A-Z]{3}$/.test(sqlState)) {
    // A data exception: PostgreSQL refused a value of the output, and would refuse it again.
    return { permanent: true, error: oneLine(`the database refused the job's output: ${message}`), errorDetails: `stage: store; SQLSTATE ${sqlState}` };
  }
  return { permanent: false, error: oneLine(message) || "unexpected error", errorDetails: "stage: unknown; unexpected error" };
}
