/** The object catalog (what a bucket holds, by key) and multipart uploads in progress. */
import type { Pool, PoolClient, QueryResultRow } from "pg";
import type { Job, JobStatus, NewJob, Scope } from "../../domain/job";
import type { MultipartUpload, ObjectIndexStatus, StoredObject, UploadedPart } from "../../domain/bucket";
import { NotFound } from "../../domain/errors";
import * as SQL from "./sql";
import { PgDb } from "./db";
import { mapPgError } from "./pg-errors";
import { KeyedTurns } from "../keyed-turns";
import type { ObjectStore } from "../object-store";
import { insertedJobs, jobInsertParams, num, toObject } from "./rows";

/** Objects' bytes removed at once by objectDeleteMany. */
const REMOVE_LANES = 8;

/**
 * Removes what the objects `keys` left behind — their outputs at every destination — and
 * cancels their unfinished jobs (pending at once, processing by a request the worker
 * hears), on `c` inside the caller's transaction. Answers the keys that had a job running.
 */
export async function forgetOutputs(c: PoolClient, scope: Pick<Scope, "org" | "bucket">, keys: readonly string[], nowMs: number): Promise<string[]> {
  for (const statement of SQL.OBJECT_DELETE_OUTPUTS) await c.query(statement, [scope.org, scope.bucket, keys]);
  const jobs = await c.query(SQL.OBJECT_CANCEL_JOBS, [scope.org, scope.bucket, keys, nowMs]);
  const running = jobs.rows.filter((r) => r.status === "processing");
  if (running.length > 0) await c.query("SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id", [SQL.CHANNEL_CANCEL, running.map((r) => r.job_id as string)]);
  return running.map((r) => r.object_key as string);
}

/** An upload placed (objectPut's `place`): its row, its jobs, and what the store says of its bytes. */
export interface PlacedUpload {
  object: StoredObject;
  jobs: readonly NewJob[];
  /** Takes the bytes back out (see Placed.undo). */
  undo?: () => Promise<void>;
  /** See Placed.stillPlaced. */
  stillPlaced?: () => Promise<boolean>;
}

export class ObjectCatalog extends PgDb {
  /** Writes of one key in this process, one at a time (inTurn). */
  private readonly turns = new KeyedTurns();

  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  async objectGet(scope: Scope, key: string): Promise<StoredObject | undefined> {
    const rows = await this.q(SQL.OBJECT_GET, [scope.org, scope.bucket, key], scope.signal);
    return rows[0] ? toObject(rows[0]) : undefined;
  }

  /**
   * Sets one entry of an object's metadata (`value` undefined removes it) without touching
   * its bytes, version or dates (PutObjectTagging); false when there is no such object.
   */
  async objectMetadataSet(scope: Scope, key: string, name: string, value: string | undefined): Promise<boolean> {
    const changed = await this.exec(
      `UPDATE objects SET metadata = CASE WHEN $5::text IS NULL THEN metadata - $4::text ELSE metadata || jsonb_build_object($4::text, $5::text) END
       WHERE org = $1 AND bucket = $2 AND object_key = $3`,
      [scope.org, scope.bucket, key, name, value ?? null],
    );
    return changed > 0;
  }

  /**
   * Places an upload's bytes and records the object and its jobs in one turn of the key
   * (inTurn): two uploads of one key, on any instances, land their bytes and their rows in
   * the same order — else the catalog's ETag, size and version could describe bytes no
   * longer there. `place` puts the bytes where readers find them and answers the row and
   * the jobs to write; `current()` reads the key's row as the turn sees it (a conditional
   * write's check). Row and jobs go in one statement (its own transaction), which also
   * lets the lock go: once this returns, both are committed. NotFound when the bucket has no
   * row (or is being deleted).
   *
   * A store whose placement is the whole upload (S3: placesQuickly false) places without
   * the lock, and answers `stillPlaced`: the row is written under the lock, and only while
   * the key's bytes are still these; else a later upload, maybe on another instance, has
   * replaced them and writes its own row (this one then answers no jobs).
   */
  async objectPut(
    scope: Scope,
    key: string,
    place: (current: () => Promise<StoredObject | undefined>) => Promise<PlacedUpload>,
    store: Pick<ObjectStore, "placesQuickly">,
  ): Promise<Job[]> {
    const r = await this.inTurn(scope, [key], store.placesQuickly, async (client, released) => {
      // A write that looked at the key's row lets the lock go only once its own row is
      // committed (below, after OBJECT_PUT), so the next writer's look sees it.
      let looked = false;
      const current = async () => {
        looked = true;
        const [row] = await this.rowsOn(client, SQL.OBJECT_GET, [scope.org, scope.bucket, key]);
        return row ? toObject(row) : undefined;
      };
      const placed = await place(current);
      const stillPlaced = placed.stillPlaced;
      if (client || !stillPlaced) return this.record(scope, key, placed, client, client !== undefined && !looked, released);
      return this.locked(scope, [key], async (c, rel) => ((await stillPlaced()) ? this.record(scope, key, placed, c, true, rel) : { found: true, jobs: [], inserted: [] }));
    });
    if (!r.found) throw new NotFound(`bucket ${JSON.stringify(scope.bucket)} not found`);
    return [...insertedJobs(r.jobs, r.inserted).values()];
  }

