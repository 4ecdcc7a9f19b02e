/**
 * The sandbox: a short-lived child process that runs one CPU-heavy task (tasks.ts) on an
 * object, reading it from the already opened and checked descriptor it inherits as fd 3
 * (the server never holds the bytes of a large object). At most K3_SANDBOX_CONCURRENCY
 * run at once per process. Its committed private memory is capped with `ulimit -d` (RLIMIT_DATA,
 * which counts writable mappings: unlike a worker thread's heap limits it also bounds
 * array buffers — what a PDF flate bomb inflates into — and, unlike `ulimit -v`, it does
 * not count the address space V8 and WebAssembly merely reserve) and its heap with
 * --max-old-space-size; it is killed on timeout and on cancel. A crash,
 * an out-of-memory or a timeout is the job's permanent failure, never the server's.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { PermanentError, TransientError } from "./failures";
import type { ChunkPlace, RowsTaskParams, TextTaskParams, TextTaskResult } from "./tasks";

/** Limits of one sandboxed run. */
export interface SandboxLimits {
  /** Memory the task may use, in MiB (the data cap adds room for the runtime itself). */
  memoryMb: number;
  timeoutMs: number;
  /** Sandboxes one process runs at once; more wait their turn. */
  concurrency: number;
}

/** The object a sandbox reads: an open, already checked descriptor, handed over as fd 3. */
export interface SandboxInput {
  fd: number;
  size: number;
}

// Sandboxes waiting for a place, per concurrency setting (one process has one setting).
let running = 0;
const waiting: Array<() => void> = [];

