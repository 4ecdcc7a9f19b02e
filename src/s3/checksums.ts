/**
 * The additional checksums S3 accepts on an upload (`x-amz-checksum-<algorithm>`, as a
 * header or as an aws-chunked trailer), each computed over the object's bytes as they are
 * staged and compared with what the client sent, base64 as S3 writes them. CRC32 comes
 * from zlib; CRC32C and CRC64/NVME (reflected, table-driven) are written here; SHA-1 and
 * SHA-256 from node:crypto.
 */
import { createHash, type Hash } from "node:crypto";
import { crc32 } from "node:zlib";
import { S3Error } from "./errors";

/** The algorithms S3 names, lower-case as in the header names. */
export const CHECKSUM_ALGORITHMS = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];

/** A running checksum. */
export interface Checksum {
  update(data: Buffer): void;
  /** The base64 of the big-endian digest. */
  digest(): string;
}

function crc32cTable(): Uint32Array {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
}

/** CRC-64/NVME (reflected polynomial 0x9a6c9329ac4bc9b5) as two 32-bit halves. */
function crc64Tables(): { lo: Uint32Array; hi: Uint32Array } {
  const lo = new Uint32Array(256);
  const hi = new Uint32Array(256);
  const POLY_LO = 0xac4bc9b5;
  const POLY_HI = 0x9a6c9329;
  for (let i = 0; i < 256; i++) {
    let l = i;
    let h = 0;
    for (let k = 0; k < 8; k++) {
      const odd = l & 1;
      l = ((l >>> 1) | ((h & 1) << 31)) >>> 0;
      h = h >>> 1;
      if (odd) {
        l = (l ^ POLY_LO) >>> 0;
        h = (h ^ POLY_HI) >>> 0;
      }
    }
    lo[i] = l;
    hi[i] = h;
  }
  return { lo, hi };
}

let tables: { c32c: Uint32Array; c64: { lo: Uint32Array; hi: Uint32Array } } | undefined;
const tablesOnce = () => (tables ??= { c32c: crc32cTable(), c64: crc64Tables() });

const be32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b.toString("base64");
};

function fromHash(h: Hash): Checksum {
  return { update: (d) => void h.update(d), digest: () => h.digest("base64") };
}

/** A new running checksum of `algorithm`. */
export function newChecksum(algorithm: ChecksumAlgorithm): Checksum {
  switch (algorithm) {
    case "crc32": {
      let c = 0;
      return { update: (d) => void (c = crc32(d, c)), digest: () => be32(c) };
    }
    case "crc32c": {
      const t = tablesOnce().c32c;
      let c = 0xffffffff;
      return {
        update(d) {
          for (let i = 0; i < d.length; i++) c = t[(c ^ d[i]) & 0xff] ^ (c >>> 8);
        },
        digest: () => be32(~c),
      };
    }
    case "crc64nvme": {
      const { lo: tl, hi: th } = tablesOnce().c64;
      let lo = 0xffffffff;
      let hi = 0xffffffff;
      return {
        update(d) {
          for (let i = 0; i < d.length; i++) {
            const idx = (lo ^ d[i]) & 0xff;
            lo = (((lo >>> 8) | (hi << 24)) ^ tl[idx]) >>> 0;
            hi = ((hi >>> 8) ^ th[idx]) >>> 0;
          }
        },
        digest() {
          const b = Buffer.alloc(8);
          b.writeUInt32BE(~hi >>> 0, 0);
          b.writeUInt32BE(~lo >>> 0, 4);
          return b.toString("base64");
        },
      };
    }
    case "sha1":
      return fromHash(createHash("sha1"));
    case "sha256":
      return fromHash(createHash("sha256"));
  }
}

/** The algorithm of a header or trailer name such as `x-amz-checksum-crc32`, or undefined. */
export function algorithmOf(name: string): ChecksumAlgorithm | undefined {
  const m = /^x-amz-checksum-([a-z0-9]+)$/.exec(name.toLowerCase().trim());
  if (!m) return undefined;
  if (!(CHECKSUM_ALGORITHMS as readonly string[]).includes(m[1])) {
    throw new S3Error("InvalidRequest", 400, `${name} names an unknown checksum algorithm; accepted: ${CHECKSUM_ALGORITHMS.join(", ")}`);
  }
  return m[1] as ChecksumAlgorithm;
}

/** Throws BadDigest when the computed value is not the one sent. */
export function checkChecksum(algorithm: ChecksumAlgorithm, sent: string, computed: string): void {
  if (sent.trim() !== computed) {
    throw new S3Error("BadDigest", 400, `The ${algorithm.toUpperCase()} you specified did not match the calculated checksum.`);
  }
}
