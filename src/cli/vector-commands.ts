/**
 * `k3-ingest collections ls|create|rm` and `k3-ingest vectors push|rm`: a bucket's vector
 * collections, and the vectors a client computes itself pushed into one of its own
 * (VectorService AddVectorCollection, InsertVectors / UpsertVectors, DeleteVectors), over
 * Connect like the other client commands. `vectors push` reads JSON lines — one
 * `{"id", "values", "content", "metadata"}` a line, as the API takes a vector — from a file
 * or stdin, and sends them in calls that fit the server's default body limit (1 MiB) and its
 * 1,000 vectors a call. Each call is one transaction; on a refusal it says which lines were
 * written before and which call was refused.
 */
import { readFileSync } from "node:fs";
import { toJson } from "@bufbuild/protobuf";
import { ConnectError, type Client } from "@connectrpc/connect";
import { VectorService, type Collection } from "../../gen/dodil/k3/vector/v1/vector_pb";
import { render, type Out } from "./common";

/** What the vector commands need from the command line. */
export interface VectorCommandContext {
  vector: Client<typeof VectorService>;
  bucket(): string;
  asJson: boolean;
  out: Out;
  args: string[];
  flags: { dimensions?: string; embedModel?: string; description?: string; upsert?: boolean };
  /** Reads stdin whole (`vectors push … -`). */
  stdin(): Promise<string>;
  usage(message: string): Error;
}

/** Vectors per call at most (the API's limit). */
const MAX_PER_CALL = 1000;
/** Bytes of vectors per call at most: the binary message stays under the server's default 1 MiB. */
const MAX_BYTES_PER_CALL = 768 * 1024;

const HEADER = ["COLLECTION", "NAME", "SOURCE", "DIMENSIONS", "MODEL", "CHUNKS"];
const row = (c: Collection) => [c.collectionId, c.name, c.embeddingSource, String(c.dimensions), c.embedModel || "-", String(c.chunkCount)];

/** One vector of a push, from its line. */
interface PushedLine {
  line: number;
  record: { id: string; values: number[]; content: string; metadata: Record<string, string> };
  bytes: number;
}

/** The vectors of a JSON-lines text; a usage error names the first bad line and what a line holds. */
export function parseVectorLines(text: string, usage: (message: string) => Error): PushedLine[] {
  const shape = 'each line is a vector: {"id": "…", "values": [0.1, …], "content": "…", "metadata": {"k": "v"}} (content and metadata optional)';
  const out: PushedLine[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === "") return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw usage(`line ${line} is not JSON (${(e as Error).message}); ${shape}`);
    }
    const o = v as Record<string, unknown>;
    if (typeof o !== "object" || o === null || Array.isArray(o)) throw usage(`line ${line} is not a JSON object; ${shape}`);
    if (typeof o.id !== "string" || o.id === "") throw usage(`line ${line}: "id" must be a non-empty string; ${shape}`);
    if (!Array.isArray(o.values) || o.values.length === 0 || !o.values.every((x) => typeof x === "number")) throw usage(`line ${line}: "values" must be a non-empty array of numbers; ${shape}`);
    if (o.content !== undefined && typeof o.content !== "string") throw usage(`line ${line}: "content" must be a string; ${shape}`);
    const metadata = o.metadata ?? {};
    if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata) || !Object.values(metadata).every((x) => typeof x === "string")) {
      throw usage(`line ${line}: "metadata" must be an object of strings; ${shape}`);
    }
    const record = { id: o.id, values: o.values as number[], content: (o.content as string | undefined) ?? "", metadata: metadata as Record<string, string> };
    const bytes = 16 + Buffer.byteLength(record.id) + 5 * record.values.length + Buffer.byteLength(record.content) + Object.entries(record.metadata).reduce((n, [k, x]) => n + 8 + Buffer.byteLength(k) + Buffer.byteLength(x), 0);
    out.push({ line, record, bytes });
  });
  return out;
}

