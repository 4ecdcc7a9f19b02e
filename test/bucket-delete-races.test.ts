/**
 * A bucket force-deleted while uploads into it are in flight: the uploads answer 200 (done
 * before the delete, and deleted with the bucket) or 404 NoSuchBucket, never 500; the delete
 * answers 200; and the bucket made again afterwards is empty. Before, the delete could fail
 * with ENOTEMPTY (uploads renaming into the folder it removed), uploads failed with ENOENT,
 * and an upload arriving after the delete adopted the folder as the bucket come back — files
 * of unacknowledged uploads included — so the bucket made again held objects nobody put in
 * it. The uploads run against a server process of its own, as clients reach it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDb, type TestDb } from "./helpers/db";
import { serveOn, type Child } from "./helpers/processes";

jest.setTimeout(120_000);

let db: TestDb;
let dir: string;
let server: { child: Child; url: string };

beforeAll(async () => {
  db = await createTestDb();
  dir = mkdtempSync(join(tmpdir(), "k3-bucket-races-"));
  server = await serveOn(db.url, dir, { K3_AUTH: "off", K3_ROLE: "api" });
});
afterAll(async () => {
  server.child.proc.kill("SIGTERM");
  await server.child.exited;
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

test("uploads racing a force delete: 200 or 404 each, the delete succeeds, the bucket made again is empty", async () => {
  const json = { "content-type": "application/json" };
  const outcomes = new Set<number>();
  const left: string[] = [];
  for (let round = 0; round < 12; round++) {
    const b = `kb-race-delete-${round}`;
    expect((await fetch(`${server.url}/admin/buckets`, { method: "POST", headers: json, body: JSON.stringify({ name: b }) })).status).toBe(200);
    const puts = Array.from({ length: 40 }, (_, i) => fetch(`${server.url}/${b}/d/${i}.txt`, { method: "PUT", body: `object ${i}` }).then((r) => r.status));
    await new Promise((r) => setTimeout(r, round % 4));
    const deleted = await fetch(`${server.url}/admin/buckets/${b}?force=true`, { method: "DELETE" });
    expect(deleted.status).toBe(200);
    for (const st of await Promise.all(puts)) outcomes.add(st);
    expect((await fetch(`${server.url}/admin/buckets`, { method: "POST", headers: json, body: JSON.stringify({ name: b }) })).status).toBe(200);
    const keys = [...(await (await fetch(`${server.url}/${b}?list-type=2`)).text()).matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]);
    if (keys.length) left.push(`round ${round}: ${keys.length} objects in the bucket made again`);
  }
  expect(left).toEqual([]);
  expect([...outcomes].every((st) => st === 200 || st === 404)).toBe(true);
  expect(outcomes.has(404)).toBe(true);
});
