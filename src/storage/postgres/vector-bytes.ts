/**
 * How a vector is kept in `vector_chunks.embedding` (migration 026): its components as
 * 4-byte floats, one after another, big-endian — what PostgreSQL's float4send writes, so
 * the migration could convert the old real[] column in SQL. A write sends them as hex
 * text (the output functions' `decode(…, 'hex')`), and a read gets the raw bytes (COPY's
 * binary format, or bytea's text form, which pg decodes). Neither side parses a number:
 * the old form made PostgreSQL parse 384 decimal floats a vector and the server print
 * them, ~0.3 ms of machine CPU a vector against ~0.02 now.
 */

/** True on a little-endian machine, where a Float32Array's bytes are the reverse of the stored form. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The stored bytes of a vector. */
export function vectorBytes(vector: ArrayLike<number>): Buffer {
  const floats = Float32Array.from(vector);
  const bytes = Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength);
  return LITTLE_ENDIAN ? bytes.swap32() : bytes;
}

/** The stored bytes of a vector as hex, the form the write statements decode. */
export const vectorHex = (vector: ArrayLike<number>): string => vectorBytes(vector).toString("hex");

/** A vector from its stored bytes (a trailing partial component is ignored). */
export function vectorOf(stored: Buffer): Float32Array {
  const out = new Float32Array(stored.length >>> 2);
  const bytes = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  stored.copy(bytes, 0, 0, bytes.length);
  if (LITTLE_ENDIAN) bytes.swap32();
  return out;
}
