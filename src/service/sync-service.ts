/**
 * The sync RPCs of IngestService: TriggerDiscovery (creates a durable discovery that a
 * worker runs; one at a time per source), TriggerIngestion (dispatches discovered objects
 * that have no successful job for their current version, or replays failed ones as jobs
 * linked to the ones they retry) and GetSyncStatus.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { IngestService } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { NotFound } from "../domain/errors";
import { newId } from "../domain/ids";
import type { JobStatus, NewJob, Scope } from "../domain/job";
import type { Discovery } from "../domain/source";
import { checkBucket, checkLength, checkObjectKey, quote } from "../domain/validate";
import { createBuckets } from "./buckets";
import { requestIdKey, scopeOf } from "./caller";
import { statusName } from "./convert";
import type { ServiceDeps } from "./deps";
import { sourceOf } from "./source-service";
import { loadRouting, newJob, routeObject } from "./upload-jobs";

type SyncMethods = Pick<ServiceImpl<typeof IngestService>, "triggerDiscovery" | "triggerIngestion" | "getSyncStatus">;

const PAGE = 500;

function discoveryToProto(d: Discovery | undefined) {
  if (!d) return undefined;
  return {
    discoveryId: d.discoveryId,
    state: d.state,
    fullSync: d.fullSync,
    ruleId: d.ruleId,
    scanned: BigInt(d.scanned),
    newObjects: BigInt(d.newObjects),
    modified: BigInt(d.modified),
    unchanged: BigInt(d.unchanged),
    deleted: BigInt(d.deleted),
    failed: BigInt(d.failed),
    dispatched: BigInt(d.dispatched),
    createdAt: BigInt(d.createdAt),
    startedAt: BigInt(d.startedAt),
    finishedAt: BigInt(d.finishedAt),
    error: d.error,
    checkpointKey: d.checkpointKey,
    attempts: d.attempts,
  };
}

/** Builds the sync methods of IngestService over the given dependencies. */
export function createSyncMethods(deps: ServiceDeps): SyncMethods {
  const { repo, now } = deps;
  const sync = repo.sync;
  const buckets = createBuckets(deps);

  /** Checks rule_id names an enabled rule that applies to the source. */
  async function routingFor(scope: Scope, sourceId: string, ruleId: string) {
    checkLength(ruleId, 128, "rule_id");
    const routing = await loadRouting(repo, scope, sourceId, ruleId);
    if (ruleId && routing.rules.length === 0) {
      throw new NotFound(`rule_id ${quote(ruleId)} is not an enabled rule of bucket ${quote(scope.bucket)} that applies to source ${quote(sourceId)}`);
    }
    return routing;
  }

  return {
    async triggerDiscovery(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      await buckets.get(scope);
      const s = await sourceOf(sync, scope, req.sourceId);
      if (req.ruleId) await routingFor(scope, s.sourceId, req.ruleId);
      const { discovery, created } = await sync.discoveryCreate({
        discoveryId: newId("disc", now()),
        org: scope.org,
        bucket: req.bucket,
        sourceId: s.sourceId,
        fullSync: req.fullSync,
        ruleId: req.ruleId,
        createdAt: now(),
      });
      if (!created) {
        return { jobId: discovery.discoveryId, accepted: false, message: `discovery ${discovery.discoveryId} of this source is ${discovery.state} already; follow it with GetSyncStatus` };
      }
      deps.discoveryCreated?.();
      return { jobId: discovery.discoveryId, accepted: true, message: "Discovery scan started" };
    },

    async triggerIngestion(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      await buckets.get(scope);
      const s = await sourceOf(sync, scope, req.sourceId);
      const routing = await routingFor(scope, s.sourceId, req.ruleId);
      if (req.sourceObjectId) checkObjectKey(req.sourceObjectId, "source_object_id");
      const traceId = ctx.values.get(requestIdKey);
      let considered = 0;
      let dispatched = 0;
      for (let after = ""; ; ) {
        const page = await sync.checkpointPage(s, after, PAGE, req.sourceObjectId || undefined);
        if (req.sourceObjectId && page.length === 0) {
          throw new NotFound(`source_object_id ${quote(req.sourceObjectId)} has not been discovered in source ${quote(s.sourceId)}; run TriggerDiscovery first`);
        }
        if (page.length === 0) break;
        considered += page.length;
        const latest = await sync.latestJobs(s, page.map((e) => e.key));
        const jobs: NewJob[] = [];
        const createdAt = now();
        for (const e of page) {
          for (const [pipelineId, rule] of routeObject(routing, { key: e.key, mimeType: e.contentType, size: e.size })) {
            const last = latest.get(`${pipelineId}\u0000${e.key}`);
            const failed = last?.status === "failed" || last?.status === "partial";
            const wanted = req.retryFailed
              ? failed
              : !last || (last.status !== "pending" && last.status !== "processing" && !(last.status === "completed" && (last.objectVersion === e.version || last.objectVersion === "")));
            if (!wanted) continue;
            const pipeline = routing.pipelines.get(pipelineId);
            if (!pipeline) continue;
            jobs.push(
              newJob({ scope, key: e.key, pipeline, ruleId: rule.ruleId, options: { ...pipeline.options }, requestId: "", traceId, createdAt, sourceId: s.sourceId, objectVersion: e.version, retryOf: failed ? last.jobId : "" }),
            );
          }
        }
        dispatched += await sync.jobsInsert(jobs);
        if (req.sourceObjectId || page.length < PAGE) break;
        after = page[page.length - 1].key;
      }
      const what = req.retryFailed ? "failed or partial objects replayed" : "objects without a successful job for their current version dispatched";
      return { accepted: true, dispatched: BigInt(dispatched), considered: BigInt(considered), message: `${dispatched} jobs created: ${what} (${considered} objects considered)` };
    },

    async getSyncStatus(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      await buckets.get(scope);
      const s = await sourceOf(sync, scope, req.sourceId);
      const [counts, current, last] = await Promise.all([sync.sourceStatusCounts(s, scope.signal), sync.discoveryActive(s.sourceId), sync.discoveryLastEnded(s.sourceId)]);
      return {
        sourceId: s.sourceId,
        syncing: current !== undefined,
        current: discoveryToProto(current),
        last: discoveryToProto(last),
        jobCounts: Object.fromEntries(Object.entries(counts.jobs).map(([status, n]) => [statusName(status as JobStatus), BigInt(n)])),
        totalObjects: BigInt(counts.totals.objects),
        indexedObjects: BigInt(counts.totals.indexed),
        lastSyncAt: BigInt(s.lastSyncAt),
        lastSuccessAt: BigInt(s.lastSuccessAt),
        lastError: s.lastError,
      };
    },
  };
}
