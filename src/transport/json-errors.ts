/**
 * Why a JSON body does not decode as a request, in words that fix it: an unknown field
 * with the nearest known one ("did you mean pipelineId?"), an enum value with the values
 * accepted, a list given where a wrapper message (`{"values": […]}`) is expected with the
 * shape to send, a non-object where a message goes. Used by REST, Connect JSON and the
 * CLI's `--json`, so all three say the same; protobuf-es's own message is the fallback.
 * Also the body's first steps shared by the doors: JSON text parsed, and a binary message
 * that does not decode named by its type.
 */
import { fromBinary, fromJson, type DescField, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { nearest } from "../domain/suggest";

function findField(schema: DescMessage, name: string): DescField | undefined {
  return schema.fields.find((f) => f.name === name || f.jsonName === name);
}

const show = (v: JsonValue) => JSON.stringify(v).slice(0, 80);

/** A message whose only field is a repeated one (StringList and the like): `{"values": […]}`. */
function wrapperOf(m: DescMessage): DescField | undefined {
  return m.fields.length === 1 && m.fields[0].fieldKind === "list" ? m.fields[0] : undefined;
}

function enumProblem(field: DescField, value: JsonValue, path: string): string | undefined {
  const e = field.fieldKind === "enum" ? field.enum : field.fieldKind === "list" && field.listKind === "enum" ? field.enum : undefined;
  if (!e) return undefined;
  const values = field.fieldKind === "list" && Array.isArray(value) ? value : [value];
  for (const v of values) {
    if (v === null || (typeof v === "number" && e.values.some((x) => x.number === v))) continue;
    if (typeof v === "string" && e.values.some((x) => x.name === v)) continue;
    // Also against the names without their common prefix: "FAILD" is near INGEST_STATUS_FAILED.
    const prefix = /^[A-Z0-9]+(_[A-Z0-9]+)*_/.exec(e.values[0]?.name ?? "")?.[0] ?? "";
    const stem = (name: string) => (e.values.every((x) => x.name.startsWith(prefix)) ? name.slice(prefix.length) : name);
    const near = typeof v === "string" ? nearest(v, e.values.map((x) => x.name)) ?? e.values.find((x) => stem(x.name) === nearest(v, e.values.map((y) => stem(y.name))))?.name : undefined;
    return `${path} ${show(v)} is not a ${e.name}; ${near ? `did you mean "${near}"? ` : ""}accepted: ${e.values.map((x) => x.name).join(", ")} (or their numbers)`;
  }
  return undefined;
}

/** The first thing wrong with `json` as a `schema` message, said so it can be fixed; undefined when nothing is found. */
export function explainJson(schema: DescMessage, json: JsonValue, prefix = ""): string | undefined {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return `${prefix ? prefix.slice(0, -1) : "the body"} must be a JSON object (a ${schema.name}), got ${show(json)}`;
  }
  for (const [key, value] of Object.entries(json)) {
    const field = findField(schema, key);
    if (!field) {
      const names = schema.fields.map((f) => f.jsonName);
      const near = nearest(key, [...names, ...schema.fields.map((f) => f.name)]);
      const nearJson = near === undefined ? undefined : (findField(schema, near)?.jsonName ?? near);
      return `unknown field "${prefix}${key.slice(0, 80)}" of ${schema.name}; ${nearJson ? `did you mean "${nearJson}"? ` : ""}its fields are ${names.join(", ")}`;
    }
    const path = `${prefix}${field.jsonName}`;
    const bad = enumProblem(field, value, path);
    if (bad) return bad;
    if (value === null) continue;
    if (field.fieldKind === "message") {
      const wrapped = wrapperOf(field.message);
      if (Array.isArray(value) && wrapped) {
        return `${path} takes {"${wrapped.jsonName}": […]}, not a bare list: send "${field.jsonName}": {"${wrapped.jsonName}": ${show(value)}}`;
      }
      const inner = explainJson(field.message, value, `${path}.`);
      if (inner) return inner;
    } else if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const inner = explainJson(field.message, value[i], `${path}[${i}].`);
        if (inner) return inner;
      }
    }
  }
  return undefined;
}

/** A request body's JSON text, or INVALID_ARGUMENT saying why it is not JSON. */
export function parseJsonBody(raw: Uint8Array): JsonValue {
  try {
    return JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("utf8")) as JsonValue;
  } catch (err) {
    throw new ConnectError(`request body is not valid JSON: ${(err as Error).message}`, Code.InvalidArgument);
  }
}

/** fromBinary that fails with INVALID_ARGUMENT naming the message type (`what`: "request", "request body"). */
export function decodeBinary<T extends DescMessage>(schema: T, bytes: Uint8Array, what: string): ReturnType<typeof fromBinary<T>> {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new ConnectError(`${what} is not a valid ${schema.typeName}: ${(err as Error).message}`, Code.InvalidArgument);
  }
}

/** fromJson that fails with INVALID_ARGUMENT "invalid <Message>: " and explainJson's words (the decoder's own as a fallback). */
export function decodeJson<T extends DescMessage>(schema: T, json: JsonValue): ReturnType<typeof fromJson<T>> {
  try {
    return fromJson(schema, json, { ignoreUnknownFields: false });
  } catch (err) {
    // protobuf-es names the field by its full name: keep the field's own.
    const own = (err as Error).message.replace(/^cannot decode (message|field) ([\w.]+) from JSON: /, (_m, kind: string, name: string) => (kind === "field" ? `${name.split(".").pop()}: ` : ""));
    throw new ConnectError(`invalid ${schema.name}: ${explainJson(schema, json) ?? own}`, Code.InvalidArgument);
  }
}
