/**
 * The vector side of PostgreSQL: a bucket's engine row, each collection's version (bumped
 * by every write of its chunks), the current output of each object of a collection, the
 * chunks of some objects, full-text ranking for hybrid search, and chunk contents for the
 * results. PostgreSQL stays the source of truth; search/index.ts keeps what it needs of it
 * in memory. Shares the repository's pool.
 */
import type { Pool } from "pg";
import type { Scope } from "../../domain/job";
import { PgDb } from "./db";
import { num } from "./rows";

export interface EngineRow {
  engineId: string;
  mode: string;
  createdAt: number;
  updatedAt: number;
}

/** One object's chunks as loaded: chunk indexes and their vectors, row after row. */
export interface ObjectChunks {
  key: string;
  jobId: string;
  indexes: number[];
  vectors: number[][];
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

  /** The collections' versions (0 for one never written). */
  async versions(scope: Scope, pipelineIds: string[]): Promise<Map<string, number>> {
    const rows = await this.q("SELECT pipeline_id, version FROM collection_versions WHERE org = $1 AND bucket = $2 AND pipeline_id = ANY($3::text[])", [scope.org, scope.bucket, pipelineIds], scope.signal);
    return new Map(rows.map((r) => [r.pipeline_id as string, num(r.version)]));
  }

  /** Per object of a collection, the job whose chunks are current. */
  async outputs(scope: Scope, pipelineId: string): Promise<Map<string, string>> {
    const rows = await this.q("SELECT object_key, job_id FROM object_outputs WHERE org = $1 AND bucket = $2 AND pipeline_id = $3", [scope.org, scope.bucket, pipelineId], scope.signal);
    return new Map(rows.map((r) => [r.object_key as string, r.job_id as string]));
  }

  /** The chunks of some objects of a collection. */
  async chunksOf(scope: Scope, pipelineId: string, keys: string[]): Promise<ObjectChunks[]> {
    const rows = await this.q(
      `SELECT object_key, job_id, chunk_index, embedding FROM vector_chunks
       WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 AND object_key = ANY($4::text[]) ORDER BY object_key, chunk_index`,
      [scope.org, scope.bucket, pipelineId, keys],
      scope.signal,
    );
    const out = new Map<string, ObjectChunks>();
    for (const r of rows) {
      let o = out.get(r.object_key);
      if (!o) out.set(r.object_key, (o = { key: r.object_key, jobId: r.job_id, indexes: [], vectors: [] }));
      o.indexes.push(r.chunk_index);
      o.vectors.push(r.embedding as number[]);
    }
    return [...out.values()];
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
   * outranks common ones. Best first.
   */
  async textRanking(scope: Scope, pipelineIds: string[], terms: string[], limit: number, keyPrefix: string): Promise<Array<{ pipelineId: string; key: string; chunkIndex: number }>> {
    if (terms.length === 0) return [];
    const rows = await this.q(
      `WITH scope AS (
         SELECT pipeline_id, object_key, chunk_index, content_tsv FROM vector_chunks
         WHERE org = $1 AND bucket = $2 AND pipeline_id = ANY($3::text[])
       ), n AS (SELECT count(*)::float8 AS n FROM scope),
       t AS (SELECT to_tsquery('simple', term) AS q FROM unnest($4::text[]) AS term),
       w AS (SELECT t.q, ln(1 + (n.n - df.df + 0.5) / (df.df + 0.5)) AS idf
             FROM t CROSS JOIN n CROSS JOIN LATERAL (SELECT count(*)::float8 AS df FROM scope WHERE scope.content_tsv @@ t.q) AS df
             WHERE df.df > 0)
       SELECT s.pipeline_id, s.object_key, s.chunk_index, sum(w.idf) AS score
       FROM scope s JOIN w ON s.content_tsv @@ w.q
       WHERE starts_with(s.object_key, $6)
       GROUP BY s.pipeline_id, s.object_key, s.chunk_index
       ORDER BY score DESC, s.object_key, s.chunk_index LIMIT $5`,
      [scope.org, scope.bucket, pipelineIds, terms, limit, keyPrefix],
      scope.signal,
    );
    return rows.map((r) => ({ pipelineId: r.pipeline_id, key: r.object_key, chunkIndex: r.chunk_index }));
  }

  /** The text of some chunks, keyed `pipeline \0 key \0 index`. */
  async contents(scope: Scope, refs: Array<{ pipelineId: string; key: string; chunkIndex: number }>): Promise<Map<string, string>> {
    if (refs.length === 0) return new Map();
    const rows = await this.q(
      `SELECT c.pipeline_id, c.object_key, c.chunk_index, c.content FROM vector_chunks c
       JOIN unnest($3::text[], $4::text[], $5::int[]) AS r(p, k, i) ON c.pipeline_id = r.p AND c.object_key = r.k AND c.chunk_index = r.i
       WHERE c.org = $1 AND c.bucket = $2`,
      [scope.org, scope.bucket, refs.map((r) => r.pipelineId), refs.map((r) => r.key), refs.map((r) => r.chunkIndex)],
      scope.signal,
    );
    return new Map(rows.map((r) => [`${r.pipeline_id}\u0000${r.object_key}\u0000${r.chunk_index}`, r.content as string]));
  }

  /** Keys of the bucket's objects whose user metadata holds every pair of `metadata`. */
  async keysWithMetadata(scope: Scope, metadata: Record<string, string>): Promise<Set<string>> {
    const rows = await this.q("SELECT object_key FROM objects WHERE org = $1 AND bucket = $2 AND metadata @> $3::jsonb", [scope.org, scope.bucket, JSON.stringify(metadata)], scope.signal);
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
