/**
 * The staging area's folder syncs: calls for a folder whose sync is under way share the
 * next one, which starts after them (so it covers their renames), and a staged upload's
 * temporary file is gone after its commit whether the store moved it or copied it.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createStaging, dirSyncCount, syncDir } from "../src/storage/staging";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "k3-staging-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function* chunks(...parts: string[]): AsyncIterable<Buffer> {
  for (const p of parts) yield Buffer.from(p);
}

test("32 syncs of one folder at once make two, and each call ends after a sync that began after it", async () => {
  const before = dirSyncCount.started;
  const seen: number[] = [];
  await Promise.all(Array.from({ length: 32 }, () => syncDir(dir).then(() => seen.push(dirSyncCount.started - before))));
  // The first call starts a sync; the other 31 arrive while it runs and share the next.
  expect(dirSyncCount.started - before).toBe(2);
  expect(seen.filter((n) => n === 2)).toHaveLength(31);

  // A call made while a sync runs is not answered by that sync.
  const base = dirSyncCount.started;
  const first = syncDir(dir);
  const second = syncDir(dir).then(() => dirSyncCount.started - base);
  await first;
  expect(await second).toBe(2);
  // Another folder's sync is its own, and a missing folder fails its callers.
  const other = mkdtempSync(join(tmpdir(), "k3-staging-other-"));
  try {
    await Promise.all([syncDir(dir), syncDir(other)]);
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
  await expect(syncDir(join(dir, "missing"))).rejects.toMatchObject({ code: "ENOENT" });
  await expect(syncDir(join(dir, "missing"))).rejects.toMatchObject({ code: "ENOENT" });
});

test("a staged upload's temporary file: moved by a placement that renames, removed after one that copies or fails", async () => {
  const staging = createStaging(dir);
  const signal = new AbortController().signal;
  const temps = () => readdirSync(join(dir, "tmp")).filter((n) => n.startsWith("upload-"));

  const moved = staging.staged(await staging.write(chunks("hello ", "world"), 1 << 20, signal), async (t, key) => {
    const { renameSync } = await import("node:fs");
    renameSync(t.tmp, join(dir, key));
    return { version: 1n, durable: async () => undefined, undo: async () => undefined };
  }, true);
  expect((await moved.commit("a.txt")).version).toBe(1n);
  expect(readFileSync(join(dir, "a.txt"), "utf8")).toBe("hello world");
  expect(temps()).toEqual([]);

  const copied = staging.staged(await staging.write(chunks("copy"), 1 << 20, signal), async (t, key) => {
    writeFileSync(join(dir, key), readFileSync(t.tmp));
    return { version: 2n, durable: async () => undefined, undo: async () => undefined };
  });
  expect((await copied.commit("b.txt")).version).toBe(2n);
  expect(temps()).toEqual([]);

  const failing = staging.staged(await staging.write(chunks("nope"), 1 << 20, signal), async () => {
    throw new Error("no room");
  }, true);
  await expect(failing.commit("c.txt")).rejects.toThrow("no room");
  expect(temps()).toEqual([]);
  expect(existsSync(join(dir, "c.txt"))).toBe(false);

  // Over the cap: nothing left behind either.
  await expect(staging.write(chunks("x".repeat(10)), 5, signal)).rejects.toThrow();
  expect(temps()).toEqual([]);
});
