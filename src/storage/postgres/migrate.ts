/**
 * Forward-only migrations: numbered `NNN_name.sql` files applied in order, all in one
 * transaction under a transaction-level advisory lock, so two instances starting
 * together apply each migration exactly once (the second waits, then finds nothing to do).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Pool } from "pg";
import { isConnectionError } from "./pg-errors";

const LOCK_KEY = 0x6b33_1e57; // "k3 ingest"
export const MIGRATIONS_DIR = join(__dirname, "migrations");

interface MigrationFile {
  version: number;
  name: string;
  sql: string;
}

function readMigrations(dir: string): MigrationFile[] {
  return readdirSync(dir)
    .filter((f) => /^\d+_.+\.sql$/.test(f))
    .map((f) => ({ version: Number.parseInt(f, 10), name: f, sql: readFileSync(join(dir, f), "utf8") }))
    .sort((a, b) => a.version - b.version);
}

/** Applies the migrations not yet applied; returns the names of those it applied. */
export async function migrate(pool: Pool, dir: string = MIGRATIONS_DIR): Promise<string[]> {
  const files = readMigrations(dir);
  const client = await pool.connect();
  // A connection lost between statements must not crash the process (see PgRepository.tx).
  let broken: Error | undefined;
  const onError = (err: Error) => (broken = err);
  client.on("error", onError);
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock($1)", [LOCK_KEY]);
    await client.query(
      "CREATE TABLE IF NOT EXISTS k3_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    );
    const { rows } = await client.query<{ version: number }>("SELECT version FROM k3_migrations");
    const done = new Set(rows.map((r) => r.version));
    const applied: string[] = [];
    for (const m of files) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query("INSERT INTO k3_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
      applied.push(m.name);
    }
    await client.query("COMMIT");
    return applied;
  } catch (err) {
    if (isConnectionError(err)) broken ??= err as Error;
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    client.off("error", onError);
    client.release(broken);
  }
}

/** True when every migration file has been applied. */
export async function migrationsDone(pool: Pool, dir: string = MIGRATIONS_DIR): Promise<boolean> {
  const files = readMigrations(dir);
  const { rows } = await pool.query<{ n: string }>(
    "SELECT count(*) AS n FROM k3_migrations WHERE version = ANY($1::int[])",
    [files.map((f) => f.version)],
  );
  return Number(rows[0]?.n ?? 0) === files.length;
}
