/** IngestService, written once as a Connect ServiceImpl and served by every door. */
import type { ServiceImpl } from "@connectrpc/connect";
import { IngestService, type StringList, type UpdateRuleRequest } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound } from "../domain/errors";
import { newId } from "../domain/ids";
import { newJob } from "./upload-jobs";
import { isTerminal, unstartedJob, type Job, type Scope } from "../domain/job";
import type { BoundRule, Pipeline, RuleFields } from "../domain/pipeline";
import { checkMimePattern, compileGlob, globChars, MAX_GLOB_CHARS_PER_BUCKET, MAX_RULES_PER_BUCKET, pickRule, type ObjectFacts } from "../domain/rules";
import { checkOptionKeys, checkTemplateOptions, getTemplate } from "../domain/templates";
import { checkBucket, checkId, checkLength, checkObjectKey, checkOptionMap, checkRequired, MAX_TEXT, quote } from "../domain/validate";
import { int64ToNumber, ingestPagination, jobToProto, ruleToProto, statusFromProto, statusName } from "./convert";
import { requestIdKey, scopeOf } from "./caller";
import type { ServiceDeps } from "./deps";
import { servePage } from "./paging";
import { sourceOf } from "./source-service";
import { createSyncMethods } from "./sync-service";
import { createWatchMethods, MAX_WAIT_MS } from "./watch-service";
import { createJobLogMethods } from "./job-logs";
import { createWebhookMethods } from "./webhook-service";

const MAX_PATTERNS = 100;
const MAX_NAME = 200;

/** Checks every pattern of a rule's four lists. */
function checkRulePatterns(f: Pick<RuleFields, "includePatterns" | "excludePatterns" | "includeMimeTypes" | "excludeMimeTypes">): void {
  const lists: Array<[string[], string, (p: string, field: string) => unknown]> = [
    [f.includePatterns, "include_patterns", compileGlob],
    [f.excludePatterns, "exclude_patterns", compileGlob],
    [f.includeMimeTypes, "include_mime_types", checkMimePattern],
    [f.excludeMimeTypes, "exclude_mime_types", checkMimePattern],
  ];
  for (const [list, field, check] of lists) {
    if (list.length > MAX_PATTERNS) {
      throw new InvalidArgument(`${field} has ${list.length} entries; at most ${MAX_PATTERNS} are allowed`, field);
    }
    list.forEach((p, i) => {
      checkLength(p, 1024, `${field}[${i}]`);
      check(p, `${field}[${i}]`);
    });
  }
}

function checkSizes(min: number, max: number): void {
  if (max !== 0 && max < min) {
    throw new InvalidArgument(
      `max_size_bytes ${max} is smaller than min_size_bytes ${min} (0 means no limit)`,
      "max_size_bytes",
    );
  }
}

/**
 * The job a request_id already names, when the retry is the same request: same object, and
 * the pipeline, rule and options it asked for (if it asked). Otherwise the key was reused
 * for something else, which is refused as payment APIs refuse it, rather than answering
 * with a job that is not what this request wanted.
 */
function sameRequest(job: Job, req: { requestId: string; object?: { key: string }; pipelineId: string; ruleId: string; options: Record<string, string> }): Job {
  const differs: string[] = [];
  if (req.object?.key !== job.key) differs.push(`object.key ${quote(req.object?.key ?? "")} (it was ${quote(job.key)})`);
  if (req.pipelineId && req.pipelineId !== job.pipelineId) differs.push(`pipeline_id ${quote(req.pipelineId)} (it was ${quote(job.pipelineId)})`);
  if (req.ruleId && req.ruleId !== job.ruleId) differs.push(`rule_id ${quote(req.ruleId)} (it was ${quote(job.ruleId)})`);
  for (const [k, v] of Object.entries(req.options)) if (job.options[k] !== v) differs.push(`options[${quote(k)}]`);
  if (differs.length) {
    throw new AlreadyExists(`request_id ${quote(req.requestId)} already created job ${job.jobId} for a different request: ${differs.join(", ")}; send a new request_id for a new request`);
  }
  return job;
}

/** A job's size in a list answer, roughly: its free-form parts plus the fixed fields. */
function jobBytes(j: Job): number {
  let n = 800 + j.key.length + j.error.length + j.errorDetails.length;
  for (const [k, v] of Object.entries(j.options)) n += k.length + v.length + 8;
  return n;
}

