/** Shared pieces of the benchmark: databases, processes, load generation, statistics. */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Client } from "pg";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../src/storage/postgres/embedded";

const run = promisify(execFile);
export const ROOT = join(__dirname, "..", "..");

/** Percentile of a sorted-or-not sample (nearest rank). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** The PostgreSQL the benchmark runs on: BENCH_DATABASE_URL, or an embedded one of its own. */
export async function benchPostgres(): Promise<{ adminUrl: string; stop(): Promise<void> }> {
  if (process.env.BENCH_DATABASE_URL) return { adminUrl: process.env.BENCH_DATABASE_URL, stop: async () => undefined };
  const dir = mkdtempSync(join(tmpdir(), "k3-bench-pg-"));
  chmodSync(dir, 0o755);
  const pgLog = join(dir, "postgres.log");
  const pg: EmbeddedPostgres = await startEmbeddedPostgres({
    dataDir: dir,
    port: await freePort(),
    log: (line) => appendFileSync(pgLog, line + "\n"),
    warn: (line) => appendFileSync(pgLog, line + "\n"),
    ephemeral: true,
  });
  return { adminUrl: pg.connectionString, stop: () => pg.stop() };
}

/** A fresh database next to `adminUrl`. */
export async function freshDatabase(adminUrl: string, name: string): Promise<string> {
  const c = new Client({ connectionString: adminUrl });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** A child process running a TypeScript entry point of ours. */
export interface Proc {
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** Spawns `node -r ts-register <script> ...args`; resolves once `ready(output)` holds. */
export function spawnTs(script: string, args: string[], env: Record<string, string>, ready: (out: string) => boolean): Promise<Proc> {
  return spawnNode(["-r", join(ROOT, "test/helpers/ts-register.cjs"), join(ROOT, script), ...args], env, ready);
}

/** Processes spawned and not stopped yet: what a failed scenario leaves behind (stopAll). */
const running = new Set<Proc>();

/** Stops every process a scenario started and did not stop (it failed before its own stop). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop()));
}

/** Spawns `node ...args`; resolves once `ready(output)` holds. */
async function spawnNode(args: string[], env: Record<string, string>, ready: (out: string) => boolean): Promise<Proc> {
  const script = args.find((a) => a.endsWith(".ts") || a.endsWith(".js")) ?? args.join(" ");
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (d) => (out += String(d)));
  child.stderr?.on("data", (d) => (out += String(d)));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      if (ready(out)) {
        clearInterval(t);
        resolve();
      } else if (child.exitCode !== null) {
        clearInterval(t);
        reject(new Error(`${script} exited:\n${out}`));
      }
    }, 20);
  });
  const proc: Proc = {
    child,
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
      running.delete(proc);
    },
  };
  running.add(proc);
  return proc;
}

/**
 * The server as `npm start` runs it: the build (made first when stale, as `npm start`
 * does) under the Node flags of package.json's start script. Not through ts-register: its
 * compiler alone adds ~30 MB to a process's resident memory, which the memory row would
 * count.
 */
const SERVER_COMMAND: string[] = [
  ...(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).scripts.start as string).split(/\s+/).filter((w) => /^--[\w-]+(=\S+)?$/.test(w)),
  join(ROOT, "dist", "src", "main.js"),
];
let built = false;