/** The vectors cut into calls: at most MAX_PER_CALL each and MAX_BYTES_PER_CALL of them (one larger vector goes alone). */
function calls(lines: PushedLine[]): PushedLine[][] {
  const out: PushedLine[][] = [];
  let current: PushedLine[] = [];
  let bytes = 0;
  for (const l of lines) {
    if (current.length && (current.length === MAX_PER_CALL || bytes + l.bytes > MAX_BYTES_PER_CALL)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(l);
    bytes += l.bytes;
  }
  if (current.length) out.push(current);
  return out;
}

/** Runs `collections ls|create|rm`. */
export async function collectionCommand(c: VectorCommandContext, verb: string | undefined): Promise<number> {
  const m = VectorService.method;
  const arg = (what: string) => {
    if (!c.args[0]) throw c.usage(`${what} is required`);
    return c.args[0];
  };
  switch (verb) {
    case "ls":
    case "list": {
      const res = await c.vector.listCollections({ bucket: c.bucket() });
      render(c.out, c.asJson, m.listCollections.output, res, HEADER, res.collections.map(row));
      return 0;
    }
    case "create": {
      const dims = Number(c.flags.dimensions);
      if (c.flags.dimensions === undefined || !Number.isInteger(dims) || dims < 1) throw c.usage(`--dimensions ${c.flags.dimensions ?? "(missing)"}: give the vectors' length, a whole number (1 to 8192)`);
      const res = await c.vector.addVectorCollection({ bucket: c.bucket(), name: arg("NAME"), dimensions: dims, embedModel: c.flags.embedModel ?? "", description: c.flags.description ?? "" });
      render(c.out, c.asJson, m.addVectorCollection.output, res, HEADER, [row(res.collection!)]);
      return 0;
    }
    case "rm":
    case "delete": {
      const res = await c.vector.deleteCollection({ bucket: c.bucket(), collectionId: arg("COLLECTION (id or name)") });
      c.out.write(c.asJson ? JSON.stringify(toJson(m.deleteCollection.output, res, { alwaysEmitImplicit: true }), null, 2) + "\n" : `deleted, with ${res.deletedChunks} vectors\n`);
      return 0;
    }
  }
  throw c.usage(`unknown collections command ${verb ?? ""}`);
}

/** Runs `vectors push|rm`. */
export async function vectorCommand(c: VectorCommandContext, verb: string | undefined): Promise<number> {
  const [collection, ...more] = c.args;
  if (!collection) throw c.usage("COLLECTION (id or name) is required");
  const bucket = c.bucket();
  switch (verb) {
    case "push": {
      if (more.length !== 1) throw c.usage("give one FILE of JSON lines, or - for stdin");
      const text = more[0] === "-" ? await c.stdin() : readFileSync(more[0], "utf8");
      const lines = parseVectorLines(text, c.usage);
      if (lines.length === 0) throw c.usage(`${more[0] === "-" ? "stdin" : more[0]} holds no vectors`);
      const batches = calls(lines);
      let written = 0;
      for (const batch of batches) {
        const request = { bucket, collectionId: collection, vectors: batch.map((l) => l.record) };
        try {
          const res = c.flags.upsert ? await c.vector.upsertVectors(request) : await c.vector.insertVectors(request);
          written += Number("upsertedCount" in res ? res.upsertedCount : res.insertedCount);
        } catch (e) {
          const ce = ConnectError.from(e);
          const where = `lines ${batch[0].line}–${batch[batch.length - 1].line}`;
          const before = written ? `${written} vectors before line ${batch[0].line} were written; ` : "";
          throw new ConnectError(`${before}${where} were refused, and nothing after them sent: ${ce.rawMessage}`, ce.code);
        }
      }
      c.out.write(c.asJson ? JSON.stringify({ written, calls: batches.length }) + "\n" : `${c.flags.upsert ? "upserted" : "inserted"} ${written} vectors into ${collection}\n`);
      return 0;
    }
    case "rm":
    case "delete": {
      if (more.length === 0) throw c.usage("give the ids of the vectors to delete");
      const res = await c.vector.deleteVectors({ bucket, collectionId: collection, ids: more });
      c.out.write(c.asJson ? JSON.stringify(toJson(VectorService.method.deleteVectors.output, res, { alwaysEmitImplicit: true }), null, 2) + "\n" : `deleted ${res.deletedCount} of ${more.length}\n`);
      return 0;
    }
  }
  throw c.usage(`unknown vectors command ${verb ?? ""}`);
}