  /**
   * Writes a placed upload's row and jobs (OBJECT_PUT) on `client`, or through the pool when
   * no lock is held; with `letGo` the statement itself lets the key's lock go (`released`).
   */
  private async record(scope: Scope, key: string, placed: PlacedUpload, client: PoolClient | undefined, letGo: boolean, released: () => void) {
    const { object: o, jobs, undo } = placed;
    const values = [
      ...jobInsertParams(jobs),
      scope.org, scope.bucket, key, o.size, o.etag, o.contentType, JSON.stringify(o.metadata), o.version.toString(), o.updatedAt, letGo,
    ];
    const [row] = await this.rowsOn(client, SQL.OBJECT_PUT, values);
    if (letGo) released();
    if (!row.bucket_found && undo) {
      // The bucket went away while the bytes were placed: they go too, in the key's turn
      // (its lock taken again when OBJECT_PUT let it go), or a bucket made again under the
      // name would adopt them.
      const relock = client && letGo;
      if (relock) await client.query(SQL.OBJECT_LOCK, [scope.org, scope.bucket, [key]]);
      try {
        await undo();
      } finally {
        if (relock) await client.query(SQL.OBJECT_UNLOCK, [scope.org, scope.bucket, [key]]);
      }
    }
    return { found: row.bucket_found as boolean, jobs, inserted: row.jobs as Array<{ job_id: string; source_id: string }> };
  }

  /** A statement's rows, on `client` (one holding an object's lock) or through the pool. */
  private async rowsOn(client: PoolClient | undefined, text: string, values: unknown[]): Promise<QueryResultRow[]> {
    if (!client) return this.q(text, values);
    return (await client.query(text, values).catch((err: unknown) => Promise.reject(mapPgError(err)))).rows;
  }

  /** Resolves once the writes of the key this process has begun have ended (their rows written). */
  writesEnded(scope: Scope, key: string): Promise<void> {
    return this.turns.ended([scope.org, scope.bucket, key].join("\u0000"));
  }

  /**
   * Runs `fn` in the turn of the objects `keys` (one, or a DeleteObjects batch): after every
   * earlier write of each key in this process (KeyedTurns, so waiting writes of a key hold no
   * connection), and when `lock` holding their locks across instances (OBJECT_LOCK: session
   * advisory locks on the client `fn` is given for its statements); without, `fn` gets no
   * client and none is held. `fn` calls `released()` once a statement of its own has let the
   * lock go (OBJECT_PUT does, for its one key); otherwise they are let go after `fn`. No
   * signal: once bytes are placed their row is written, whoever left. A client that cannot
   * let them go is dropped, locks and all.
   */
  private inTurn<T>(scope: Scope, keys: readonly string[], lock: boolean, fn: (client: PoolClient | undefined, released: () => void) => Promise<T>): Promise<T> {
    const turns = keys.map((key) => [scope.org, scope.bucket, key].join("\u0000"));
    return this.turns.runAll(turns, () => (lock ? this.locked(scope, keys, fn) : fn(undefined, () => undefined)));
  }

  /** Runs `fn` holding the locks of `keys` across instances (OBJECT_LOCK) on the client it is given; see inTurn. */
  private locked<T>(scope: Scope, keys: readonly string[], fn: (client: PoolClient, released: () => void) => Promise<T>): Promise<T> {
    const args = [scope.org, scope.bucket, keys];
    return this.withClient(async (client, markBroken) => {
      await client.query(SQL.OBJECT_LOCK, args);
      let held = true;
      try {
        return await fn(client, () => (held = false));
      } finally {
        // A statement that failed after letting it go finds none here, and says so.
        if (held) await client.query(SQL.OBJECT_UNLOCK, args).catch((err: Error) => markBroken(err));
      }
    });
  }

  /** Keys after `after` that start with `prefix`, in byte order. */
  async objectList(scope: Scope, p: { prefix: string; after: string; limit: number }): Promise<StoredObject[]> {
    return (await this.q(SQL.OBJECT_LIST, [scope.org, scope.bucket, p.after, p.prefix, p.limit], scope.signal)).map(toObject);
  }

  /**
   * Forgets an object: its catalog row, its outputs at every destination, and its
   * unfinished jobs (cancelled), in one transaction; then its bytes in `store` — all in one
   * turn of the key, as objectPut. False when there was neither a row nor bytes.
   */
  async objectDelete(scope: Scope, key: string, nowMs: number, store: Pick<ObjectStore, "remove">): Promise<boolean> {
    return (await this.objectDeleteMany(scope, [key], nowMs, store)).has(key);
  }

