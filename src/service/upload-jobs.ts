/**
 * The jobs an object starts when it arrives through the byte plane: for each pipeline,
 * the highest-precedence enabled rule of the bucket (bucket-wide, or bound to the
 * bucket's internal source) that matches the object's key, stored content type and size.
 * One job per pipeline, so two rules routing an object to the same pipeline run it once.
 */
import type { NewJob, Scope } from "../domain/job";
import { newId } from "../domain/ids";
import type { Pipeline } from "../domain/pipeline";
import { compareRulePrecedence, ruleMatches, type ObjectFacts } from "../domain/rules";
import type { Repository } from "../storage/repository";

/** A new job of `pipeline` for an object. */
export function newJob(p: { scope: Scope; key: string; pipeline: Pipeline; ruleId: string; options: Record<string, string>; requestId: string; traceId: string; createdAt: number }): NewJob {
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
  };
}

/** The jobs the rules of the bucket start for an uploaded object. */
export async function jobsForUpload(repo: Repository, scope: Scope, internalSourceId: string, facts: ObjectFacts, traceId: string, now: number): Promise<NewJob[]> {
  const rules = [...(await repo.ruleListEnabledForSource(scope, internalSourceId))].sort(compareRulePrecedence);
  const byPipeline = new Map<string, string>();
  for (const rule of rules) {
    if (rule.bindingName === "" || byPipeline.has(rule.pipelineId)) continue;
    if (ruleMatches(rule, facts)) byPipeline.set(rule.pipelineId, rule.ruleId);
  }
  const jobs: NewJob[] = [];
  for (const [pipelineId, ruleId] of byPipeline) {
    const pipeline = await repo.pipelineGetById(scope, pipelineId);
    if (!pipeline) continue; // deleted meanwhile
    jobs.push(newJob({ scope, key: facts.key, pipeline, ruleId, options: { ...pipeline.options }, requestId: "", traceId, createdAt: now }));
  }
  return jobs;
}
