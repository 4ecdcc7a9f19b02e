/** PipelineService, written once as a Connect ServiceImpl and served by every door. */
import type { ServiceImpl } from "@connectrpc/connect";
import { PipelineService, type UpdatePipelineRequest } from "../../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { FailedPrecondition, InvalidArgument, NotFound } from "../domain/errors";
import { newId } from "../domain/ids";
import type { Scope } from "../domain/job";
import type { Pipeline, PipelineFields } from "../domain/pipeline";
import { checkOptionKeys, checkTemplateOptions, getTemplate } from "../domain/templates";
import { checkBucket, checkId, checkLength, checkOptionMap, checkRequired, MAX_TEXT, quote } from "../domain/validate";
import { pipelinePagination, pipelineToProto } from "./convert";
import { scopeOf } from "./caller";
import type { ServiceDeps } from "./deps";
import { servePage } from "./paging";

const STORE_KINDS = ["", "vector", "warehouse"];

function checkPipelineName(name: string): void {
  checkRequired(name, "name");
  if (name.length > 200) throw new InvalidArgument(`name is longer than 200 characters`, "name");
}


/** Checks and creates a pipeline of a template (CreatePipeline, AddVectorPipeline). */
export async function insertPipeline(
  deps: ServiceDeps,
  scope: Scope,
  f: { name: string; description: string; template: string; options: Record<string, string>; storeEntityId: string },
): Promise<Pipeline> {
  checkPipelineName(f.name);
  checkLength(f.description, MAX_TEXT, "description");
  const template = getTemplate(f.template);
  checkOptionMap(f.options);
  checkOptionKeys(template, Object.keys(f.options));
  checkTemplateOptions(template, f.options);
  const createdAt = deps.now();
  return deps.repo.config.pipelineInsert({
    pipelineId: newId("pipe", createdAt),
    org: scope.org,
    bucket: scope.bucket,
    name: f.name,
    description: f.description,
    template: template.name,
    options: f.options,
    storeEntityId: f.storeEntityId,
    storeEntityKind: template.kind,
    createdAt,
    updatedAt: createdAt,
  });
}

/** Builds the PipelineService implementation over the given dependencies. */
export function createPipelineService(deps: ServiceDeps): ServiceImpl<typeof PipelineService> {
  const { repo, now } = deps;

  function notFound(bucket: string, pipelineId: string): NotFound {
    return new NotFound(`pipeline_id ${quote(pipelineId)} not found in bucket ${quote(bucket)}`);
  }

  return {
    async createPipeline(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      checkPipelineName(req.name);
      checkLength(req.description, MAX_TEXT, "description");
      checkLength(req.storeEntityId, 200, "store_entity_id");
      let templateName: string;
      let options = req.options;
      switch (req.script.case) {
        case "scriptumTemplate":
          templateName = req.script.value;
          break;
        case "spawnFromTemplate":
          templateName = req.script.value.template;
          options = { ...req.script.value.parameters, ...req.options };
          break;
        default:
          throw new InvalidArgument("one of scriptum_template or spawn_from_template is required", "scriptum_template");
      }
      const pipeline = await insertPipeline(deps, scope, { name: req.name, description: req.description, template: templateName, options, storeEntityId: req.storeEntityId });
      return { pipeline: pipelineToProto(pipeline) };
    },

    async getPipeline(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      checkId(req.pipelineId, "pipe", "pipeline_id");
      const p = await repo.config.pipelineGetById(scope, req.pipelineId);
      if (!p) throw notFound(req.bucket, req.pipelineId);
      return { pipeline: pipelineToProto(p) };
    },

    async listPipelines(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      if (!STORE_KINDS.includes(req.storeEntityKind)) {
        throw new InvalidArgument(
          `store_entity_kind ${quote(req.storeEntityKind)} must be one of "vector", "warehouse" or empty`,
          "store_entity_kind",
        );
      }
      const filter = {
        org: scope.org,
        bucket: req.bucket,
        storeEntityKind: req.storeEntityKind || undefined,
        storeEntityId: req.storeEntityId || undefined,
      };
      const page = await servePage(req, { ...filter }, (p) => repo.config.pipelineList(filter, { ...p, signal: scope.signal }), (p) => p.pipelineId);
      return {
        pipelines: page.items.map(pipelineToProto),
        pagination: pipelinePagination(page.nextPageToken, page.total),
      };
    },

    async updatePipeline(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      checkId(req.pipelineId, "pipe", "pipeline_id");
      const current = await repo.config.pipelineGetById(scope, req.pipelineId);
      if (!current) throw notFound(req.bucket, req.pipelineId);
      const patch = pipelinePatch(req);
      if (patch.name !== undefined) checkPipelineName(patch.name);
      if (patch.description !== undefined) checkLength(patch.description, MAX_TEXT, "description");
      if (patch.storeEntityId !== undefined) checkLength(patch.storeEntityId, 200, "store_entity_id");
      const template = getTemplate(patch.template ?? current.template);
      patch.storeEntityKind = template.kind;
      const options = patch.options ?? current.options;
      checkOptionMap(options);
      if (patch.options || patch.template) checkOptionKeys(template, Object.keys(options));
      checkTemplateOptions(template, options);
      const p = await repo.config.pipelineUpdate(scope, req.pipelineId, patch, now());
      if (!p) throw notFound(req.bucket, req.pipelineId);
      return { pipeline: pipelineToProto(p) };
    },

    async deletePipeline(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      checkId(req.pipelineId, "pipe", "pipeline_id");
      const res = await repo.config.pipelineDelete(scope, req.pipelineId, { keepOutputs: req.keepOutputs, validateOnly: req.validateOnly });
      if (res === "not_found") throw notFound(req.bucket, req.pipelineId);
      if (Array.isArray(res)) {
        throw new FailedPrecondition(
          `pipeline ${quote(req.pipelineId)} is still bound by rules (${res.join(", ")}); delete them or bind them to another pipeline first`,
        );
      }
      return { deletedJobs: BigInt(res.jobs), deletedChunks: BigInt(res.chunks), deletedRows: BigInt(res.rows), outputsKept: res.kept };
    },
  };
}

/** The fields an UpdatePipelineRequest carries, as a domain patch (absent = untouched). */
function pipelinePatch(req: UpdatePipelineRequest): Partial<PipelineFields> {
  const patch: Partial<PipelineFields> = {};
  if (req.name !== undefined) patch.name = req.name;
  if (req.description !== undefined) patch.description = req.description;
  if (req.scriptumTemplate !== undefined) patch.template = req.scriptumTemplate;
  if (req.options !== undefined) patch.options = req.options.values;
  if (req.storeEntityId !== undefined) patch.storeEntityId = req.storeEntityId;
  return patch;
}
