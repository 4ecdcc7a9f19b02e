/**
 * Vectors kept as their components' float4 bytes (migration 026, vector-bytes.ts): a
 * database written before the migration keeps every vector, component for component;
 * and what the worker's output call and the pushed-vector write store reads back exactly.
 * `k3_vector(embedding)` gives a stored vector back as real[] in SQL.
 */
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MIGRATIONS_DIR, migrate } from "../src/storage/postgres/migrate";
import { OUTPUT_BATCH, outputBatches } from "../src/storage/postgres/destinations";
import { PgRepository } from "../src/storage/postgres/repository";
import { vectorBytes, vectorOf } from "../src/storage/postgres/vector-bytes";
import { createTestDb, type TestDb } from "./helpers/db";

let db: TestDb;
let repo: PgRepository;
beforeAll(async () => {
  db = await createTestDb();
  repo = new PgRepository({ connectionString: db.url });
});
afterAll(async () => {
  await repo.close();
  await db.drop();
});

const scope = { org: "default", bucket: "kb" };

test("a stored vector is float4send's bytes, and reads back as the same 32-bit floats", () => {
  const v = [1.5, -0.1, 3.4e38, -0, 1e-45];
  expect(vectorBytes(v).toString("hex").slice(0, 16)).toBe("3fc00000bdcccccd");
  expect(Array.from(vectorOf(vectorBytes(v)))).toEqual(v.map(Math.fround));
  // A stored form with a torn last component reads the whole ones only.
  expect(Array.from(vectorOf(Buffer.from("3fc0000040", "hex")))).toEqual([1.5]);
});

test("migration 026 converts the vectors written before it, and the search index reads them", async () => {
  // The database as the release before left it: every migration up to 025.
  const before = mkdtempSync(join(tmpdir(), "k3-migrations-"));
  try {
    for (const f of readdirSync(MIGRATIONS_DIR).filter((f) => Number.parseInt(f, 10) < 26)) cpSync(join(MIGRATIONS_DIR, f), join(before, f));
    await migrate(repo.pool, before);
  } finally {
    rmSync(before, { recursive: true, force: true });
  }
  const vectors = [[0.25, -1, 3.14159], [1e-7, 65504.5, -2.5e-3], []];
  await repo.pool.query(
    `INSERT INTO vector_chunks (org, bucket, pipeline_id, object_key, chunk_index, content, embedding, job_id, created_at)
     SELECT 'default', 'kb', 'pipe_old', 'old.txt', i - 1, 'chunk ' || i, translate($1::json ->> (i - 1), '[]', '{}')::real[], 'job_old', 0
     FROM generate_series(1, 3) AS i`,
    [JSON.stringify(vectors.map((v) => JSON.stringify(v)))],
  );
  await repo.pool.query("INSERT INTO vector_chunks (org, bucket, pipeline_id, object_key, chunk_index, content, embedding, job_id, created_at) VALUES ('default', 'kb', 'pipe_old', 'nulls.txt', 0, '', '{1,NULL,2}', 'job_old', 0)");

  expect(await migrate(repo.pool)).toEqual(readdirSync(MIGRATIONS_DIR).filter((f) => Number.parseInt(f, 10) >= 26).sort());
  const [old, nulls] = await repo.vector.chunksOf(scope, "pipe_old", ["old.txt", "nulls.txt"]);
  expect(old.indexes).toEqual([0, 1, 2]);
  expect(old.vectors.map((v) => Array.from(v))).toEqual(vectors.map((v) => v.map(Math.fround)));
  // A NULL component (never written by this server) became 0 rather than shifting the rest.
  expect(Array.from(nulls.vectors[0])).toEqual([1, 0, 2]);

  // psql users read a vector back as real[] with k3_vector(), exactly, across the float range.
  const { rows } = await repo.pool.query("SELECT k3_vector(embedding) AS v FROM vector_chunks WHERE object_key = 'old.txt' ORDER BY chunk_index");
  // (real[]'s text is each float's shortest decimal: the numbers as written.)
  expect(rows.map((r) => r.v)).toEqual(vectors);
  const { rows: [wide] } = await repo.pool.query(
    `WITH a AS (SELECT array_agg(((random() - 0.5) * 10 ^ (random() * 57 - 20))::real) AS a FROM generate_series(1, 20000))
     SELECT k3_vector((SELECT string_agg(float4send(x), ''::bytea ORDER BY n) FROM unnest(a) WITH ORDINALITY AS u(x, n))) = a AS same,
            k3_vector('\\x7f800000ff8000007fc00000000000018000000000000000'::bytea)::text AS special FROM a`,
  );
  expect(wide).toEqual({ same: true, special: "{Infinity,-Infinity,NaN,1e-45,0,0}" });
});

test("the output call and the pushed-vector write store what they were given, exactly", async () => {
  await migrate(repo.pool);
  const chunks = [0, 1, 2].map((i) => ({ index: i, text: `part ${i}`, vector: Array.from({ length: 384 }, (_, d) => Math.sin(i * 1000 + d) / 7) }));
  const [batch] = [...outputBatches({ kind: "vector", chunks, batchSize: 64 })];
  await repo.pool.query(OUTPUT_BATCH, [true, "vector", "default", "kb", "pipe_new", "new.txt", "job_new", 0, ...batch]);
  const [written] = await repo.vector.chunksOf(scope, "pipe_new", ["new.txt"]);
  expect(written.vectors.map((v) => Array.from(v))).toEqual(chunks.map((c) => c.vector.map(Math.fround)));

  await repo.collections.collectionInsert(scope, { collectionId: "col_x", name: "x", description: "", dimensions: 2, embedModel: "", createdAt: 0, updatedAt: 0 });
  await repo.collections.vectorsWrite(scope, "col_x", [{ id: "v1", content: "", values: [0.5, -0.75], metadata: {} }], "insert", "vw_1", 0);
  const found = await repo.vector.embeddings(scope, [{ pipelineId: "col_x", key: "v1", chunkIndex: 0 }]);
  expect(Array.from([...found.values()][0].vector)).toEqual([0.5, -0.75]);
});
