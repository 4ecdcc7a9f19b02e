/**
 * Which object store holds a source's objects: the bucket's own store (folder or S3
 * upstream) for its internal source, or a signed client of the external S3-compatible
 * bucket, rooted at the source's root path, with the secret unsealed only in memory —
 * the source's own, or the stored credential it names (read again every 5 s at most, so a
 * deleted or replaced credential is followed). The worker asks it for each job; discoveries
 * for each scan. Stores of external sources are cached per source and credential version
 * (their updated_at).
 */
import type { UrlPolicy } from "../domain/url-policy";
import type { Scope } from "../domain/job";
import type { Source } from "../domain/source";
import type { ObjectStore } from "../storage/object-store";
import type { CredentialStore } from "../storage/postgres/credential-store";
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
  storeFor(s: Source): Promise<ObjectStore>;
  /** The store a job reads its object from; undefined when its source is gone. */
  forJob(job: Scope & { sourceId: string }): Promise<ObjectStore | undefined>;
}

/** What `load` gives for a key, kept 5 s (at most 10,000 keys): sources and credentials change rarely, and jobs ask per object. */
function shortCache<T>(): (key: string, load: () => Promise<T>) => Promise<T> {
  const entries = new Map<string, { at: number; value: T }>();
  return async (key, load) => {
    const hit = entries.get(key);
    if (hit && Date.now() - hit.at <= 5000) return hit.value;
    const value = await load();
    if (entries.size > 10_000) entries.clear();
    entries.set(key, { at: Date.now(), value });
    return value;
  };
}

export function createSourceObjects(deps: { sync: SyncStore; credentials: CredentialStore; objects: ObjectStore; secrets: SecretBox; dataDir: string; endpoints: UrlPolicy }): SourceObjects {
  const stores = new Map<string, { version: string; store: ObjectStore }>();
  const sources = shortCache<Source | undefined>();
  const credentials = shortCache<{ accessKeyId: string; secret: string; updatedAt: number } | undefined>();
  const unseal = (sealed: string) => (sealed ? deps.secrets.open(Buffer.from(sealed, "base64")) : "");

  /** The key pair of the stored credential a source signs with (an error when it is gone). */
  async function credentialKeys(s: Source, id: string): Promise<{ accessKeyId: string; secret: string; updatedAt: number }> {
    const keys = await credentials(id, async () => {
      const c = await deps.credentials.credentialGet(s.org, id);
      if (!c) return undefined;
      const secret = (JSON.parse(unseal(c.secretSealed)) as { secretAccessKey?: string }).secretAccessKey ?? "";
      return { accessKeyId: c.publicData.accessKeyId ?? "", secret, updatedAt: c.updatedAt };
    });
    if (!keys) throw new Error(`the credential ${JSON.stringify(id)} this source signs with was deleted; name another in external_s3 (UpdateSource)`);
    return keys;
  }

  async function storeFor(s: Source): Promise<ObjectStore> {
    if (s.provider !== "external_s3" || !s.external) return deps.objects;
    const cred = s.external.credentialId ? await credentialKeys(s, s.external.credentialId) : undefined;
    const version = cred ? `${s.updatedAt}/${cred.updatedAt}` : `${s.updatedAt}`;
    const hit = stores.get(s.sourceId);
    if (hit && hit.version === version) return hit.store;
    const prefix = rootPrefix(s.rootPath);
    const store = createS3ObjectStore({
      ...s.external,
      region: s.external.region || "us-east-1",
      accessKeyId: cred?.accessKeyId ?? s.external.accessKeyId,
      secretAccessKey: cred?.secret ?? unseal(s.secretSealed),
      dataDir: deps.dataDir,
      prefixOf: () => prefix,
      endpoints: deps.endpoints,
    });
    if (stores.size > 1000) stores.clear();
    stores.set(s.sourceId, { version, store });
    return store;
  }

  return {
    storeFor,
    async forJob(job) {
      if (job.sourceId === "") return deps.objects;
      const source = await sources(job.sourceId, () => deps.sync.sourceById(job.sourceId));
      return source ? storeFor(source) : undefined;
    },
  };
}
