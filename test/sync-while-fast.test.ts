/**
 * The object store's lstat runs on the event loop only while it is fast (syncWhileFast in
 * src/storage/object-store.ts): three calls slower than the limit within 32 send the next
 * ones to their asynchronous form until the pause is over, so a slow disk cannot hold the
 * loop; a lone slow call (the machine pausing the thread) does not.
 */
import { syncWhileFast } from "../src/storage/object-store";

/** Holds the thread for `ms`, as a synchronous call on a slow disk would. */
const busy = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

test("lone slow calls stay synchronous; three slow ones within 32 send the next ones to the asynchronous form until the pause ends", async () => {
  const slowAt = new Set<number>();
  const calls: string[] = [];
  const f = syncWhileFast(
    (x: number) => {
      calls.push(`sync ${x}`);
      if (slowAt.has(x)) busy(5);
      return x * 2;
    },
    async (x: number) => {
      calls.push(`async ${x}`);
      return x * 2;
    },
    2,
    300,
  );
  // Slow calls 40 apart: each is alone in its window, so every call stays synchronous.
  for (const x of [1, 41, 81]) slowAt.add(x);
  for (let x = 1; x <= 130; x++) expect(f(x)).toBe(x * 2);
  expect(calls.every((c) => c.startsWith("sync"))).toBe(true);

  // A slow disk: three slow calls in a row; the fourth call goes to the thread pool.
  calls.length = 0;
  for (const x of [131, 132, 133]) slowAt.add(x);
  for (const x of [131, 132, 133]) expect(f(x)).toBe(x * 2);
  const during = f(134);
  expect(during).toBeInstanceOf(Promise);
  await expect(during).resolves.toBe(268);
  await new Promise((r) => setTimeout(r, 350));
  expect(f(135)).toBe(270);
  expect(calls).toEqual(["sync 131", "sync 132", "sync 133", "async 134", "sync 135"]);
});
