/**
 * Structured JSON logs through pino: one line per event on stderr, with an ISO time and a
 * level label. The small Logger interface keeps the rest of the code independent of pino
 * (and lets tests capture lines through `write`). The lines of one turn of the event loop
 * leave in one write (StderrLines).
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
  /** The last lines written, when this logger keeps them (K3_LOG_LINES). */
  readonly recent?: LogRing;
}

/** The last `capacity` lines a process wrote, in memory (ListIngestJobLogs reads them). */
export class LogRing {
  private readonly lines: string[] = [];
  private next = 0;

  constructor(readonly capacity: number) {}

  push(line: string): void {
    this.lines[this.next] = line;
    this.next = (this.next + 1) % this.capacity;
  }

  /** The kept lines that `keep` accepts, oldest first, without their line ends. */
  filter(keep: (line: string) => boolean): string[] {
    const out: string[] = [];
    // Oldest first: from `next` on once the ring has wrapped, read in place.
    const start = this.lines.length < this.capacity ? 0 : this.next;
    for (let i = 0; i < this.lines.length; i++) {
      const line = this.lines[(start + i) % this.lines.length];
      if (keep(line)) out.push(line.replace(/\n$/, ""));
    }
    return out;
  }
}

/**
 * Stderr, written once per turn of the event loop: the lines logged in one turn (a batch
 * of jobs ending together logs a line each) leave in one system call instead of one each —
 * at the default level a worker draining short jobs ran at 0.63× its rate with a write per
 * line. A line waits at most until the current turn ends, and lines still waiting when the
 * process exits (process.exit, a fatal error) are written then; only kill -9 or a crash of
 * the runtime itself can take the last turn's lines. One for the process, so lines of all
 * loggers keep their order.
 */
class StderrLines {
  private static shared: StderrLines | undefined;
  private pending: string[] = [];
  private scheduled = false;
  private readonly out = pino.destination({ dest: 2, sync: true });

  static get(): StderrLines {
    if (!StderrLines.shared) {
      const sink = new StderrLines();
      // A line that cannot be written (stderr on a full disk: ENOSPC; pino already drops
      // EPIPE) is dropped: logging never takes the process down.
      sink.out.on("error", () => undefined);
      process.on("exit", () => sink.flush());
      StderrLines.shared = sink;
    }
    return StderrLines.shared;
  }

  write(line: string): void {
    this.pending.push(line);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Writes what is waiting now. */
  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const text = this.pending.length === 1 ? this.pending[0] : this.pending.join("");
    this.pending = [];
    this.out.write(text);
  }
}

/** Writes the log lines still waiting for the end of this turn (before writing to stderr directly). */
export function flushLogs(): void {
  StderrLines.get().flush();
}

function wrap(p: pino.Logger, recent: LogRing | undefined): Logger {
  return {
    debug: (msg, fields) => p.debug(fields ?? {}, msg),
    info: (msg, fields) => p.info(fields ?? {}, msg),
    warn: (msg, fields) => p.warn(fields ?? {}, msg),
    error: (msg, fields) => p.error(fields ?? {}, msg),
    child: (fields) => wrap(p.child(fields), recent),
    recent,
  };
}

/**
 * Creates a logger that writes lines at or above `level`, to stderr or through `write`,
 * keeping the last `keep` of them in memory when `keep` > 0.
 */
export function createLogger(level: LogLevel, write?: (line: string) => void, keep = 0): Logger {
  const out = write ? { write: (s: string) => write(s.replace(/\n$/, "")) } : StderrLines.get();
  const recent = keep > 0 ? new LogRing(keep) : undefined;
  const destination = recent
    ? {
        write: (s: string) => {
          recent.push(s);
          return out.write(s);
        },
      }
    : out;
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
    recent,
  );
}
