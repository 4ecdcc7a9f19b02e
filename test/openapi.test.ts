/**
 * GET /openapi.json: an OpenAPI 3.1 document, valid by a well-kept validator, with every
 * REST route of the descriptors and schemas that follow the protobuf JSON mapping.
 */
import { SourceService } from "../gen/dodil/k3/source/v1/source_pb";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { getOption, hasOption } from "@bufbuild/protobuf";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { http as httpRule } from "../gen/google/api/annotations_pb";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";

let s: TestServers;
let doc: J;
beforeAll(async () => {
  s = await startServers();
  doc = (await jsonClient(() => s.httpUrl)("GET", "/openapi.json")).json;
});
afterAll(() => s.stop());

test("the document validates as OpenAPI 3.1", () => {
  const out = execFileSync(process.execPath, [join(__dirname, "helpers", "validate-openapi.mjs")], { input: JSON.stringify(doc) });
  expect(JSON.parse(String(out))).toEqual({ valid: true, version: "3.1", errors: [] });
});

test("every google.api.http route is in it, with its path parameters", () => {
  let routes = 0;
  for (const service of [IngestService, PipelineService, SourceService]) {
    for (const method of service.methods) {
      if (!hasOption(method, httpRule)) continue;
      const rule = getOption(method, httpRule);
      if (rule.pattern.case === undefined || rule.pattern.case === "custom") continue;
      routes++;
      const op = doc.paths[rule.pattern.value]?.[rule.pattern.case];
      expect({ route: `${rule.pattern.case} ${rule.pattern.value}`, op: Boolean(op) }).toEqual({ route: `${rule.pattern.case} ${rule.pattern.value}`, op: true });
      const pathParams = [...rule.pattern.value.matchAll(/\{([a-z_]+)\}/g)].map((m) => m[1]);
      expect(op.parameters.filter((p: J) => p.in === "path").map((p: J) => p.name)).toEqual(pathParams);
      expect(Boolean(op.requestBody)).toBe(rule.body === "*");
    }
  }
  expect(routes).toBe(36); // 17 of IngestService, 6 of PipelineService, 13 of SourceService
  // The watch is a stream: Server-Sent Events, not one JSON answer.
  expect(Object.keys(doc.paths["/{bucket}/ingest/jobs:watch"].get.responses["200"].content)).toEqual(["text/event-stream"]);
});

test("schemas follow the JSON mapping: counters numbers, timestamps strings, enums by name", () => {
  const job = doc.components.schemas["dodil.k3.ingest.v1.IngestJob"].properties;
  expect(job.chunksCreated).toEqual({ type: "integer", format: "int32" });
  expect(job.createdAt).toMatchObject({ type: "string", format: "int64" });
  expect(job.status.enum).toContain("INGEST_STATUS_COMPLETED");
  expect(job.object).toEqual({ $ref: "#/components/schemas/dodil.k3.ingest.v1.ObjectRef" });
  const list = doc.paths["/{bucket}/ingest/jobs"].get;
  expect(list.parameters.map((p: J) => p.name)).toEqual(["bucket", "status_filter", "pipeline_id", "rule_id", "page_size", "page_token", "source_id", "key_prefix"]);
  expect(doc.components.schemas["dodil.k3.ingest.v1.Pagination"].properties.totalCount.type).toBe("string");
  expect(doc.components.securitySchemes.bearerAuth).toEqual({ type: "http", scheme: "bearer" });
});
