/** The object catalog (what a bucket holds, by key) and multipart uploads in progress. */
import type { Pool } from "pg";
import type { Job, JobStatus, NewJob, Scope } from "../../domain/job";
import type { MultipartUpload, ObjectIndexStatus, StoredObject, UploadedPart } from "../../domain/bucket";
import { NotFound } from "../../domain/errors";
import * as SQL from "./sql";
import { PgDb } from "./db";
import { insertedJobs, jobInsertParams, num, toObject } from "./rows";

export class ObjectCatalog extends PgDb {
  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  async objectGet(scope: Scope, key: string): Promise<StoredObject | undefined> {
    const rows = await this.q(SQL.OBJECT_GET, [scope.org, scope.bucket, key], scope.signal);
    return rows[0] ? toObject(rows[0]) : undefined;
  }

  /**
   * Records an uploaded object and creates its jobs, in one transaction (one statement):
   * once it returns, both are durable. NotFound when the bucket has no row (or is being
   * deleted).
   */
  async objectPut(scope: Scope, o: StoredObject, jobs: readonly NewJob[]): Promise<Job[]> {
    const [r] = await this.q(SQL.OBJECT_PUT, [
      ...jobInsertParams(jobs),
      scope.org, scope.bucket, o.key, o.size, o.etag, o.contentType, JSON.stringify(o.metadata), o.version.toString(), o.updatedAt,
    ]);
    if (!r.bucket_found) throw new NotFound(`bucket ${JSON.stringify(scope.bucket)} not found`);
    return [...insertedJobs(jobs, r.jobs as Array<{ job_id: string; source_id: string }>).values()];
  }

  /** Keys after `after` that start with `prefix`, in byte order. */
  async objectList(scope: Scope, p: { prefix: string; after: string; limit: number }): Promise<StoredObject[]> {
    return (await this.q(SQL.OBJECT_LIST, [scope.org, scope.bucket, p.after, p.prefix, p.limit], scope.signal)).map(toObject);
  }

  /**
   * Forgets an object: its catalog row, its outputs at every destination, and its
   * unfinished jobs (cancelled). False when it was not in the catalog.
   */
  async objectDelete(scope: Scope, key: string, nowMs: number): Promise<boolean> {
    const { found, running } = await this.tx(async (client) => {
      const del = await client.query("DELETE FROM objects WHERE org = $1 AND bucket = $2 AND object_key = $3", [scope.org, scope.bucket, key]);
      for (const statement of SQL.OBJECT_DELETE_OUTPUTS) await client.query(statement, [scope.org, scope.bucket, key]);
      const jobs = await client.query(SQL.OBJECT_CANCEL_JOBS, [scope.org, scope.bucket, key, nowMs]);
      const running = jobs.rows.filter((r) => r.status === "processing").map((r) => r.job_id as string);
      for (const id of running) await client.query("SELECT pg_notify($1, $2)", [SQL.CHANNEL_CANCEL, id]);
      return { found: (del.rowCount ?? 0) > 0, running };
    }, { found: false, running: [] as string[] });
    return found || running.length > 0;
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
    const r = rows[0];
    return r ? { uploadId: r.upload_id, key: r.object_key, contentType: r.content_type, metadata: r.metadata ?? {}, createdAt: num(r.created_at) } : undefined;
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

  /** Forgets an upload and its parts; false when there was none. */
  async mpuDelete(uploadId: string): Promise<boolean> {
    return (await this.exec("DELETE FROM multipart_uploads WHERE upload_id = $1", [uploadId])) > 0;
  }
}
