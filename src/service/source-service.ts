/**
 * SourceService: the sources of a bucket, written once as a Connect ServiceImpl and
 * served by every door. The internal source comes with the bucket and cannot be created
 * or deleted; external S3-compatible sources are added here, their secret sealed at once
 * and never returned. Other documented providers are known by name and answered
 * UNIMPLEMENTED.
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  SourceProvider,
  SourceSchema,
  SourceService,
  SourceStatus,
  type ExternalS3,
  type Source as SourceMessage,
} from "../../gen/dodil/k3/source/v1/source_pb";
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unimplemented } from "../domain/errors";
import { newId } from "../domain/ids";
import type { Scope } from "../domain/job";
import type { ExternalS3Config, ProviderName, Source, SourceView } from "../domain/source";
import { checkBucket, checkLength, checkRequired, MAX_TEXT, quote } from "../domain/validate";
import type { SyncStore } from "../storage/postgres/sync-store";
import { createBuckets } from "./buckets";
import { scopeOf } from "./caller";
import { int64ToNumber } from "./convert";
import type { ServiceDeps } from "./deps";
import { servePage } from "./paging";
import { createCredentialCalls } from "./credential-service";

const PROVIDERS: Record<ProviderName, SourceProvider> = {
  internal_s3: SourceProvider.INTERNAL_S3,
  external_s3: SourceProvider.EXTERNAL_S3,
  google_drive: SourceProvider.GOOGLE_DRIVE,
  sharepoint: SourceProvider.SHAREPOINT,
  confluence: SourceProvider.CONFLUENCE,
  github: SourceProvider.GITHUB,
};
/** A week: longer periods are a cron's job. */
const MAX_INTERVAL_SECONDS = 7 * 24 * 3600;

/** A source with its state and counts -> Source message (the secret never leaves). */
export function sourceToProto(s: SourceView): SourceMessage {
  return create(SourceSchema, {
    sourceId: s.sourceId,
    bucket: s.bucket,
    provider: PROVIDERS[s.provider] ?? SourceProvider.UNSPECIFIED,
    name: s.name,
    description: s.description,
    rootPath: s.rootPath,
    providerAccount: s.providerAccount,
    syncIntervalSeconds: BigInt(s.syncIntervalSeconds),
    enabled: s.enabled,
    status: s.syncing ? SourceStatus.SYNCING : !s.enabled ? SourceStatus.DISABLED : s.lastError ? SourceStatus.ERROR : SourceStatus.ACTIVE,
    totalObjects: BigInt(s.totalObjects),
    indexedObjects: BigInt(s.indexedObjects),
    totalBytes: BigInt(s.totalBytes),
    createdAt: BigInt(s.createdAt),
    updatedAt: BigInt(s.updatedAt),
    lastSyncAt: BigInt(s.lastSyncAt),
    lastSuccessAt: BigInt(s.lastSuccessAt),
    lastError: s.lastError,
    externalS3: s.external ? { endpoint: s.external.endpoint, bucket: s.external.bucket, region: s.external.region, accessKeyId: s.external.accessKeyId, credentialId: s.external.credentialId ?? "" } : undefined,
  });
}

/**
 * The checked location of an external source and how it signs: its own key pair (the secret
 * sealed, or kept on update) or a stored credential (credential_id, checked by withCredential).
 */
