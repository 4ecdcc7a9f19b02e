/** Runs the server (or a worker) as a real child process on the TypeScript sources. */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";

const ROOT = join(__dirname, "..", "..");

/** A child process of ours, with its output kept for failure messages. */
export interface Child {
  proc: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
}

/** Starts `src/main.ts <command>` with the given environment; resolves once it logged that it started. */
export async function startProcess(command: "serve" | "api" | "worker", env: Record<string, string>): Promise<Child> {
  const proc = spawn(process.execPath, ["-r", join(ROOT, "test", "helpers", "ts-register.cjs"), join(ROOT, "src", "main.ts"), command], {
    cwd: ROOT,
    env: { ...process.env, K3_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout?.on("data", (d) => (out += String(d)));
  proc.stderr?.on("data", (d) => (out += String(d)));
  const exited = new Promise<number | string>((resolve) => proc.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not start within 20 s:\n${out}`)), 20_000);
    const onData = () => {
      if (out.includes('"k3-ingest started"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited (${code}) before starting:\n${out}`));
    });
  });
  return { proc, output: () => out, exited };
}

/** `serve` on free loopback ports, on a database and data dir; resolves with its HTTP URL. */
export async function serveOn(databaseUrl: string, dataDir: string, env: Record<string, string> = {}): Promise<{ child: Child; url: string }> {
  const port = await freePort();
  const child = await startProcess("serve", {
    DATABASE_URL: databaseUrl,
    K3_DATA_DIR: dataDir,
    K3_HOST: "127.0.0.1",
    K3_HTTP_PORT: String(port),
    K3_GRPC_PORT: String(await freePort()),
    ...env,
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

/** A loopback port nothing listens on (for servers a test starts, or a refused connection). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A loopback port that stays unreachable while the test runs: its listener resets every
 * connection. (A port found free and closed again can be handed to another test's server
 * before it is dialled: CI once saw a "dead" embedder answer with a byte plane's 403.)
 */
export function deadPort(): Promise<{ port: number; close(): Promise<void> }> {
  return new Promise((resolve) => {
    const srv = createServer((socket) => socket.resetAndDestroy()).listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      resolve({ port, close: () => new Promise<void>((done) => srv.close(() => done())) });
    });
  });
}
