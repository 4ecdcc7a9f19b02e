/**
 * The vector side of PostgreSQL: a bucket's engine row, each collection's version (moved
 * by every write of its chunks: a folded row plus deltas, migration 021), the current output of each object of a collection, the
 * chunks of some objects, full-text ranking for hybrid search, and chunk contents for the
 * results. PostgreSQL stays the source of truth; search/index.ts keeps what it needs of it
 * in memory. Shares the repository's pool.
 */
import type { Pool } from "pg";
import type { Scope } from "../../domain/job";
import { PgDb } from "./db";
import { copyOutBinary } from "./copy-out";
import { mapPgError } from "./pg-errors";
import { num } from "./rows";
import { vectorOf } from "./vector-bytes";
import * as SQL from "./sql";

export interface EngineRow {
  engineId: string;
  mode: string;
  createdAt: number;
  updatedAt: number;
}

/** Where a chunk lies, and its text when asked for. */
export interface ChunkPlaceRow {
  content: string;
  page: number;
  heading: string;
  charStart: number;
  charEnd: number;
}

/** A chunk of a collection, by primary key. */
export interface ChunkRef {
  pipelineId: string;
  key: string;
  chunkIndex: number;
}

/** The key of a chunk in the maps answered here. */
export const chunkRefKey = (pipelineId: string, key: string, chunkIndex: number): string => `${pipelineId}\u0000${key}\u0000${chunkIndex}`;

/** One object's chunks as loaded: chunk indexes and their vectors, row after row. */
export interface ObjectChunks {
  key: string;
  jobId: string;
  indexes: number[];
  vectors: Float32Array[];
}

const placeColumns = (withContent: boolean) => `${withContent ? "c.content" : "''"} AS content, c.page, c.heading, c.char_start, c.char_end`;

function toPlace(r: Record<string, unknown>): ChunkPlaceRow {
  return { content: r.content as string, page: r.page as number, heading: r.heading as string, charStart: r.char_start as number, charEnd: r.char_end as number };
}

export class VectorStore extends PgDb {
  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  async engineGet(scope: Scope): Promise<EngineRow | undefined> {
    const rows = await this.q("SELECT engine_id, mode, created_at, updated_at FROM vector_engines WHERE org = $1 AND bucket = $2", [scope.org, scope.bucket], scope.signal);
    return rows[0] ? { engineId: rows[0].engine_id, mode: rows[0].mode, createdAt: num(rows[0].created_at), updatedAt: num(rows[0].updated_at) } : undefined;
  }

  /** Creates the engine row unless there is one; returns it and whether it was created. */
  async engineEnsure(scope: Scope, engineId: string, now: number): Promise<{ engine: EngineRow; created: boolean }> {
    const rows = await this.q(
      "INSERT INTO vector_engines (org, bucket, engine_id, mode, created_at, updated_at) VALUES ($1, $2, $3, 'auto', $4, $4) ON CONFLICT (org, bucket) DO NOTHING RETURNING engine_id",
      [scope.org, scope.bucket, engineId, now],
    );
    const engine = await this.engineGet(scope);
    if (!engine) throw new Error("the engine row vanished right after it was written");
    return { engine, created: rows.length > 0 };
  }

  /** Removes the engine row; false when there was none. */
  async engineDelete(scope: Scope): Promise<boolean> {
    return (await this.exec("DELETE FROM vector_engines WHERE org = $1 AND bucket = $2", [scope.org, scope.bucket])) > 0;
  }

  /** Folds the collections' version deltas (one instance at a time); false when another is folding. */
  versionsCompact(): Promise<boolean> {
    return this.foldDeltas(SQL.COLLECTION_VERSIONS_LOCK, SQL.COLLECTION_VERSIONS_COMPACT);
  }

  /** The collections' versions (0 for one never written). */
  async versions(scope: Scope, pipelineIds: string[]): Promise<Map<string, number>> {
    const rows = await this.q(SQL.COLLECTION_VERSIONS, [scope.org, scope.bucket, pipelineIds], scope.signal);
    return new Map(rows.map((r) => [r.pipeline_id as string, num(r.version)]));
  }

  /** Per object of a collection, the job whose chunks are current. */
  async outputs(scope: Scope, pipelineId: string): Promise<Map<string, string>> {
    const rows = await this.q("SELECT object_key, job_id FROM object_outputs WHERE org = $1 AND bucket = $2 AND pipeline_id = $3", [scope.org, scope.bucket, pipelineId], scope.signal);
    return new Map(rows.map((r) => [r.object_key as string, r.job_id as string]));
  }

