import { randomFillSync } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32, lower case

/** The type prefixes of our opaque IDs. */
export type IdPrefix = "job" | "pipe" | "rule" | "thread" | "src" | "disc" | "eng" | "wh" | "col" | "vw" | "cred";

/**
 * Random bytes drawn 4 KiB at a time: one call into the CSPRNG per ~400 IDs instead of one
 * each (a job per TriggerIngest made that 3 % of the server's busy time). Node's own
 * randomUUID keeps a cache the same way; the bytes are as random, only fetched in bulk.
 */
const POOL = Buffer.alloc(4096);
let poolAt = POOL.length;

function randomChunk(n: number): Buffer {
  if (poolAt + n > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  const chunk = POOL.subarray(poolAt, poolAt + n);
  poolAt += n;
  return chunk;
}

/**
 * Returns a new ID `<prefix>_<26 chars>`: 10 chars of millisecond time then 16 random
 * chars (80 bits), so IDs created later sort after earlier ones and never collide in
 * practice.
 */
export function newId(prefix: IdPrefix, nowMs: number = Date.now()): string {
  let time = "";
  let t = nowMs;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = randomChunk(10);
  let rand = "";
  // 80 bits -> 16 base32 chars, 5 bits at a time.
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      rand += ALPHABET[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  return `${prefix}_${time}${rand}`;
}