function externalOf(e: ExternalS3 | undefined, deps: Pick<ServiceDeps, "secrets" | "sourceEndpoints">, keptSecret: string): { external: ExternalS3Config; secretSealed: string } {
  if (!e) throw new InvalidArgument("external_s3 is required for SOURCE_PROVIDER_EXTERNAL_S3 (endpoint, bucket, region, and access_key_id with secret_access_key or a credential_id)", "external_s3");
  let url: URL;
  try {
    url = new URL(e.endpoint);
  } catch {
    throw new InvalidArgument(`external_s3.endpoint ${quote(e.endpoint)} is not a URL; give the base URL, e.g. "https://s3.eu-west-1.amazonaws.com"`, "external_s3.endpoint");
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.pathname !== "/" || url.search || url.username) {
    throw new InvalidArgument(`external_s3.endpoint ${quote(e.endpoint)} must be an http(s) base URL with no path, query or credentials`, "external_s3.endpoint");
  }
  deps.sourceEndpoints?.checkUrl(e.endpoint, "external_s3.endpoint");
  checkBucket(e.bucket, "external_s3.bucket");
  checkLength(e.region, 64, "external_s3.region");
  if (e.region && !/^[a-z0-9-]+$/.test(e.region)) throw new InvalidArgument(`external_s3.region ${quote(e.region)} must be letters, digits and dashes, e.g. "us-east-1"`, "external_s3.region");
  const location = { endpoint: url.origin, bucket: e.bucket, region: e.region };
  if (e.credentialId) {
    if (e.accessKeyId || e.secretAccessKey) throw new InvalidArgument("external_s3.credential_id names the key pair to sign with; give it, or access_key_id and secret_access_key, not both", "external_s3.credential_id");
    return { external: { ...location, accessKeyId: "", credentialId: e.credentialId }, secretSealed: "" };
  }
  checkLength(e.accessKeyId, 128, "external_s3.access_key_id");
  checkLength(e.secretAccessKey, 256, "external_s3.secret_access_key");
  const secretSealed = e.secretAccessKey ? (deps.secrets?.seal(e.secretAccessKey).toString("base64") ?? "") : keptSecret;
  if (e.accessKeyId === "" || secretSealed === "") {
    throw new InvalidArgument("external_s3.access_key_id and external_s3.secret_access_key are both required (or a credential_id)", e.accessKeyId === "" ? "external_s3.access_key_id" : "external_s3.secret_access_key");
  }
  return { external: { ...location, accessKeyId: e.accessKeyId }, secretSealed };
}

/** A source write that lost the race to the deletion of its credential. */
const credentialGone = (e: ExternalS3Config) =>
  new NotFound(`external_s3.credential_id ${quote(e.credentialId ?? "")} was deleted while the source was being saved; nothing was saved`);

/** The location with the stored credential it names, checked (an access key of the caller's organization). */
async function withCredential(deps: ServiceDeps, org: string, location: { external: ExternalS3Config; secretSealed: string }) {
  const id = location.external.credentialId;
  if (!id) return location;
  checkLength(id, 128, "external_s3.credential_id");
  const c = await deps.repo.credentials.credentialGet(org, id);
  if (!c) throw new NotFound(`external_s3.credential_id ${quote(id)} not found in this organization (store it with StoreCredential)`);
  if (c.credentialType !== "access_key") throw new InvalidArgument(`external_s3.credential_id ${quote(id)} is a ${c.credentialType} credential; an external S3 source signs with an access key`, "external_s3.credential_id");
  return location;
}

function intervalOf(v: bigint): number {
  const n = int64ToNumber(v, "sync_interval_seconds");
  if (n < 0 || n > MAX_INTERVAL_SECONDS) {
    throw new InvalidArgument(`sync_interval_seconds ${n} must be from 0 (manual only) to ${MAX_INTERVAL_SECONDS}`, "sync_interval_seconds");
  }
  return n;
}

function checkRootPath(p: string): void {
  checkLength(p, 1024, "root_path");
}

/** A source with its counts and whether it is syncing. */
export async function viewOf(sync: SyncStore, s: Source, signal?: AbortSignal): Promise<SourceView> {
  const [totals, active] = await Promise.all([sync.sourceTotals(s, signal), sync.discoveryActive(s.sourceId)]);
  return { ...s, syncing: active !== undefined, totalObjects: totals.objects, totalBytes: totals.bytes, indexedObjects: totals.indexed };
}

/** The source `sourceId` of the scope's bucket; NotFound (never another bucket's) otherwise. */
export async function sourceOf(sync: SyncStore, scope: Scope, sourceId: string): Promise<Source> {
  checkRequired(sourceId, "source_id");
  checkLength(sourceId, 128, "source_id");
  const s = await sync.sourceGet(scope, sourceId);
  if (!s) throw new NotFound(`source_id ${quote(sourceId)} not found in bucket ${quote(scope.bucket)}`);
  return s;
}

