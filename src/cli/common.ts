/** What the client commands share: usage errors, option and --json parsing, tables and JSON output. */
import { toJson, type DescMessage, type JsonObject } from "@bufbuild/protobuf";

export type Out = { write(s: string): unknown };

/** A mistake on the command line (exit code 2, with the usage). */
export class UsageError extends Error {}

export type Values = Record<string, string | boolean | string[] | undefined>;

export function parseOptions(pairs: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs ?? []) {
    const eq = p.indexOf("=");
    if (eq <= 0) throw new UsageError(`--option ${JSON.stringify(p)} must look like key=value`);
    out[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return out;
}

export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n") + "\n";
}

/** Writes a reply as the API's JSON (-o json) or as a table of `header` and `rows`. */
export function render(out: Out, asJson: boolean, schema: DescMessage, msg: Parameters<typeof toJson>[1], header: string[], rows: string[][]): void {
  out.write(asJson ? JSON.stringify(toJson(schema, msg, { alwaysEmitImplicit: true }), null, 2) + "\n" : table([header, ...rows]));
}

/** The --json body (the API's own request JSON) merged under the flags' fields. */
export function bodyOf(v: Values): JsonObject {
  if (typeof v.json !== "string") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(v.json);
  } catch {
    throw new UsageError(`--json is not valid JSON`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new UsageError("--json must be a JSON object");
  return parsed as JsonObject;
}