async function acquire(limit: number, signal: AbortSignal): Promise<() => void> {
  while (running >= limit) {
    signal.throwIfAborted();
    await new Promise<void>((resolve) => {
      const wake = () => {
        signal.removeEventListener("abort", wake);
        resolve();
      };
      waiting.push(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }
  signal.throwIfAborted();
  running++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    running--;
    waiting.shift()?.();
  };
}

/** Writable memory node itself needs before the task allocates anything (measured: ~100 MiB). */
const RUNTIME_RESERVE_MB = 128;
/** Largest answer read back from a sandbox. */
const MAX_REPLY_BYTES = 1024 * 1024 * 1024;

function entry(): { script: string; execArgv: string[] } {
  // Running from the TypeScript sources (tests): load them through the same swc hook.
  if (__filename.endsWith(".ts")) {
    return { script: join(__dirname, "sandbox-main.ts"), execArgv: ["-r", join(__dirname, "../../test/helpers/ts-register.cjs")] };
  }
  return { script: join(__dirname, "sandbox-main.js"), execArgv: [] };
}

interface Reply {
  header: { ok: boolean; permanent?: boolean; stage?: string; outOfMemory?: boolean; message?: string; pieces?: string[]; places?: ChunkPlace[]; rowCount?: number; vectorCount?: number };
  tail: Buffer;
}

async function run(task: string, params: object, input: SandboxInput, key: string, signal: AbortSignal, limits: SandboxLimits): Promise<Reply> {
  const release = await acquire(limits.concurrency, signal);
  try {
    return await runOne(task, params, input, key, signal, limits);
  } finally {
    release();
  }
}

function runOne(task: string, params: object, input: SandboxInput, key: string, signal: AbortSignal, limits: SandboxLimits): Promise<Reply> {
  signal.throwIfAborted();
  const { script, execArgv } = entry();
  const dataLimitKb = (limits.memoryMb + RUNTIME_RESERVE_MB) * 1024;
  const child = spawn(
    "/bin/sh",
    ["-c", 'ulimit -d "$K3_SANDBOX_DATA_KB" && exec "$@"', "sandbox", process.execPath, ...execArgv, `--max-old-space-size=${limits.memoryMb}`, script],
    { stdio: ["pipe", "pipe", "pipe", input.fd], env: { ...process.env, K3_SANDBOX_DATA_KB: String(dataLimitKb) } },
  );
  return new Promise<Reply>((resolve, reject) => {
    const out: Buffer[] = [];
    let outBytes = 0;
    let stderr = "";
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      child.kill("SIGKILL");
      fn();
    };
    const onAbort = () => finish(() => reject(signal.reason));
    signal.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(
      () => finish(() => reject(new PermanentError("extract", `"${key}" took longer than ${limits.timeoutMs} ms to process (K3_PARSE_TIMEOUT_MS)`))),
      limits.timeoutMs,
    );
    child.stdout!.on("data", (b: Buffer) => {
      outBytes += b.length;
      if (outBytes > MAX_REPLY_BYTES) finish(() => reject(new PermanentError("extract", `"${key}" produced more output than can be kept`)));
      else out.push(b);
    });
    child.stderr!.on("data", (b: Buffer) => {
      stderr = (stderr + b.toString("utf8")).slice(-4096);
    });
    child.stdin!.on("error", () => undefined); // a child that died early closes its stdin
    child.on("error", (err) => finish(() => reject(new TransientError("extract", "the sandbox process could not start", { cause: err }))));
    child.on("close", (code, sig) =>
      finish(() => {
        const all = Buffer.concat(out);
        if (all.length >= 4) {
          const len = all.readUInt32BE(0);
          if (all.length >= 4 + len) {
            resolve({ header: JSON.parse(all.subarray(4, 4 + len).toString("utf8")) as Reply["header"], tail: all.subarray(4 + len) });
            return;
          }
        }
        reject(
          new PermanentError(
            "extract",
            `processing "${key}" needed more than ${limits.memoryMb} MiB of memory or crashed (${sig ?? `exit ${code}`}); the limit is K3_SANDBOX_MEMORY_MB; ${lastLine(stderr)}`,
          ),
        );
      }),
    );
    child.stdin!.end(JSON.stringify({ task, params, size: input.size }));
  });
}

function failure(r: Reply, key: string, limits: SandboxLimits): Error {
  const h = r.header;
  if (h.outOfMemory) {
    return new PermanentError("extract", `processing "${key}" needed more than ${limits.memoryMb} MiB of memory (K3_SANDBOX_MEMORY_MB): ${h.message}`);
  }
  return h.permanent ? new PermanentError(h.stage ?? "extract", h.message ?? "failed") : new TransientError(h.stage ?? "extract", h.message ?? "failed");
}

/** Runs the text task (extract, chunk, local embed) in a sandbox process. */
export async function textTaskSandboxed(data: SandboxInput, p: TextTaskParams, signal: AbortSignal, limits: SandboxLimits): Promise<TextTaskResult> {
  const r = await run("text", p, data, p.key, signal, limits);
  if (!r.header.ok) throw failure(r, p.key, limits);
  const pieces = r.header.pieces ?? [];
  const places = r.header.places ?? [];
  const count = r.header.vectorCount ?? -1;
  if (count < 0) return { pieces, places };
  const copy = new Uint8Array(count * 4);
  copy.set(r.tail.subarray(0, count * 4));
  return { pieces, places, vectors: new Float32Array(copy.buffer) };
}

/** Runs the rows task in a sandbox process. */
export async function rowsTaskSandboxed(data: SandboxInput, p: RowsTaskParams, signal: AbortSignal, limits: SandboxLimits): Promise<{ rows: string[] }> {
  const r = await run("rows", p, data, p.key, signal, limits);
  if (!r.header.ok) throw failure(r, p.key, limits);
  const count = r.header.rowCount ?? 0;
  return { rows: count === 0 ? [] : r.tail.toString("utf8").split("\n") };
}

function lastLine(stderr: string): string {
  const lines = stderr.trim().split("\n").filter((l) => l.trim() !== "" && !l.startsWith("Node.js v") && !l.startsWith("    at "));
  return (lines[lines.length - 1] ?? "").slice(0, 200);
}
