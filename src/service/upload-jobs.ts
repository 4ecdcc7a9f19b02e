/**
 * The jobs an object starts when it arrives — through the byte plane, or found by a
 * discovery of one of the bucket's sources: for each pipeline, the highest-precedence
 * enabled rule (bucket-wide, or bound to the object's source) that matches the object's
 * key, content type and size. One job per pipeline, so two rules routing an object to the
 * same pipeline run it once.
 */
import type { NewJob, Scope } from "../domain/job";
import { newId } from "../domain/ids";
import type { BoundRule, Pipeline } from "../domain/pipeline";
import { compareRulePrecedence, ruleMatches, type ObjectFacts } from "../domain/rules";
import type { Repository } from "../storage/repository";

/** A new job of `pipeline` for an object. */
export function newJob(p: {
  scope: Scope;
  key: string;
  pipeline: Pipeline;
  ruleId: string;
  options: Record<string, string>;
  requestId: string;
  traceId: string;
  createdAt: number;
  sourceId?: string;
  objectVersion?: string;
  retryOf?: string;
}): NewJob {
  return {
    jobId: newId("job", p.createdAt),
    org: p.scope.org,
    bucket: p.scope.bucket,
    key: p.key,
    pipelineId: p.pipeline.pipelineId,
    pipelineName: p.pipeline.name,
    pipelineKind: p.pipeline.storeEntityKind,
    template: p.pipeline.template,
    ruleId: p.ruleId,
    options: p.options,
    requestId: p.requestId,
    traceId: p.traceId,
    createdAt: p.createdAt,
    sourceId: p.sourceId ?? "",
    objectVersion: p.objectVersion ?? "",
    retryOf: p.retryOf ?? "",
  };
}

/** The enabled rules that apply to a source's objects, in precedence order, with their pipelines. */
export interface Routing {
  scope: Scope;
  sourceId: string;
  rules: BoundRule[];
  pipelines: Map<string, Pipeline>;
}

/** Loads the routing of a source (only rule `onlyRuleId`'s when given). */
export async function loadRouting(repo: Repository, scope: Scope, sourceId: string, onlyRuleId = ""): Promise<Routing> {
  const rules = [...(await repo.config.ruleListEnabledForSource(scope, sourceId))]
    .filter((r) => r.bindingName !== "" && (onlyRuleId === "" || r.ruleId === onlyRuleId))
    .sort(compareRulePrecedence);
  const pipelines = new Map<string, Pipeline>();
  for (const id of new Set(rules.map((r) => r.pipelineId))) {
    const p = await repo.config.pipelineGetById(scope, id);
    if (p) pipelines.set(id, p);
  }
  return { scope, sourceId, rules: rules.filter((r) => pipelines.has(r.pipelineId)), pipelines };
}

/** Per pipeline, the rule that routes the object there. */
export function routeObject(routing: Routing, facts: ObjectFacts): Map<string, BoundRule> {
  const byPipeline = new Map<string, BoundRule>();
  for (const rule of routing.rules) {
    if (!byPipeline.has(rule.pipelineId) && ruleMatches(rule, facts)) byPipeline.set(rule.pipelineId, rule);
  }
  return byPipeline;
}

/** The jobs the routing starts for an object. */
export function planJobs(routing: Routing, facts: ObjectFacts, o: { objectVersion: string; traceId: string; now: number }): NewJob[] {
  return [...routeObject(routing, facts)].map(([pipelineId, rule]) => {
    const pipeline = routing.pipelines.get(pipelineId) as Pipeline;
    return newJob({ scope: routing.scope, key: facts.key, pipeline, ruleId: rule.ruleId, options: { ...pipeline.options }, requestId: "", traceId: o.traceId, createdAt: o.now, sourceId: routing.sourceId, objectVersion: o.objectVersion });
  });
}
