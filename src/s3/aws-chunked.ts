/**
 * The aws-chunked upload encoding, as the AWS SDKs and CLI stream bodies of unknown length
 * or with a trailing checksum: `<hex size>[;chunk-signature=<sig>]\r\n<bytes>\r\n` … a
 * zero-size chunk, then trailer lines (`x-amz-checksum-crc32:…`, and with a signed
 * trailer `x-amz-trailer-signature:…`) and an empty line. Each signed chunk's signature
 * chains from the seed (the request's own SigV4 signature) over the chunk's SHA-256, and
 * is checked before the next chunk is read. The decoded bytes are yielded as they arrive;
 * nothing is stored until the whole body has been checked.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { S3Error } from "./errors";

/** How the chunks are signed: the SigV4 signing key, date and scope of the request, and its signature. */
export interface ChunkSigning {
  key: Buffer;
  amzDate: string;
  scope: string;
  seed: string;
}

/** What the decoder found once the body is done. */
export interface ChunkedResult {
  decodedBytes: number;
  /** Trailer headers, lower-case names. */
  trailers: Map<string, string>;
}

const EMPTY_SHA256 = createHash("sha256").digest("hex");
const MAX_LINE = 4096;

function malformed(why: string): S3Error {
  return new S3Error("IncompleteBody", 400, `the aws-chunked body is malformed: ${why}`);
}

/**
 * Decodes an aws-chunked body. `signing` checks every chunk's signature (and, with
 * `signedTrailer`, the trailer's). `result` is filled when the iteration ends.
 */
export async function* decodeAwsChunked(
  body: AsyncIterable<Buffer>,
  opts: { signing?: ChunkSigning; signedTrailer?: boolean },
  result: ChunkedResult,
): AsyncIterable<Buffer> {
  let buf: Buffer = Buffer.alloc(0);
  const it = body[Symbol.asyncIterator]();
  let ended = false;
  async function more(): Promise<boolean> {
    if (ended) return false;
    const n = await it.next();
    if (n.done) {
      ended = true;
      return false;
    }
    buf = buf.length ? Buffer.concat([buf, n.value]) : n.value;
    return true;
  }
  async function line(): Promise<string> {
    for (;;) {
      const at = buf.indexOf("\r\n");
      if (at >= 0) {
        const l = buf.subarray(0, at).toString("latin1");
        buf = buf.subarray(at + 2);
        return l;
      }
      if (buf.length > MAX_LINE) throw malformed(`a chunk header or trailer line is longer than ${MAX_LINE} bytes`);
      if (!(await more())) throw malformed("the body ended inside a chunk header");
    }
  }
  let previous = opts.signing?.seed ?? "";
  const sign = (kind: "PAYLOAD" | "TRAILER", hashes: string[]): Buffer => {
    const s = opts.signing as ChunkSigning;
    const toSign = [`AWS4-HMAC-SHA256-${kind}`, s.amzDate, s.scope, previous, ...hashes].join("\n");
    return createHmac("sha256", s.key).update(toSign, "utf8").digest();
  };
  const checkSignature = (given: string | undefined, expected: Buffer, what: string) => {
    const g = Buffer.from(given ?? "", "hex");
    if (g.length !== expected.length || !timingSafeEqual(g, expected)) {
      throw new S3Error("SignatureDoesNotMatch", 403, `the signature of ${what} does not match`);
    }
    previous = expected.toString("hex");
  };

  for (let index = 0; ; index++) {
    const header = await line();
    const [sizeHex, ...ext] = header.split(";");
    if (!/^[0-9a-fA-F]{1,16}$/.test(sizeHex)) throw malformed(`chunk ${index} has the size ${JSON.stringify(sizeHex.slice(0, 20))}`);
    const size = parseInt(sizeHex, 16);
    const sig = ext.find((e) => e.startsWith("chunk-signature="))?.slice("chunk-signature=".length);
    if (opts.signing && sig === undefined) throw new S3Error("SignatureDoesNotMatch", 403, `chunk ${index} carries no chunk-signature`);
    const hash = opts.signing ? createHash("sha256") : undefined;
    let left = size;
    while (left > 0) {
      if (buf.length === 0 && !(await more())) throw malformed(`the body ended inside chunk ${index}`);
      const piece = buf.subarray(0, Math.min(left, buf.length));
      buf = buf.subarray(piece.length);
      left -= piece.length;
      hash?.update(piece);
      result.decodedBytes += piece.length;
      yield piece;
    }
    if (opts.signing) checkSignature(sig, sign("PAYLOAD", [EMPTY_SHA256, (hash as ReturnType<typeof createHash>).digest("hex")]), `chunk ${index}`);
    if (size === 0) break;
    if ((await line()) !== "") throw malformed(`chunk ${index} is longer than its declared ${size} bytes`);
  }
  // Trailers up to an empty line (or the end of the body).
  const lines: string[] = [];
  for (;;) {
    if (buf.length === 0 && !(await more())) break;
    const l = await line();
    if (l === "") break;
    lines.push(l);
    if (lines.length > 16) throw malformed("more than 16 trailer lines");
  }
  let trailerSig: string | undefined;
  const canonical: string[] = [];
  for (const l of lines) {
    const colon = l.indexOf(":");
    if (colon <= 0) throw malformed(`the trailer line ${JSON.stringify(l.slice(0, 60))} has no name`);
    const name = l.slice(0, colon).trim().toLowerCase();
    const value = l.slice(colon + 1).trim();
    if (name === "x-amz-trailer-signature") trailerSig = value;
    else {
      result.trailers.set(name, value);
      canonical.push(`${name}:${value}\n`);
    }
  }
  if (opts.signing && opts.signedTrailer) {
    checkSignature(trailerSig, sign("TRAILER", [createHash("sha256").update(canonical.join(""), "utf8").digest("hex")]), "the trailer");
  }
}
