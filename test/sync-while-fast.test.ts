/**
 * The object store's lstat runs on the event loop only while it is fast (syncWhileFast in
 * src/storage/object-store.ts): a call slower than the limit sends the next ones to their
 * asynchronous form until the pause is over, so a slow disk cannot hold the loop.
 */
import { syncWhileFast } from "../src/storage/object-store";

/** Holds the thread for `ms`, as a synchronous call on a slow disk would. */
const busy = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

test("a fast call stays synchronous; one over the limit sends the next ones to the asynchronous form until the pause ends", async () => {
  let slow = false;
  const calls: string[] = [];
  const f = syncWhileFast(
    (x: number) => {
      calls.push(`sync ${x}`);
      if (slow) busy(5);
      return x * 2;
    },
    async (x: number) => {
      calls.push(`async ${x}`);
      return x * 2;
    },
    2,
    300,
  );
  expect(f(1)).toBe(2);
  expect(f(2)).toBe(4);
  slow = true;
  expect(f(3)).toBe(6); // answered, but took 5 ms
  const during = f(4);
  expect(during).toBeInstanceOf(Promise);
  await expect(during).resolves.toBe(8);
  slow = false;
  await new Promise((r) => setTimeout(r, 350));
  expect(f(5)).toBe(10);
  expect(calls).toEqual(["sync 1", "sync 2", "sync 3", "async 4", "sync 5"]);
});
