/**
 * Which object store holds a source's objects: the bucket's own store (folder or S3
 * upstream) for its internal source, or a signed client of the external S3-compatible
 * bucket, rooted at the source's root path, with the secret unsealed only in memory. The
 * worker asks it for each job; discoveries for each scan. Stores of external sources are
 * cached per source version (updated_at).
 */
import type { UrlPolicy } from "../domain/url-policy";
import type { Scope } from "../domain/job";
import type { Source } from "../domain/source";
import type { ObjectStore } from "../storage/object-store";
import type { SyncStore } from "../storage/postgres/sync-store";
import { createS3ObjectStore } from "../storage/s3-object-store";
import type { SecretBox } from "../storage/secrets";

/** A root path as a key prefix: no leading "/", a trailing "/" when not empty. */
export function rootPrefix(rootPath: string): string {
  const p = rootPath.replace(/^\/+/, "");
  return p === "" || p.endsWith("/") ? p : `${p}/`;
}

export interface SourceObjects {
  /** The store of a source's objects. */
  storeFor(s: Source): ObjectStore;
  /** The store a job reads its object from; undefined when its source is gone. */
  forJob(job: Scope & { sourceId: string }): Promise<ObjectStore | undefined>;
}

export function createSourceObjects(deps: { sync: SyncStore; objects: ObjectStore; secrets: SecretBox; dataDir: string; endpoints: UrlPolicy }): SourceObjects {
  const stores = new Map<string, { updatedAt: number; store: ObjectStore }>();
  const sources = new Map<string, { at: number; source: Source | undefined }>();

  function storeFor(s: Source): ObjectStore {
    if (s.provider !== "external_s3" || !s.external) return deps.objects;
    const hit = stores.get(s.sourceId);
    if (hit && hit.updatedAt === s.updatedAt) return hit.store;
    const prefix = rootPrefix(s.rootPath);
    const store = createS3ObjectStore({
      ...s.external,
      region: s.external.region || "us-east-1",
      secretAccessKey: s.secretSealed ? deps.secrets.open(Buffer.from(s.secretSealed, "base64")) : "",
      dataDir: deps.dataDir,
      prefixOf: () => prefix,
      endpoints: deps.endpoints,
    });
    if (stores.size > 1000) stores.clear();
    stores.set(s.sourceId, { updatedAt: s.updatedAt, store });
    return store;
  }

  return {
    storeFor,
    async forJob(job) {
      if (job.sourceId === "") return deps.objects;
      let hit = sources.get(job.sourceId);
      if (!hit || Date.now() - hit.at > 5000) {
        hit = { at: Date.now(), source: await deps.sync.sourceById(job.sourceId) };
        if (sources.size > 10_000) sources.clear();
        sources.set(job.sourceId, hit);
      }
      if (!hit.source) return undefined;
      return storeFor(hit.source);
    },
  };
}
