/**
 * Collections whose vectors the caller pushes (AddVectorCollection, migration 024): their
 * rows, and the writes of their vectors. A vector is stored as a one-chunk output of the
 * collection (vector_chunks: pipeline_id = the collection's id, object_key = the vector's
 * id) with an object_outputs row naming the write, so search (vector-store.ts and the
 * in-memory index) reads it as it reads a pipeline's chunks, and a write is searchable at
 * the next search on every instance. Writes of one collection take turns (its advisory
 * lock), so an insert's check for ids already there holds until it commits.
 */
import type { Pool, PoolClient } from "pg";
import { AlreadyExists, NotFound } from "../../domain/errors";
import type { Scope } from "../../domain/job";
import { quote } from "../../domain/validate";
import { PgDb } from "./db";
import { num } from "./rows";
import { vectorHex } from "./vector-bytes";

/** A collection of pushed vectors. */
export interface ManualCollection {
  collectionId: string;
  name: string;
  description: string;
  dimensions: number;
  /** The model text queries are embedded with; empty: vector queries only. */
  embedModel: string;
  createdAt: number;
  updatedAt: number;
}

/** One pushed vector. */
export interface PushedVector {
  id: string;
  values: number[];
  content: string;
  metadata: Record<string, string>;
}

const COLUMNS = "collection_id, name, description, dimensions, embed_model, created_at, updated_at";

