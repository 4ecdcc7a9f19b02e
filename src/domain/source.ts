/** Sources and discoveries as the domain sees them. Times are Unix epoch milliseconds. */

/** Providers by their stored name; the wire enum is SourceProvider. */
export type ProviderName = "internal_s3" | "external_s3" | "google_drive" | "sharepoint" | "confluence" | "github";

/** The location of an external S3-compatible source (the secret is kept sealed, apart). */
export interface ExternalS3Config {
  endpoint: string;
  bucket: string;
  region: string;
  /** Empty when the source signs with a stored credential. */
  accessKeyId: string;
  /** A stored access-key credential to sign with, read at each sync (instead of its own key pair). */
  credentialId?: string;
}

/** The fields of a source a caller may set. */
export interface SourceFields {
  name: string;
  description: string;
  rootPath: string;
  providerAccount: string;
  syncIntervalSeconds: number;
  enabled: boolean;
}

/** A source row as stored. */
export interface Source extends SourceFields {
  sourceId: string;
  org: string;
  bucket: string;
  provider: ProviderName;
  external?: ExternalS3Config;
  /** The sealed secret access key (base64), '' when none. */
  secretSealed: string;
  lastSyncAt: number;
  lastSuccessAt: number;
  lastError: string;
  createdAt: number;
  updatedAt: number;
}

/** A source with the state and counts the API shows. */
export interface SourceView extends Source {
  syncing: boolean;
  totalObjects: number;
  indexedObjects: number;
  totalBytes: number;
}

export type DiscoveryState = "pending" | "running" | "completed" | "failed" | "cancelled";

/** What a discovery found so far. */
export interface DiscoveryCounts {
  scanned: number;
  newObjects: number;
  modified: number;
  unchanged: number;
  deleted: number;
  failed: number;
  dispatched: number;
}

/** One discovery of a source. */
export interface Discovery extends DiscoveryCounts {
  discoveryId: string;
  org: string;
  bucket: string;
  sourceId: string;
  state: DiscoveryState;
  fullSync: boolean;
  ruleId: string;
  checkpointKey: string;
  attempts: number;
  error: string;
  createdAt: number;
  startedAt: number;
  finishedAt: number;
}

/** One object of a source's checkpoint. */
export interface CheckpointEntry {
  key: string;
  size: number;
  etag: string;
  /** The version jobs are made for (etag, or modification time in ns). */
  version: string;
  contentType: string;
}

export const zeroCounts = (): DiscoveryCounts => ({ scanned: 0, newObjects: 0, modified: 0, unchanged: 0, deleted: 0, failed: 0, dispatched: 0 });