  /**
   * The chunks of some objects of a collection, for loading the search index: read with
   * COPY's binary format, so each vector's stored bytes travel as they are (through the text
   * protocol a bytea becomes hex, twice the bytes, encoded by PostgreSQL and decoded here). A
   * row names its object by its place in `keys`, so no text crosses in the server's encoding.
   */
  async chunksOf(scope: Scope, pipelineId: string, keys: string[]): Promise<ObjectChunks[]> {
    if (keys.length === 0) return [];
    const out: Array<ObjectChunks | undefined> = new Array(keys.length);
    await this.withClient(async (client) => {
      const lit = (v: string) => client.escapeLiteral(v);
      const select = `SELECT k.n::int4, c.job_id, c.chunk_index, c.embedding
        FROM unnest(ARRAY[${keys.map(lit).join(",")}]::text[]) WITH ORDINALITY AS k(key, n)
        JOIN vector_chunks c ON c.org = ${lit(scope.org)} AND c.bucket = ${lit(scope.bucket)} AND c.pipeline_id = ${lit(pipelineId)} AND c.object_key = k.key
        ORDER BY k.n, c.chunk_index`;
      try {
        await copyOutBinary(client, select, (row) => {
          const i = (row[0] as Buffer).readInt32BE(0) - 1;
          const o = (out[i] ??= { key: keys[i], jobId: (row[1] as Buffer).toString("latin1"), indexes: [], vectors: [] });
          o.indexes.push((row[2] as Buffer).readInt32BE(0));
          o.vectors.push(row[3] ? vectorOf(row[3]) : new Float32Array(0));
        });
      } catch (err) {
        throw mapPgError(err);
      }
    }, scope.signal);
    return out.filter((o): o is ObjectChunks => o !== undefined);
  }

  /** Chunks and objects of each collection, exact. */
  async counts(scope: Scope, pipelineIds: string[]): Promise<Map<string, { chunks: number; objects: number }>> {
    const rows = await this.q(
      `SELECT pipeline_id, count(*) AS chunks, count(DISTINCT object_key) AS objects FROM vector_chunks
       WHERE org = $1 AND bucket = $2 AND pipeline_id = ANY($3::text[]) GROUP BY pipeline_id`,
      [scope.org, scope.bucket, pipelineIds],
      scope.signal,
    );
    return new Map(rows.map((r) => [r.pipeline_id as string, { chunks: num(r.chunks), objects: num(r.objects) }]));
  }

  /**
   * Full-text ranking of the chunks of some collections: each chunk scores the sum of the
   * inverse document frequencies (BM25's) of the query terms it holds, so a rare exact term
   * outranks common ones. The document frequencies first (one count per term), then the
   * chunks matching any term (through the GIN index), scored. Best first. Terms are letters
   * and digits only (they go in as parameters all the same).
   */
  async textRanking(scope: Scope, pipelineIds: string[], terms: string[], limit: number, keyPrefix: string, chunks?: number): Promise<Array<{ pipelineId: string; key: string; chunkIndex: number }>> {
    if (terms.length === 0) return [];
    const where = "org = $1 AND bucket = $2 AND pipeline_id = ANY($3::text[])";
    const base = [scope.org, scope.bucket, pipelineIds];
    // Each count is answered from an index (the primary key's prefix, the GIN index of the
    // terms) and stops at COMMON: past it a term is common, its idf is taken at the cap, and
    // it only adds to the score of chunks a rarer term found (matching on it would mean
    // scoring most of the collection).
    const COMMON = 2000;
    // The collections' size: from the caller when it knows it (the index holds it), counted otherwise.
    const [total, ...dfs] = await Promise.all([
      chunks !== undefined ? [{ n: chunks }] : this.q(`SELECT count(*) AS n FROM vector_chunks WHERE ${where}`, base, scope.signal),
      ...terms.map((t) =>
        this.q(`SELECT count(*) AS n FROM (SELECT 1 FROM vector_chunks WHERE ${where} AND content_tsv @@ to_tsquery('simple', $4) LIMIT ${COMMON}) AS m`, [...base, t], scope.signal),
      ),
    ]);
    const n = num(total[0]?.n);
    const weighted = terms.map((t, i) => ({ t, df: num(dfs[i][0]?.n) })).filter((x) => x.df > 0 && x.df <= Math.max(1, n / 2));
    const matchers = weighted.filter((x) => x.df < COMMON);
    if (matchers.length === 0) return [];
    const values: unknown[] = [...base, keyPrefix, limit, matchers.map((x) => x.t).join(" | ")];
    const score = weighted
      .map((x) => {
        values.push(x.t, Math.log(1 + (n - x.df + 0.5) / (x.df + 0.5)));
        return `CASE WHEN content_tsv @@ to_tsquery('simple', $${values.length - 1}) THEN $${values.length}::float8 ELSE 0 END`;
      })
      .join(" + ");
    const rows = await this.q(
      `SELECT pipeline_id, object_key, chunk_index, ${score} AS score FROM vector_chunks
       WHERE ${where} AND content_tsv @@ to_tsquery('simple', $6) AND starts_with(object_key, $4)
       ORDER BY score DESC, object_key, chunk_index LIMIT $5`,
      values,
      scope.signal,
    );
    return rows.map((r) => ({ pipelineId: r.pipeline_id, key: r.object_key, chunkIndex: r.chunk_index }));
  }

