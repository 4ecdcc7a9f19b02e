import type { Logger } from "../log";
import type { ObjectStore } from "../storage/object-store";
import type { VectorIndex } from "../search/vector-index";
import type { Embedder } from "../worker/embedder";
import type { Repository } from "../storage/repository";
import type { SecretBox } from "../storage/secrets";
import type { JobHub } from "./job-hub";
import type { UrlPolicy } from "../domain/url-policy";

/** What the service implementations depend on. */
export interface ServiceDeps {
  repo: Repository;
  objects: ObjectStore;
  /** Current time in Unix epoch milliseconds. */
  now: () => number;
  /** Signs presigned object URLs (GetObjectUrl). */
  secrets?: SecretBox;
  /** The base URL clients reach the HTTP port at (K3_PUBLIC_URL), for the URLs we hand out. */
  publicUrl?: () => string;
  /** Tells this process's discovery runner (if any) that a discovery was created. */
  discoveryCreated?: () => void;
  /** This process's in-memory vector index (search). */
  vectorIndex?: VectorIndex;
  /** The embedder a pipeline's options select (search embeds query texts with it). */
  embedderFor?: (options: Readonly<Record<string, string>>) => Embedder;
  /** The remote embedder's default model, when one is configured. */
  embeddingModel?: string;
  /** This process's fan-out of job events (watches and long polls). */
  hub?: JobHub;
  /** Webhook URL policy (K3_WEBHOOK_ALLOW). */
  webhooks?: UrlPolicy;
  /** External S3 sources' endpoint policy (K3_SOURCE_ALLOW). */
  sourceEndpoints?: UrlPolicy;
  /** The process's logger: ListIngestJobLogs reads the lines it keeps. */
  log?: Logger;
}
