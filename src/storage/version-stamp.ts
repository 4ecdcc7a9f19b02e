/**
 * Versions of uploaded objects. An object's version orders its uploads: the indexer lets a
 * newer version's output supersede an older one's, and a reader tells the row of its bytes
 * from another upload's. A file's own mtime is too coarse for that — Linux moves it with
 * the kernel's tick, and half of the files written back to back here share one — so each
 * upload is stamped, in its key's turn, with the wall clock in microseconds, one more than
 * the last stamp when the clock has not moved on: unique and increasing within a process,
 * and ordered across instances as far as their clocks agree (writes of one key across
 * instances are a lock hand-off apart).
 */
import { utimes } from "node:fs";

let last = 0;

/** The next stamp: microseconds since the epoch, greater than every stamp before it in this process. */
export function nextStampMicros(): number {
  last = Math.max(Math.floor((performance.timeOrigin + performance.now()) * 1000), last + 1);
  return last;
}

/** Stamps a file (one the caller owns, not yet in place) with the next stamp as its mtime. */
export function stampFile(path: string): Promise<void> {
  const seconds = nextStampMicros() / 1e6;
  return new Promise((resolve, reject) => utimes(path, seconds, seconds, (err) => (err ? reject(err) : resolve())));
}
