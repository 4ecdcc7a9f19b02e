/**
 * COPY … TO STDOUT in the binary format (src/storage/postgres/copy-out.ts), against a real
 * PostgreSQL: every row and field arrives as the server's binary form (NULLs as null), a
 * large row survives, an empty result is empty, and an error rejects without breaking the
 * connection for the next statement. Vectors here are in their stored form (float4send's
 * bytes, one component after another: vector-bytes.ts).
 */
import { Pool } from "pg";
import { copyOutBinary, type CopyRow } from "../src/storage/postgres/copy-out";
import { vectorOf } from "../src/storage/postgres/vector-bytes";
import { createTestDb, type TestDb } from "./helpers/db";

let tdb: TestDb;
let pool: Pool;
beforeAll(async () => {
  tdb = await createTestDb();
  pool = new Pool({ connectionString: tdb.url, max: 1 });
});
afterAll(async () => {
  await pool.end();
  await tdb.drop();
});

test("rows arrive field by field in their binary form, NULLs as null, a 40 KB row whole", async () => {
  const client = await pool.connect();
  try {
    const got: Array<[number, string | null, number[] | null]> = [];
    const rows = await copyOutBinary(
      client,
      `SELECT i::int4, CASE WHEN i % 3 = 0 THEN NULL ELSE 'row ' || i || ' ü' END,
              CASE WHEN i = 2 THEN NULL ELSE (SELECT string_agg(float4send((i * 10000 + d)::real), ''::bytea ORDER BY d) FROM generate_series(1, CASE WHEN i = 4 THEN 10000 ELSE 3 END) AS d) END
       FROM generate_series(1, 5) AS i ORDER BY i`,
      (row: CopyRow) => got.push([row[0]!.readInt32BE(0), row[1] ? row[1].toString("utf8") : null, row[2] ? Array.from(vectorOf(row[2])) : null]),
    );
    expect(rows).toBe(5);
    expect(got.map(([i, text]) => [i, text])).toEqual([[1, "row 1 ü"], [2, "row 2 ü"], [3, null], [4, "row 4 ü"], [5, "row 5 ü"]]);
    expect(got[0][2]).toEqual([10001, 10002, 10003]);
    expect(got[1][2]).toBeNull();
    expect(got[3][2]).toHaveLength(10_000);
    expect(got[3][2]![9_999]).toBe(50_000);
  } finally {
    client.release();
  }
});

test("an empty result calls nothing; an error rejects, and the same connection answers the next statement", async () => {
  const client = await pool.connect();
  try {
    let calls = 0;
    expect(await copyOutBinary(client, "SELECT 1 WHERE false", () => calls++)).toBe(0);
    expect(calls).toBe(0);
    await expect(copyOutBinary(client, "SELECT no_such_column FROM generate_series(1, 3)", () => calls++)).rejects.toThrow(/no_such_column/);
    await expect(copyOutBinary(client, "SELECT 1 / (3 - i) FROM generate_series(1, 5) AS i", () => calls++)).rejects.toThrow(/division by zero/);
    expect((await client.query("SELECT 42 AS n")).rows[0].n).toBe(42);
  } finally {
    client.release();
  }
});
