/**
 * An OpenAPI 3.1 document for the REST door, derived from the same descriptors and
 * `google.api.http` rules the REST router is built from: paths and methods from the rules,
 * path and query parameters from the request fields, and JSON Schemas that follow the
 * protobuf JSON mapping (lowerCamelCase names, enums as names, 64-bit integers as
 * strings). `npm run build` writes it to dist/openapi.json; the server serves it at
 * GET /openapi.json.
 */
import { getOption, hasOption, ScalarType, type DescField, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { http as httpRule } from "../../gen/google/api/annotations_pb";
import { parseTemplate } from "./rest";

type Schema = Record<string, unknown>;

const INT64 = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);
const INT32 = new Set([ScalarType.INT32, ScalarType.UINT32, ScalarType.SINT32, ScalarType.FIXED32, ScalarType.SFIXED32]);

function scalarSchema(t: ScalarType): Schema {
  if (t === ScalarType.STRING) return { type: "string" };
  if (t === ScalarType.BOOL) return { type: "boolean" };
  if (t === ScalarType.BYTES) return { type: "string", contentEncoding: "base64" };
  if (INT64.has(t)) return { type: "string", format: "int64", pattern: "^-?[0-9]+$" };
  if (INT32.has(t)) return { type: "integer", format: "int32" };
  return { type: "number" };
}

function fieldSchema(f: DescField, refs: Set<DescMessage>): Schema {
  const ref = (m: DescMessage) => {
    refs.add(m);
    return { $ref: `#/components/schemas/${m.typeName}` };
  };
  const enumSchema = (values: string[]) => ({ type: "string", enum: values });
  switch (f.fieldKind) {
    case "scalar":
      return scalarSchema(f.scalar);
    case "enum":
      return enumSchema(f.enum.values.map((v) => v.name));
    case "message":
      return ref(f.message);
    case "list":
      return {
        type: "array",
        items:
          f.listKind === "scalar" ? scalarSchema(f.scalar) : f.listKind === "enum" ? enumSchema(f.enum.values.map((v) => v.name)) : ref(f.message),
      };
    case "map":
      return {
        type: "object",
        additionalProperties:
          f.mapKind === "scalar" ? scalarSchema(f.scalar) : f.mapKind === "enum" ? enumSchema(f.enum.values.map((v) => v.name)) : ref(f.message),
      };
  }
}

function messageSchema(m: DescMessage, refs: Set<DescMessage>): Schema {
  const properties: Record<string, Schema> = {};
  for (const f of m.fields) properties[f.jsonName] = fieldSchema(f, refs);
  return { type: "object", description: `${m.typeName}`, properties, additionalProperties: false };
}

/** Builds the OpenAPI document of the REST routes of `services`. */
export function buildOpenApi(services: readonly DescService[], version: string): Schema {
  const refs = new Set<DescMessage>();
  const paths: Record<string, Record<string, unknown>> = {};
  for (const service of services) {
    for (const method of service.methods) {
      if (!hasOption(method, httpRule)) continue;
      const rule = getOption(method, httpRule);
      if (rule.pattern.case === undefined || rule.pattern.case === "custom") continue;
      const template = rule.pattern.value;
      const { segments } = parseTemplate(template);
      const pathFields = new Set(segments.flatMap((s) => ("field" in s ? [s.field] : [])));
      const parameters: Schema[] = [...pathFields].map((name) => ({
        name,
        in: "path",
        required: true,
        schema: { type: "string" },
      }));
      const op: Record<string, unknown> = {
        operationId: `${service.name}_${method.name}`,
        summary: method.name,
        tags: [service.name],
        parameters,
        responses: {
          "200":
            method.methodKind === "server_streaming"
              ? { description: `Server-Sent Events: each event's data is a ${method.output.name} (id: its eventId; send it back as Last-Event-ID to resume)`, content: { "text/event-stream": { schema: { $ref: `#/components/schemas/${method.output.typeName}` } } } }
              : { description: "OK", content: { "application/json": { schema: { $ref: `#/components/schemas/${method.output.typeName}` } } } },
          default: { description: "Error", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
        },
      };
      refs.add(method.output);
      if (rule.body === "*") {
        const body = messageSchema(method.input, refs);
        const props = body.properties as Record<string, Schema>;
        for (const f of method.input.fields) if (pathFields.has(f.name)) delete props[f.jsonName];
        op.requestBody = { required: true, content: { "application/json": { schema: body } } };
      } else {
        for (const f of method.input.fields) {
          if (pathFields.has(f.name) || f.fieldKind === "message" || f.fieldKind === "map") continue;
          parameters.push({ name: f.name, in: "query", required: false, schema: fieldSchema(f, refs) });
        }
      }
      // OpenAPI has no multi-segment parameter: `{key=**}` is written `{key}` (its slashes percent-encoded or not).
      const path = template.replace(/\{([a-z_][a-z0-9_.]*)=\*\*?\}/g, "{$1}");
      paths[path] ??= {};
      paths[path][rule.pattern.case] = op;
    }
  }
  const schemas: Record<string, Schema> = {
    Error: {
      type: "object",
      properties: { code: { type: "string" }, message: { type: "string" }, details: { type: "array", items: {} } },
      required: ["code", "message"],
    },
  };
  // Messages referenced from messages are added as they are found.
  const done = new Set<DescMessage>();
  for (let pending = [...refs]; pending.length > 0; pending = [...refs].filter((m) => !done.has(m))) {
    for (const m of pending) {
      done.add(m);
      schemas[m.typeName] = messageSchema(m, refs);
    }
  }
  return {
    openapi: "3.1.0",
    info: { title: "K3 ingest API (k3-ingest)", version, description: "REST routes of dodil.k3.ingest.v1.IngestService and dodil.k3.pipeline.v1.PipelineService." },
    servers: [{ url: "/" }],
    security: [{ bearerAuth: [] }],
    paths,
    components: { schemas, securitySchemes: { bearerAuth: { type: "http", scheme: "bearer" } } },
  };
}