  /** Some chunks' rows by primary key, with the given columns of `vector_chunks` (as `c`). */
  private async lookup(scope: Scope, refs: ChunkRef[], columns: string): Promise<Array<Record<string, any>>> { // eslint-disable-line @typescript-eslint/no-explicit-any
    if (refs.length === 0) return [];
    return this.q(
      // LATERAL: one primary-key lookup per chunk, never a scan of the collection.
      `SELECT c.pipeline_id, c.object_key, c.chunk_index, ${columns}
       FROM unnest($3::text[], $4::text[], $5::int[]) AS r(p, k, i)
       CROSS JOIN LATERAL (SELECT * FROM vector_chunks v
                           WHERE v.org = $1 AND v.bucket = $2 AND v.pipeline_id = r.p AND v.object_key = r.k AND v.chunk_index = r.i) AS c`,
      [scope.org, scope.bucket, refs.map((r) => r.pipelineId), refs.map((r) => r.key), refs.map((r) => r.chunkIndex)],
      scope.signal,
    );
  }

  /** Where some chunks lie (and their text, when asked for), keyed `pipeline \0 key \0 index`. */
  async places(scope: Scope, refs: ChunkRef[], withContent: boolean): Promise<Map<string, ChunkPlaceRow>> {
    const rows = await this.lookup(scope, refs, placeColumns(withContent));
    return new Map(rows.map((r) => [chunkRefKey(r.pipeline_id, r.object_key, r.chunk_index), toPlace(r)]));
  }

  /** Some chunks' vectors and where they lie (their text too, when asked for), keyed as places are: a search's rerank and its results' places in one read. */
  async embeddings(scope: Scope, refs: ChunkRef[], withContent = false): Promise<Map<string, { vector: Float32Array; place: ChunkPlaceRow }>> {
    const rows = await this.lookup(scope, refs, `c.embedding, ${placeColumns(withContent)}`);
    return new Map(rows.map((r) => [chunkRefKey(r.pipeline_id, r.object_key, r.chunk_index), { vector: vectorOf(r.embedding as Buffer), place: toPlace(r) }]));
  }

  /** Keys of the bucket's objects whose user metadata holds every pair of `metadata`, and ids of pushed vectors whose metadata does. */
  async keysWithMetadata(scope: Scope, metadata: Record<string, string>): Promise<Set<string>> {
    const rows = await this.q(
      `SELECT object_key FROM objects WHERE org = $1 AND bucket = $2 AND metadata @> $3::jsonb
       UNION SELECT object_key FROM vector_chunks WHERE org = $1 AND bucket = $2 AND metadata @> $3::jsonb`,
      [scope.org, scope.bucket, JSON.stringify(metadata)],
      scope.signal,
    );
    return new Set(rows.map((r) => r.object_key as string));
  }

  /** Removes a collection's chunks and its outputs' records; returns the chunks removed. */
  async deleteCollection(scope: Scope, pipelineId: string): Promise<number> {
    return this.tx(async (client) => {
      const del = await client.query("DELETE FROM vector_chunks WHERE org = $1 AND bucket = $2 AND pipeline_id = $3", [scope.org, scope.bucket, pipelineId]);
      await client.query("DELETE FROM object_outputs WHERE org = $1 AND bucket = $2 AND pipeline_id = $3", [scope.org, scope.bucket, pipelineId]);
      return del.rowCount ?? 0;
    }, 0);
  }
}