/** Builds the IngestService implementation over the given dependencies. */
export function createIngestService(deps: ServiceDeps): ServiceImpl<typeof IngestService> {
  const { repo, objects, now } = deps;
  const watch = createWatchMethods(deps);

  async function pipelineOf(scope: Scope, pipelineId: string, field: string): Promise<Pipeline> {
    const p = await repo.config.pipelineGetById(scope, pipelineId);
    if (!p) throw new NotFound(`${field} ${quote(pipelineId)} not found in bucket ${quote(scope.bucket)}`);
    return p;
  }

  async function boundPipeline(rule: BoundRule): Promise<Pipeline> {
    const p = await repo.config.pipelineGetById(rule, rule.pipelineId);
    if (!p) {
      throw new FailedPrecondition(
        `rule ${quote(rule.ruleId)} binds pipeline ${quote(rule.pipelineId)}, which no longer exists`,
      );
    }
    return p;
  }

  /**
   * Keeps a bucket's rules within the caps that bound a trigger's matching work:
   * MAX_RULES_PER_BUCKET rules and MAX_GLOB_CHARS_PER_BUCKET glob characters in all.
   */
  async function checkRuleBudget(scope: Scope, rule: Pick<RuleFields, "includePatterns" | "excludePatterns">, exceptRuleId?: string): Promise<void> {
    const usage = await repo.config.ruleBucketUsage(scope, exceptRuleId);
    if (exceptRuleId === undefined && usage.rules >= MAX_RULES_PER_BUCKET) {
      throw new InvalidArgument(
        `bucket ${quote(scope.bucket)} already has ${usage.rules} rules; at most ${MAX_RULES_PER_BUCKET} rules are allowed per bucket`,
        "bucket",
      );
    }
    const chars = usage.globChars + globChars(rule);
    if (chars > MAX_GLOB_CHARS_PER_BUCKET) {
      throw new InvalidArgument(
        `the rules of bucket ${quote(scope.bucket)} would hold ${chars} characters of include/exclude patterns; at most ${MAX_GLOB_CHARS_PER_BUCKET} are allowed per bucket`,
        "include_patterns",
      );
    }
  }

  async function ruleOf(scope: Scope, ruleId: string): Promise<BoundRule> {
    checkId(ruleId, "rule", "rule_id");
    const r = await repo.config.ruleGetById(scope, ruleId);
    if (!r) throw new NotFound(`rule_id ${quote(ruleId)} not found in bucket ${quote(scope.bucket)}`);
    return r;
  }

  /**
   * What a replay (retry_of) runs: the ended job's object, its pipeline as it is now (a
   * retry after fixing a pipeline takes the fix), and its rule unless deleted since. Only
   * the newest job of an object with a pipeline is replayed: an older one was superseded.
   */
  async function replayOf(
    scope: Scope,
    req: { retryOf: string; object?: { key: string }; pipelineId: string; ruleId: string; options: Record<string, string> },
  ): Promise<{ key: string; pipeline: Pipeline; ruleId: string }> {
    const old = await repo.jobs.jobGetById(scope, req.retryOf);
    if (!old) throw new NotFound(`retry_of ${quote(req.retryOf)} is not a job of bucket ${quote(scope.bucket)}`);
    if (old.status !== "failed" && old.status !== "partial" && old.status !== "cancelled") {
      throw new FailedPrecondition(`job ${quote(old.jobId)} is ${statusName(old.status)}; retry_of replays a FAILED, PARTIAL or CANCELLED job`);
    }
    const given: Array<[string, string, string]> = [
      ["object.key", req.object?.key ?? "", old.key],
      ["pipeline_id", req.pipelineId, old.pipelineId],
      ["rule_id", req.ruleId, old.ruleId],
    ];
    for (const [field, value, was] of given) {
      if (value !== "" && value !== was) {
        throw new InvalidArgument(`${field} ${quote(value)} is not the replayed job's ${quote(was)}; retry_of replays the job as it was: leave ${field} empty`, field);
      }
    }
    const newest = (await repo.catalog.objectIndexStatus(scope, old.key)).find((s) => s.pipelineId === old.pipelineId);
    if (newest && newest.jobId !== old.jobId) {
      throw new FailedPrecondition(
        `job ${quote(old.jobId)} is not the newest job of object ${quote(old.key)} with pipeline ${quote(old.pipelineId)}: job ${quote(newest.jobId)} (${statusName(newest.status)}) is; retry that one`,
      );
    }
    const pipeline = await repo.config.pipelineGetById(scope, old.pipelineId);
    if (!pipeline) throw new FailedPrecondition(`pipeline ${quote(old.pipelineId)} of job ${quote(old.jobId)} was deleted; trigger object ${quote(old.key)} with another pipeline`);
    const rule = old.ruleId ? await repo.config.ruleGetById(scope, old.ruleId) : undefined;
    return { key: old.key, pipeline, ruleId: rule && rule.pipelineId === pipeline.pipelineId ? rule.ruleId : "" };
  }

  /** Picks the pipeline (and rule) a trigger runs, following the spec's resolution order. */
  async function resolvePipeline(
    scope: Scope,
    req: { pipelineId: string; ruleId: string },
    facts: ObjectFacts,
  ): Promise<{ pipeline: Pipeline; ruleId: string }> {
    if (req.ruleId !== "") {
      const rule = await ruleOf(scope, req.ruleId);
      if (req.pipelineId !== "" && req.pipelineId !== rule.pipelineId) {
        throw new InvalidArgument(
          `pipeline_id ${quote(req.pipelineId)} is not the pipeline of rule_id ${quote(req.ruleId)}, which binds ${quote(rule.pipelineId)}`,
          "pipeline_id",
        );
      }
      return { pipeline: await boundPipeline(rule), ruleId: rule.ruleId };
    }
    if (req.pipelineId !== "") {
      checkId(req.pipelineId, "pipe", "pipeline_id");
      return { pipeline: await pipelineOf(scope, req.pipelineId, "pipeline_id"), ruleId: "" };
    }
    // A rule whose pipeline is gone (a delete that raced a rule change) is passed over, so
    // lower-priority rules still get their turn.
    const rule = pickRule((await repo.config.ruleListEnabledForDirect(scope)).filter((r) => r.bindingName !== ""), facts);
    if (!rule) {
      throw new FailedPrecondition(
        `no enabled rule of bucket ${quote(scope.bucket)} matches object key ${quote(facts.key)} (${facts.mimeType}, ${facts.size} bytes); pass pipeline_id or rule_id, or create a rule`,
      );
    }
    return { pipeline: await boundPipeline(rule), ruleId: rule.ruleId };
  }

  return {
    async triggerIngest(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      checkLength(req.retryOf, 128, "retry_of");
      checkLength(req.requestId, 128, "request_id");
      if (req.retryOf && req.requestId) {
        // A replay sent again: its job is no longer the newest, so the answer is the earlier one, before any replay check.
        const earlier = await repo.jobs.jobGetByRequestId(scope, req.requestId);
        if (earlier && earlier.retryOf === req.retryOf) return { job: jobToProto(earlier) };
        if (earlier) throw new AlreadyExists(`request_id ${quote(req.requestId)} already created job ${earlier.jobId} for a different request (retry_of ${quote(earlier.retryOf)}); send a new request_id for a new request`);
      }
      const replayed = req.retryOf ? await replayOf(scope, req) : undefined;
      const object = replayed ? { bucket: req.bucket, key: replayed.key } : req.object;
      if (!object) throw new InvalidArgument("object is required (or retry_of, the id of a job to replay)", "object");
      if (object.bucket !== "" && object.bucket !== req.bucket) {
        throw new InvalidArgument(
          `object.bucket ${quote(object.bucket)} does not match the bucket of the path ${quote(req.bucket)}`,
          "object.bucket",
        );
      }
      const key = object.key;
      checkObjectKey(key);
      checkOptionMap(req.options);
      const asked = { ...req, object, pipelineId: replayed?.pipeline.pipelineId ?? req.pipelineId, ruleId: replayed?.ruleId ?? req.ruleId };
      if (req.requestId !== "") {
        const earlier = await repo.jobs.jobGetByRequestId(scope, req.requestId);
        if (earlier) return { job: jobToProto(sameRequest(earlier, asked)) };
      }
      const info = await objects.stat(scope, key);
      if (!info) throw new NotFound(`object ${quote(key)} not found in bucket ${quote(req.bucket)}`);
      const { pipeline, ruleId } = replayed ?? (await resolvePipeline(scope, req, { key, ...info }));
      const options = { ...pipeline.options, ...req.options };
      const template = getTemplate(pipeline.template, "pipeline template");
      checkOptionKeys(template, Object.keys(req.options));
      checkTemplateOptions(template, options);
      const planned = newJob({ scope, key, pipeline, ruleId, options, requestId: req.requestId, traceId: ctx.values.get(requestIdKey), createdAt: now(), retryOf: req.retryOf });
      if (req.validateOnly) return { job: jobToProto(unstartedJob({ ...planned, jobId: "" })) };
      const { job, created } = await repo.jobs.jobInsert(planned);
      // Lost a race for the request_id: the winner is the answer only if it is the same request.
      return { job: jobToProto(created ? job : sameRequest(job, asked)) };
    },

    async getIngestStatus(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      checkRequired(req.jobId, "job_id");
      if (req.waitMs < 0 || req.waitMs > MAX_WAIT_MS) {
        throw new InvalidArgument(`wait_ms ${req.waitMs} is out of range; pass 0 (answer at once) to ${MAX_WAIT_MS} milliseconds`, "wait_ms");
      }
      const job = req.waitMs > 0 ? await watch.waitForJob(scope, req.jobId, req.waitMs, ctx.signal) : await repo.jobs.jobGetById(scope, req.jobId);
      if (!job) throw new NotFound(`job_id ${quote(req.jobId)} not found in bucket ${quote(req.bucket)}`);
      const current = await repo.jobs.jobsWithCurrentOutput(scope, [job]);
      return { job: jobToProto(job, current.has(job.jobId)) };
    },

    async listIngestJobs(req, ctx) {
      checkBucket(req.bucket);
      checkLength(req.keyPrefix, 1024, "key_prefix");
      const scope = scopeOf(ctx, req.bucket);
      const status = statusFromProto(req.statusFilter, "status_filter");
      const filter = {
        org: scope.org,
        bucket: req.bucket,
        status,
        pipelineId: req.pipelineId || undefined,
        ruleId: req.ruleId || undefined,
        // Only when given: page tokens issued before the source filter existed stay valid.
        ...(req.sourceId ? { sourceId: req.sourceId } : {}),
        ...(req.keyPrefix ? { keyPrefix: req.keyPrefix } : {}),
      };
      const page = await servePage(req, { ...filter }, (p) => repo.jobs.jobList(filter, { ...p, signal: scope.signal }), (j) => j.jobId, (j) => jobBytes(j));
      const current = await repo.jobs.jobsWithCurrentOutput(scope, page.items);
      return { jobs: page.items.map((j) => jobToProto(j, current.has(j.jobId))), pagination: ingestPagination(page.nextPageToken, page.total) };
    },

    async cancelIngestJob(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      checkRequired(req.jobId, "job_id");
      const res = await repo.jobs.jobCancel(scope, req.jobId, now());
      if (!res) throw new NotFound(`job_id ${quote(req.jobId)} not found in bucket ${quote(req.bucket)}`);
      if (!res.changed && isTerminal(res.job.status)) {
        throw new FailedPrecondition(
          `job ${quote(req.jobId)} is already ${statusName(res.job.status)} and cannot be cancelled`,
        );
      }
      return { job: jobToProto(res.job) };
    },

    async createRule(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      checkRequired(req.name, "name");
      checkLength(req.name, MAX_NAME, "name");
      checkLength(req.description, MAX_TEXT, "description");
      checkLength(req.sourceId, 128, "source_id");
      checkRequired(req.pipelineId, "pipeline_id");
      const fields: RuleFields = {
        sourceId: req.sourceId,
        pipelineId: req.pipelineId,
        name: req.name,
        description: req.description,
        includePatterns: req.includePatterns,
        excludePatterns: req.excludePatterns,
        includeMimeTypes: req.includeMimeTypes,
        excludeMimeTypes: req.excludeMimeTypes,
        minSizeBytes: int64ToNumber(req.minSizeBytes, "min_size_bytes"),
        maxSizeBytes: int64ToNumber(req.maxSizeBytes, "max_size_bytes"),
        enabled: req.enabled ?? true,
        priority: req.priority,
      };
      checkRulePatterns(fields);
      checkSizes(fields.minSizeBytes, fields.maxSizeBytes);
      if (fields.sourceId) await sourceOf(repo.sync, scope, fields.sourceId);
      await pipelineOf(scope, req.pipelineId, "pipeline_id");
      await checkRuleBudget(scope, fields);
      const createdAt = now();
      const rule = await repo.config.ruleInsert({
        ...fields,
        ruleId: newId("rule", createdAt),
        org: scope.org,
        bucket: req.bucket,
        createdAt,
        updatedAt: createdAt,
      });
      return { rule: ruleToProto(rule) };
    },

    async getRule(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      return { rule: ruleToProto(await ruleOf(scope, req.ruleId)) };
    },

    async listRules(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const filter = {
        org: scope.org,
        bucket: req.bucket,
        sourceId: req.sourceId || undefined,
        pipelineId: req.pipelineId || undefined,
      };
      const page = await servePage(req, { ...filter }, (p) => repo.config.ruleList(filter, { ...p, signal: scope.signal }), (r) => r.ruleId);
      return { rules: page.items.map(ruleToProto), pagination: ingestPagination(page.nextPageToken, page.total) };
    },

    async updateRule(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const current = await ruleOf(scope, req.ruleId);
      const patch = rulePatch(req);
      if (patch.name !== undefined) checkRequired(patch.name, "name");
      if (patch.name !== undefined) checkLength(patch.name, MAX_NAME, "name");
      if (patch.description !== undefined) checkLength(patch.description, MAX_TEXT, "description");
      const merged = { ...current, ...patch };
      checkRulePatterns(merged);
      checkSizes(merged.minSizeBytes, merged.maxSizeBytes);
      if (patch.includePatterns !== undefined || patch.excludePatterns !== undefined) await checkRuleBudget(scope, merged, current.ruleId);
      if (patch.sourceId) await sourceOf(repo.sync, scope, patch.sourceId);
      if (patch.pipelineId !== undefined && patch.pipelineId !== current.pipelineId) {
        checkRequired(patch.pipelineId, "pipeline_id");
        await pipelineOf(scope, patch.pipelineId, "pipeline_id");
      }
      const rule = await repo.config.ruleUpdate(scope, req.ruleId, patch, now());
      if (!rule) throw new NotFound(`rule_id ${quote(req.ruleId)} not found in bucket ${quote(req.bucket)}`);
      return { rule: ruleToProto(rule) };
    },

    async deleteRule(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      checkRequired(req.ruleId, "rule_id");
      if (!(await repo.config.ruleDelete(scope, req.ruleId))) {
        throw new NotFound(`rule_id ${quote(req.ruleId)} not found in bucket ${quote(req.bucket)}`);
      }
      return {};
    },

    watchIngestJobs: watch.watchIngestJobs,
    ...createWebhookMethods(deps),
    ...createJobLogMethods(deps),
    ...createSyncMethods(deps),
  };
}

/** The fields an UpdateRuleRequest carries, as a domain patch (absent = untouched). */
function rulePatch(req: UpdateRuleRequest): Partial<RuleFields> {
  const list = (l: StringList | undefined) => l?.values;
  const patch: Partial<RuleFields> = {
    sourceId: req.sourceId,
    pipelineId: req.pipelineId,
    name: req.name,
    description: req.description,
    includePatterns: list(req.includePatterns),
    excludePatterns: list(req.excludePatterns),
    includeMimeTypes: list(req.includeMimeTypes),
    excludeMimeTypes: list(req.excludeMimeTypes),
    minSizeBytes: req.minSizeBytes === undefined ? undefined : int64ToNumber(req.minSizeBytes, "min_size_bytes"),
    maxSizeBytes: req.maxSizeBytes === undefined ? undefined : int64ToNumber(req.maxSizeBytes, "max_size_bytes"),
    enabled: req.enabled,
    priority: req.priority,
  };
  for (const k of Object.keys(patch) as Array<keyof RuleFields>) {
    if (patch[k] === undefined) delete patch[k];
  }
  return patch;
}
