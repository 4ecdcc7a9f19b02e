/**
 * `k3-ingest pipelines …` and `k3-ingest rules …`: CRUD over Connect, with every documented
 * flag wired (on update too) and `--json` for the API's own request body.
 */
import type { DescMessage, JsonObject, toJson } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { CreateRuleRequestSchema, IngestService, UpdateRuleRequestSchema } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { CreatePipelineRequestSchema, PipelineService, UpdatePipelineRequestSchema } from "../../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { bodyOf, parseOptions, render, UsageError, type Out, type Values } from "./common";
import { decodeJson } from "../transport/json-errors";

export async function pipelineCommand(
  c: Client<typeof PipelineService>,
  verb: string | undefined,
  bucket: () => string,
  id: (what: string) => string,
  v: Values,
  asJson: boolean,
  out: Out,
): Promise<number> {
  const show = (schema: DescMessage, msg: Parameters<typeof toJson>[1], rows: string[][]) =>
    render(out, asJson, schema, msg, ["PIPELINE", "NAME", "TEMPLATE", "KIND"], rows);
  const row = (p: { pipelineId: string; name: string; scriptumTemplate: string; storeEntityKind: string }) => [p.pipelineId, p.name, p.scriptumTemplate, p.storeEntityKind || "-"];
  const m = PipelineService.method;
  switch (verb) {
    case "list": {
      const res = await c.listPipelines({ bucket: bucket(), pageSize: 1000 });
      show(m.listPipelines.output, res, res.pipelines.map(row));
      return 0;
    }
    case "get": {
      const res = await c.getPipeline({ bucket: bucket(), pipelineId: id("PIPELINE_ID") });
      show(m.getPipeline.output, res, [row(res.pipeline!)]);
      return 0;
    }
    case "create": {
      const res = await c.createPipeline(
        decodeJson(CreatePipelineRequestSchema, {
          name: String(v.name ?? ""),
          ...(v.template ? { scriptumTemplate: String(v.template) } : {}),
          options: parseOptions(v.option as string[] | undefined),
          ...bodyOf(v),
          bucket: bucket(),
        }),
      );
      show(m.createPipeline.output, res, [row(res.pipeline!)]);
      return 0;
    }
    case "update": {
      const pipelineId = id("PIPELINE_ID");
      const set = parseOptions(v.option as string[] | undefined);
      // --option k=v sets those keys and keeps the others (the API replaces the whole map).
      const options: JsonObject = Object.keys(set).length ? { options: { values: { ...(await c.getPipeline({ bucket: bucket(), pipelineId })).pipeline?.options, ...set } } } : {};
      const res = await c.updatePipeline(
        decodeJson(UpdatePipelineRequestSchema, { ...(v.name !== undefined ? { name: String(v.name) } : {}), ...(v.template ? { scriptumTemplate: String(v.template) } : {}), ...options, ...bodyOf(v), bucket: bucket(), pipelineId }),
      );
      show(m.updatePipeline.output, res, [row(res.pipeline!)]);
      return 0;
    }
    case "delete": {
      const pipelineId = id("PIPELINE_ID");
      const dryRun = v["dry-run"] === true;
      const res = await c.deletePipeline({ bucket: bucket(), pipelineId, keepOutputs: v["keep-outputs"] === true, validateOnly: dryRun });
      if (asJson) {
        out.write(JSON.stringify({ dryRun, deletedJobs: Number(res.deletedJobs), deletedChunks: Number(res.deletedChunks), deletedRows: Number(res.deletedRows), outputsKept: res.outputsKept }) + "\n");
        return 0;
      }
      const what = `${res.deletedJobs} jobs, ${res.deletedChunks} chunks and ${res.deletedRows} rows`;
      out.write(
        res.outputsKept
          ? `${dryRun ? "would delete" : "deleted"} pipeline ${pipelineId}; its ${what} ${dryRun ? "would stay" : "stay"} (--keep-outputs)\n`
          : `${dryRun ? "would delete" : "deleted"} pipeline ${pipelineId} with its ${what}\n`,
      );
      return 0;
    }
  }
  throw new UsageError(`unknown pipelines command ${verb ?? ""}`);
}

function integer(x: Values[string]): number {
  const n = Number(x);
  if (!Number.isInteger(n)) throw new UsageError(`--priority ${String(x)} is not an integer`);
  return n;
}

export async function ruleCommand(
  c: Client<typeof IngestService>,
  verb: string | undefined,
  bucket: () => string,
  id: (what: string) => string,
  v: Values,
  asJson: boolean,
  out: Out,
): Promise<number> {
  const show = (schema: DescMessage, msg: Parameters<typeof toJson>[1], rows: string[][]) =>
    render(out, asJson, schema, msg, ["RULE", "NAME", "PIPELINE", "PRIORITY", "ENABLED", "MATCH"], rows);
  const row = (r: { ruleId: string; name: string; pipelineId: string; priority: number; enabled: boolean; includePatterns: string[]; includeMimeTypes: string[] }) => [
    r.ruleId,
    r.name,
    r.pipelineId,
    String(r.priority),
    String(r.enabled),
    [...r.includePatterns, ...r.includeMimeTypes].join(" ") || "*",
  ];
  const m = IngestService.method;
  switch (verb) {
    case "list": {
      const res = await c.listRules({ bucket: bucket(), pipelineId: String(v.pipeline ?? ""), pageSize: 1000 });
      show(m.listRules.output, res, res.rules.map(row));
      return 0;
    }
    case "get": {
      const res = await c.getRule({ bucket: bucket(), ruleId: id("RULE_ID") });
      show(m.getRule.output, res, [row(res.rule!)]);
      return 0;
    }
    case "create": {
      const priority = v.priority === undefined ? 0 : integer(v.priority);
      const res = await c.createRule(
        decodeJson(CreateRuleRequestSchema, {
          name: String(v.name ?? ""),
          pipelineId: String(v.pipeline ?? ""),
          includePatterns: (v.include as string[] | undefined) ?? [],
          excludePatterns: (v.exclude as string[] | undefined) ?? [],
          includeMimeTypes: (v.mime as string[] | undefined) ?? [],
          priority,
          ...bodyOf(v),
          bucket: bucket(),
        }),
      );
      show(m.createRule.output, res, [row(res.rule!)]);
      return 0;
    }
    case "update": {
      const list = (k: string) => (v[k] === undefined ? undefined : { values: v[k] as string[] });
      const flags = Object.fromEntries(
        Object.entries({
          name: v.name,
          pipelineId: v.pipeline,
          priority: v.priority === undefined ? undefined : integer(v.priority),
          includePatterns: list("include"),
          excludePatterns: list("exclude"),
          includeMimeTypes: list("mime"),
        }).filter(([, x]) => x !== undefined),
      );
      const res = await c.updateRule(decodeJson(UpdateRuleRequestSchema, { ...flags, ...bodyOf(v), bucket: bucket(), ruleId: id("RULE_ID") }));
      show(m.updateRule.output, res, [row(res.rule!)]);
      return 0;
    }
    case "delete":
      await c.deleteRule({ bucket: bucket(), ruleId: id("RULE_ID") });
      out.write(asJson ? "{}\n" : "deleted\n");
      return 0;
  }
  throw new UsageError(`unknown rules command ${verb ?? ""}`);
}