/** Builds the SourceService implementation over the given dependencies. */
export function createSourceService(deps: ServiceDeps): ServiceImpl<typeof SourceService> {
  const { repo, now } = deps;
  const sync = repo.sync;
  const buckets = createBuckets(deps);

  return {
    ...createCredentialCalls(deps),

    async createSource(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const accepted = "accepted: SOURCE_PROVIDER_EXTERNAL_S3";
      switch (req.provider) {
        case SourceProvider.EXTERNAL_S3:
          break;
        case SourceProvider.UNSPECIFIED:
          throw new InvalidArgument(`provider is required; ${accepted} (the internal source comes with the bucket)`, "provider");
        case SourceProvider.INTERNAL_S3: {
          const b = await buckets.get(scope);
          throw new AlreadyExists(`bucket ${quote(req.bucket)} has its internal source already (${b.internalSourceId}); it is created with the bucket`);
        }
        default:
          if (SourceProvider[req.provider] === undefined) throw new InvalidArgument(`provider ${req.provider} is not a SourceProvider; ${accepted}`, "provider");
          throw new Unimplemented(`SOURCE_PROVIDER_${SourceProvider[req.provider]} sources are not implemented by this server; ${accepted}`);
      }
      checkRequired(req.name, "name");
      checkLength(req.name, 200, "name");
      checkLength(req.description, MAX_TEXT, "description");
      checkLength(req.providerAccount, 1024, "provider_account");
      checkRootPath(req.rootPath);
      const interval = intervalOf(req.syncIntervalSeconds);
      const { external, secretSealed } = await withCredential(deps, scope.org, externalOf(req.externalS3, deps, ""));
      await buckets.get(scope);
      const createdAt = now();
      const source: Source = {
        sourceId: newId("src", createdAt),
        org: scope.org,
        bucket: req.bucket,
        provider: "external_s3",
        name: req.name,
        description: req.description,
        rootPath: req.rootPath,
        providerAccount: req.providerAccount,
        syncIntervalSeconds: interval,
        enabled: req.enabled ?? true,
        external,
        secretSealed,
        lastSyncAt: 0,
        lastSuccessAt: 0,
        lastError: "",
        createdAt,
        updatedAt: createdAt,
      };
      if (!(await sync.sourceInsert(source, createdAt + interval * 1000))) throw credentialGone(external!);
      return { source: sourceToProto(await viewOf(sync, source, scope.signal)) };
    },

    async listSources(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      await buckets.get(scope);
      const page = await servePage(req, { bucket: req.bucket, org: scope.org }, (p) => sync.sourceList(scope, { ...p, signal: scope.signal }), (s) => s.sourceId);
      const views = await Promise.all(page.items.map((s) => viewOf(sync, s, scope.signal)));
      return { sources: views.map(sourceToProto), pagination: { nextPageToken: page.nextPageToken, totalCount: BigInt(page.total) } };
    },

    async getSource(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      await buckets.get(scope);
      return { source: sourceToProto(await viewOf(sync, await sourceOf(sync, scope, req.sourceId), scope.signal)) };
    },

    async updateSource(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const s = await sourceOf(sync, scope, req.sourceId);
      const internal = s.provider === "internal_s3";
      if (req.name !== undefined) {
        checkRequired(req.name, "name");
        checkLength(req.name, 200, "name");
      }
      if (req.description !== undefined) checkLength(req.description, MAX_TEXT, "description");
      if (req.rootPath !== undefined) {
        if (internal && req.rootPath !== "") throw new InvalidArgument("root_path of the internal source is the bucket itself; it cannot be set", "root_path");
        checkRootPath(req.rootPath);
      }
      if (req.externalS3 && internal) throw new InvalidArgument("external_s3 applies to SOURCE_PROVIDER_EXTERNAL_S3 sources only", "external_s3");
      const location = req.externalS3 ? await withCredential(deps, scope.org, externalOf(req.externalS3, deps, s.secretSealed)) : undefined;
      const updated: Source = {
        ...s,
        name: req.name ?? s.name,
        description: req.description ?? s.description,
        rootPath: req.rootPath ?? s.rootPath,
        syncIntervalSeconds: req.syncIntervalSeconds === undefined ? s.syncIntervalSeconds : intervalOf(req.syncIntervalSeconds),
        enabled: req.enabled ?? s.enabled,
        external: location?.external ?? s.external,
        secretSealed: location?.secretSealed ?? s.secretSealed,
        updatedAt: now(),
      };
      if (!(await sync.sourceUpdate(scope, updated, updated.updatedAt))) {
        // The source was deleted meanwhile, or the credential it is to sign with.
        await sourceOf(sync, scope, req.sourceId);
        throw credentialGone(updated.external!);
      }
      return { source: sourceToProto(await viewOf(sync, updated, scope.signal)) };
    },

    async deleteSource(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const s = await sourceOf(sync, scope, req.sourceId);
      if (s.provider === "internal_s3") {
        throw new FailedPrecondition(`source ${quote(req.sourceId)} is the internal source of bucket ${quote(req.bucket)}; it goes with the bucket (DeleteBucket)`);
      }
      await sync.sourceDelete(scope, s.sourceId, now());
      return {};
    },
  };
}
