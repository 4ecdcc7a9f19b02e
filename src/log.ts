/**
 * Structured JSON logs through pino: one line per event on stderr, with an ISO time and a
 * level label. The small Logger interface keeps the rest of the code independent of pino
 * (and lets tests capture lines through `write`).
 */
import pino from "pino";

/** Severity levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

/** The logging surface every module uses. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger whose lines all carry `fields` (a request id, a job id). */
  child(fields: Record<string, unknown>): Logger;
}

function wrap(p: pino.Logger): Logger {
  return {
    debug: (msg, fields) => p.debug(fields ?? {}, msg),
    info: (msg, fields) => p.info(fields ?? {}, msg),
    warn: (msg, fields) => p.warn(fields ?? {}, msg),
    error: (msg, fields) => p.error(fields ?? {}, msg),
    child: (fields) => wrap(p.child(fields)),
  };
}

/** Creates a logger that writes lines at or above `level`, to stderr or through `write`. */
export function createLogger(level: LogLevel, write?: (line: string) => void): Logger {
  const destination = write ? { write: (s: string) => write(s.replace(/\n$/, "")) } : pino.destination({ dest: 2, sync: true });
  return wrap(
    pino(
      {
        level,
        base: undefined,
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
        // Errors passed as fields keep their message and stack.
        serializers: { err: pino.stdSerializers.err },
      },
      destination,
    ),
  );
}
