/** Buckets as the domain sees them. Times are Unix epoch milliseconds. */
import type { BucketPolicy } from "./bucket-policy";
import type { CorsRule } from "./cors";
import type { Job } from "./job";

/** The fields of a bucket a caller may set. */
export interface BucketFields {
  description: string;
  /** 0 = unlimited. */
  storageQuotaBytes: number;
  accessMode: "private";
}

/** A bucket row as stored. */
export interface BucketRow extends BucketFields {
  org: string;
  name: string;
  status: "active";
  internalSourceId: string;
  createdAt: number;
  updatedAt: number;
  /** Its CORS rules (PutBucketCors); absent when it has none. */
  cors?: CorsRule[];
  /** Its policy (SetBucketPolicy), compiled; absent when it has none. */
  policy?: BucketPolicy;
}

/** A bucket with its server-maintained aggregates. */
export interface Bucket extends BucketRow {
  objectCount: number;
  storageUsedBytes: number;
  sourceCount: number;
  ruleCount: number;
  /** Pipelines of the bucket that write an index (vector or warehouse). */
  indexCount: number;
}

/** One object found on disk when a folder bucket is adopted. */
export interface CatalogEntry {
  key: string;
  size: number;
  contentType: string;
  /** Modification time in nanoseconds. */
  version: bigint;
}

/** An object of the catalog. */
export interface StoredObject {
  key: string;
  size: number;
  etag: string;
  contentType: string;
  /**
   * User metadata (`x-amz-meta-*`), names lower-cased without the prefix; and the standard
   * headers kept with the object (Content-Encoding, Cache-Control, …) under
   * STORED_HEADER_PREFIX + their lower-cased name, which no `x-amz-meta-*` header can produce
   * (":" is not a header-name character).
   */
  metadata: Record<string, string>;
  /** Modification time of its bytes, in nanoseconds. */
  version: bigint;
  createdAt: number;
  updatedAt: number;
}

/** Marks a standard header kept in StoredObject.metadata. */
export const STORED_HEADER_PREFIX = ":";

/** The user's own metadata of an object's, without the standard headers kept with it. */
export function userMetadata(metadata: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata).filter(([k]) => !k.startsWith(STORED_HEADER_PREFIX)));
}

/** Per pipeline, the latest job of an object (GetObjectInfo). */
export type ObjectIndexStatus = Pick<Job, "pipelineId" | "pipelineName" | "jobId" | "status" | "updatedAt" | "error">;

/** A multipart upload in progress. */
export interface MultipartUpload {
  uploadId: string;
  key: string;
  contentType: string;
  metadata: Record<string, string>;
  createdAt: number;
}

/** One uploaded part of a multipart upload. */
export interface UploadedPart {
  partNumber: number;
  size: number;
  /** MD5 of the part, hex. */
  etag: string;
}