/** Starts the real server (a role of src/main.ts, built) on a database and a data dir of its own. */
export async function startServer(role: "api" | "worker" | "serve", databaseUrl: string, env: Record<string, string> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "k3-bench-data-"));
  const httpPort = await freePort();
  const grpcPort = await freePort();
  if (!built) {
    await run(process.execPath, [join(ROOT, "src", "build-if-stale.cjs")], { cwd: ROOT });
    built = true;
  }
  const proc = await spawnNode(
    [...SERVER_COMMAND, role],
    {
      DATABASE_URL: databaseUrl,
      K3_DATA_DIR: dataDir,
      K3_HOST: "127.0.0.1",
      K3_HTTP_PORT: String(httpPort),
      K3_GRPC_PORT: String(grpcPort),
      ...env,
    },
    // Logs at the default level, as operators run it (a line per finished job); the API is
    // ready when /readyz answers, a worker as soon as it runs (its throughput is read from
    // the database).
    () => true,
  );
  if (role !== "worker") {
    for (let i = 0; ; i++) {
      const ready = await fetch(`http://127.0.0.1:${httpPort}/readyz`).then((r) => r.ok, () => false);
      if (ready) break;
      if (i > 600 || proc.child.exitCode !== null) throw new Error(`server did not become ready:\n${proc.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const token = role === "worker" ? "" : readFileSync(join(dataDir, "admin-token"), "utf8").trim();
  return { proc, dataDir, httpPort, grpcPort, token };
}

/** Resident set size (bytes) of a process, now. */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** CPU time (ms) a process has used, from /proc (user + system). */
export function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}

/** CPU time (ms) the whole machine has been busy (user, nice, system, irq, softirq), summed over its cores. */
export function machineBusyMs(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].split(/\s+/).slice(1).map(Number);
  return ((f[0] + f[1] + f[2] + f[5] + f[6]) * 1000) / CLOCK_TICKS;
}

/** USER_HZ: Linux reports process and machine times in hundredths of a second. */
const CLOCK_TICKS = 100;

/** Result of one h2load run. */
export interface LoadResult {
  requests: number;
  ok: number;
  seconds: number;
  p50ms: number;
  p99ms: number;
}

/** Drives load with h2load (a C load generator) for `seconds`, 64 requests in flight. */
export async function h2load(opts: {
  url: string;
  body: Buffer;
  headers: Record<string, string>;
  seconds: number;
  http1: boolean;
}): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "k3-h2load-"));
  const bodyFile = join(dir, "body");
  const logFile = join(dir, "log");
  writeFileSync(bodyFile, opts.body);
  const args = [
    "-D",
    String(opts.seconds),
    "--warm-up-time=1",
    ...(opts.http1 ? ["--h1", "-c", "64", "-m", "1", "-t", "1"] : ["-c", "4", "-m", "16", "-t", "1"]),
    "-d",
    bodyFile,
    `--log-file=${logFile}`,
    ...Object.entries(opts.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    opts.url,
  ];
  await run("h2load", args, { maxBuffer: 64 << 20, timeout: (opts.seconds + 60) * 1000 });
  const lines = readFileSync(logFile, "utf8").trim().split("\n").filter(Boolean);
  const durations = lines.map((l) => Number(l.split("\t")[2]) / 1000);
  const ok = lines.filter((l) => l.split("\t")[1] === "200").length;
  return { requests: lines.length, ok, seconds: opts.seconds, p50ms: percentile(durations, 50), p99ms: percentile(durations, 99) };
}

/** A gRPC request body as sent on the wire: 1 byte flags, 4 bytes length, the message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const b = Buffer.alloc(5 + message.length);
  b.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(b, 5);
  return b;
}

/**
 * Makes sure `command` (run with `versionArgs`) works; if not, installs Debian's `pkg`
 * (when running as root, as CI and the bench machines do) and checks again, so a missing
 * tool fails here with its name instead of minutes into a run.
 */
export async function ensureDebianTool(command: string, versionArgs: string[], pkg: string): Promise<void> {
  try {
    await run(command, versionArgs);
    return;
  } catch {
    process.stderr.write(`${command} not found; installing Debian's ${pkg}\n`);
  }
  try {
    await run("sh", ["-c", `apt-get install -y ${pkg} >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y ${pkg} >/dev/null)`], { timeout: 600_000 });
    await run(command, versionArgs);
  } catch (err) {
    throw new Error(`${command} is needed and could not be installed (apt-get install -y ${pkg}, as root): ${(err as Error).message.split("\n")[0]}`);
  }
}