function toCollection(r: Record<string, unknown>): ManualCollection {
  return {
    collectionId: r.collection_id as string,
    name: r.name as string,
    description: r.description as string,
    dimensions: r.dimensions as number,
    embedModel: r.embed_model as string,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

export class CollectionStore extends PgDb {
  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  /** Creates a collection; AlreadyExists when the bucket has one of that name. */
  async collectionInsert(scope: Scope, c: ManualCollection): Promise<ManualCollection> {
    try {
      const rows = await this.q(
        `INSERT INTO vector_collections (org, bucket, collection_id, name, description, dimensions, embed_model, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING ${COLUMNS}`,
        [scope.org, scope.bucket, c.collectionId, c.name, c.description, c.dimensions, c.embedModel, c.createdAt],
      );
      return toCollection(rows[0]);
    } catch (err) {
      if (err instanceof AlreadyExists) throw new AlreadyExists(`name ${quote(c.name)}: bucket ${quote(scope.bucket)} has a collection of that name already`);
      throw err;
    }
  }

  /** The bucket's collections of pushed vectors, oldest first. */
  async collectionList(scope: Scope): Promise<ManualCollection[]> {
    const rows = await this.q(`SELECT ${COLUMNS} FROM vector_collections WHERE org = $1 AND bucket = $2 ORDER BY created_at, collection_id`, [scope.org, scope.bucket], scope.signal);
    return rows.map(toCollection);
  }

  /** Removes a collection and its vectors; the vectors removed, or undefined when there was no such collection. */
  async collectionDelete(scope: Scope, collectionId: string): Promise<number | undefined> {
    return this.tx(async (client) => {
      if (!(await this.lockCollection(client, scope, collectionId))) return undefined;
      const del = await client.query("DELETE FROM vector_chunks WHERE org = $1 AND bucket = $2 AND pipeline_id = $3", [scope.org, scope.bucket, collectionId]);
      await client.query("DELETE FROM object_outputs WHERE org = $1 AND bucket = $2 AND pipeline_id = $3", [scope.org, scope.bucket, collectionId]);
      await client.query("DELETE FROM vector_collections WHERE org = $1 AND bucket = $2 AND collection_id = $3", [scope.org, scope.bucket, collectionId]);
      return del.rowCount ?? 0;
    }, undefined);
  }

  /** The collection's turn for the rest of the transaction; false when it does not exist (any more). */
  private async lockCollection(client: PoolClient, scope: Scope, collectionId: string): Promise<boolean> {
    await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2 || '/' || $3, 2024))", [scope.org, scope.bucket, collectionId]);
    const found = await client.query("SELECT 1 FROM vector_collections WHERE org = $1 AND bucket = $2 AND collection_id = $3", [scope.org, scope.bucket, collectionId]);
    return (found.rowCount ?? 0) > 0;
  }

  /**
   * Writes vectors into a collection in one transaction: "insert" refuses (AlreadyExists,
   * nothing written) when an id is there already; "upsert" replaces what is there. `writeId`
   * names the write in object_outputs, so each instance's index reloads what it replaced.
   */
  async vectorsWrite(scope: Scope, collectionId: string, vectors: PushedVector[], mode: "insert" | "upsert", writeId: string, now: number): Promise<number> {
    const ids = vectors.map((v) => v.id);
    return this.tx(async (client) => {
      if (!(await this.lockCollection(client, scope, collectionId))) throw new NotFound(`collection ${quote(collectionId)} was deleted`);
      if (mode === "insert") {
        const there = await client.query("SELECT object_key FROM object_outputs WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 AND object_key = ANY($4::text[]) ORDER BY object_key LIMIT 5", [scope.org, scope.bucket, collectionId, ids]);
        if (there.rowCount) {
          throw new AlreadyExists(`vectors: ids ${there.rows.map((r) => quote(r.object_key)).join(", ")} are in the collection already; nothing was inserted (UpsertVectors replaces them)`);
        }
      } else {
        await client.query("DELETE FROM vector_chunks WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 AND object_key = ANY($4::text[])", [scope.org, scope.bucket, collectionId, ids]);
      }
      await client.query(
        `INSERT INTO vector_chunks (org, bucket, pipeline_id, object_key, chunk_index, content, embedding, job_id, created_at, metadata)
         SELECT $1, $2, $3, u.id, 0, u.content, decode(u.embedding, 'hex'), $4, $5, nullif(u.metadata, '{}'::jsonb)
         FROM unnest($6::text[], $7::text[], $8::text[], $9::jsonb[]) AS u(id, content, embedding, metadata)`,
        [scope.org, scope.bucket, collectionId, writeId, now, ids, vectors.map((v) => v.content), vectors.map((v) => vectorHex(v.values)), vectors.map((v) => JSON.stringify(v.metadata))],
      );
      await client.query(
        `INSERT INTO object_outputs (org, bucket, pipeline_id, object_key, job_id, source_version, updated_at)
         SELECT $1, $2, $3, id, $4, 0, $5 FROM unnest($6::text[]) AS id
         ON CONFLICT (org, bucket, pipeline_id, object_key) DO UPDATE SET job_id = EXCLUDED.job_id, updated_at = EXCLUDED.updated_at`,
        [scope.org, scope.bucket, collectionId, writeId, now, ids],
      );
      await client.query("UPDATE vector_collections SET updated_at = $4 WHERE org = $1 AND bucket = $2 AND collection_id = $3", [scope.org, scope.bucket, collectionId, now]);
      return vectors.length;
    }, 0);
  }

  /** Deletes vectors of a collection by id; how many were there. */
  async vectorsDelete(scope: Scope, collectionId: string, ids: string[], now: number): Promise<number> {
    return this.tx(async (client) => {
      if (!(await this.lockCollection(client, scope, collectionId))) throw new NotFound(`collection ${quote(collectionId)} was deleted`);
      const del = await client.query("DELETE FROM vector_chunks WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 AND object_key = ANY($4::text[])", [scope.org, scope.bucket, collectionId, ids]);
      await client.query("DELETE FROM object_outputs WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 AND object_key = ANY($4::text[])", [scope.org, scope.bucket, collectionId, ids]);
      if (del.rowCount) await client.query("UPDATE vector_collections SET updated_at = $4 WHERE org = $1 AND bucket = $2 AND collection_id = $3", [scope.org, scope.bucket, collectionId, now]);
      return del.rowCount ?? 0;
    }, 0);
  }
}