  /**
   * objectDelete of several keys at once (DeleteObjects): one turn of them all, one
   * transaction — a transaction per key waited on the last one's commit (each bumps the
   * version of the collections it had chunks in). Answers the keys that had a row, a job
   * running or bytes.
   */
  async objectDeleteMany(scope: Scope, keys: readonly string[], nowMs: number, store: Pick<ObjectStore, "remove">): Promise<Set<string>> {
    // The locks across instances whatever the store: an S3 store's upload writes its row
    // under them once placed (objectPut), so the removal of its bytes must not fall between.
    return this.inTurn(scope, keys, true, async (client) => {
      const found = await this.txOn(client!, async (c) => { // with the locks, inTurn gives a client
        const del = await c.query("DELETE FROM objects WHERE org = $1 AND bucket = $2 AND object_key = ANY($3::text[]) RETURNING object_key", [scope.org, scope.bucket, keys]);
        const running = await forgetOutputs(c, scope, keys, nowMs);
        return new Set<string>([...del.rows.map((r) => r.object_key as string), ...running]);
      }, new Set<string>());
      // Their bytes, a few at once (an S3 store's is a request each).
      const unique = [...new Set(keys)];
      let next = 0;
      const lane = async () => {
        for (let i = next++; i < unique.length; i = next++) if (await store.remove(scope, unique[i])) found.add(unique[i]);
      };
      await Promise.all(Array.from({ length: Math.min(REMOVE_LANES, unique.length) }, lane));
      return found;
    });
  }

  /** Per pipeline, the latest job of an object. */
  async objectIndexStatus(scope: Scope, key: string): Promise<ObjectIndexStatus[]> {
    const rows = await this.q(SQL.OBJECT_INDEX_STATUS, [scope.org, scope.bucket, key], scope.signal);
    return rows.map((r) => ({ pipelineId: r.pipeline_id, pipelineName: r.pipeline_name, jobId: r.job_id, status: r.status as JobStatus, updatedAt: num(r.updated_at), error: r.error }));
  }

  async mpuCreate(scope: Scope, u: MultipartUpload): Promise<void> {
    await this.q(
      "INSERT INTO multipart_uploads (upload_id, org, bucket, object_key, content_type, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
      [u.uploadId, scope.org, scope.bucket, u.key, u.contentType, JSON.stringify(u.metadata), u.createdAt],
    );
  }

  async mpuGet(scope: Scope, uploadId: string): Promise<MultipartUpload | undefined> {
    const rows = await this.q("SELECT upload_id, object_key, content_type, metadata, created_at FROM multipart_uploads WHERE upload_id = $1 AND org = $2 AND bucket = $3", [uploadId, scope.org, scope.bucket]);
    return rows[0] ? toUpload(rows[0]) : undefined;
  }

  async mpuPartPut(uploadId: string, part: UploadedPart, nowMs: number): Promise<void> {
    await this.q(
      `INSERT INTO multipart_parts (upload_id, part_number, size, etag, updated_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (upload_id, part_number) DO UPDATE SET size = EXCLUDED.size, etag = EXCLUDED.etag, updated_at = EXCLUDED.updated_at`,
      [uploadId, part.partNumber, part.size, part.etag, nowMs],
    );
  }

  async mpuParts(uploadId: string): Promise<UploadedPart[]> {
    const rows = await this.q("SELECT part_number, size, etag FROM multipart_parts WHERE upload_id = $1 ORDER BY part_number", [uploadId]);
    return rows.map((r) => ({ partNumber: r.part_number as number, size: num(r.size), etag: r.etag as string }));
  }

  /** A bucket's uploads in progress under `prefix`, by key then upload id, after (key, id) `after`; at most `limit`. */
  async mpuList(scope: Scope, p: { prefix: string; after: [string, string]; limit: number }): Promise<MultipartUpload[]> {
    const rows = await this.q(
      `SELECT upload_id, object_key, content_type, metadata, created_at FROM multipart_uploads
       WHERE org = $1 AND bucket = $2 AND starts_with(object_key, $3) AND (object_key, upload_id) > ($4, $5)
       ORDER BY object_key, upload_id LIMIT $6`,
      [scope.org, scope.bucket, p.prefix, p.after[0], p.after[1], p.limit],
      scope.signal,
    );
    return rows.map(toUpload);
  }

  /** Forgets an upload and its parts; false when there was none. */
  async mpuDelete(uploadId: string): Promise<boolean> {
    return (await this.exec("DELETE FROM multipart_uploads WHERE upload_id = $1", [uploadId])) > 0;
  }
}

function toUpload(r: QueryResultRow): MultipartUpload {
  return { uploadId: r.upload_id, key: r.object_key, contentType: r.content_type, metadata: r.metadata ?? {}, createdAt: num(r.created_at) };
}
