/** Migrations under concurrency, and how the repository reports database trouble. */
import { Pool } from "pg";
import { Unavailable } from "../src/domain/errors";
import { migrate, migrationsDone } from "../src/storage/postgres/migrate";
import { PgRepository } from "../src/storage/postgres/repository";
import { createTestDb, type TestDb } from "./helpers/db";

let db: TestDb;
beforeAll(async () => {
  db = await createTestDb();
});
afterAll(() => db.drop());

test("two instances migrating at once apply each migration exactly once", async () => {
  const pools = [new Pool({ connectionString: db.url }), new Pool({ connectionString: db.url }), new Pool({ connectionString: db.url })];
  try {
    const results = await Promise.all(pools.map((p) => migrate(p)));
    const applied = results.flat();
    expect(applied).toContain("001_init.sql");
    // Each file applied by exactly one of the racers.
    expect(new Set(applied).size).toBe(applied.length);
    const { rows } = await pools[0].query("SELECT name, count(*) OVER (PARTITION BY version) AS n FROM k3_migrations");
    expect(rows.every((r) => Number(r.n) === 1)).toBe(true);
    expect(await migrationsDone(pools[0])).toBe(true);
    // Running again is a no-op.
    expect(await migrate(pools[1])).toEqual([]);
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
});

test("the CHECK constraints back the job state invariants", async () => {
  const pool = new Pool({ connectionString: db.url });
  try {
    await migrate(pool);
    const insert = (status: string, lease: string | null, finished: number) =>
      pool.query(
        `INSERT INTO jobs (job_id, bucket, object_key, status, pipeline_id, lease_owner, created_at, updated_at, finished_at)
         VALUES ($1, 'kb', 'k', $2, 'pipe_x', $3, 1, 1, $4)`,
        [`job_${status}_${lease}_${finished}`, status, lease, finished],
      );
    await expect(insert("processing", null, 0)).rejects.toThrow(/jobs_lease_iff_processing/);
    await expect(insert("pending", "w1", 0)).rejects.toThrow(/jobs_lease_iff_processing/);
    await expect(insert("completed", null, 0)).rejects.toThrow(/jobs_finished_iff_terminal/);
    await expect(insert("bogus", null, 0)).rejects.toThrow(/check constraint/);
    await expect(insert("completed", null, 5)).resolves.toBeDefined();
  } finally {
    await pool.end();
  }
});

test("an unreachable database is UNAVAILABLE, quickly", async () => {
  const repo = new PgRepository({ connectionString: "postgres://postgres@127.0.0.1:1/none", connectTimeoutMs: 2000 });
  try {
    const started = Date.now();
    await expect(repo.jobGetById("kb", "job_x")).rejects.toBeInstanceOf(Unavailable);
    expect(Date.now() - started).toBeLessThan(3000);
  } finally {
    await repo.close();
  }
});
