/**
 * `structured_rows` (kind warehouse): `.csv` (header row, RFC 4180 quoting), `.jsonl` /
 * `.ndjson` (one JSON object per line) and `.json` (an array of objects, or one object)
 * become rows — JSON objects — for the warehouse table, written in batches of
 * `batch_size` (default 500).
 */
import { readFile, stat } from "node:fs/promises";
import { extname } from "node:path";
import { PermanentError } from "../failures";
import { intOption, type PipelineExecutor } from "./types";

/** Parses CSV text into records of fields (RFC 4180: quotes, doubled quotes, CRLF). */
export function parseCsv(text: string, key: string): string[][] {
  const records: string[][] = [];
  let field = "";
  let record: string[] = [];
  let quoted = false;
  let line = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          quoted = false;
        }
      } else {
        if (c === "\n") line++;
        field += c;
      }
    } else if (c === '"' && field === "") {
      quoted = true;
    } else if (c === ",") {
      record.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      record.push(field);
      records.push(record);
      record = [];
      field = "";
      line++;
    } else {
      field += c;
    }
  }
  if (quoted) throw new PermanentError("parse", `CSV "${key}" has an unterminated quoted field (line ${line})`);
  if (field !== "" || record.length > 0) {
    record.push(field);
    records.push(record);
  }
  // Blank lines carry no row.
  return records.filter((r) => !(r.length === 1 && r[0] === ""));
}

function csvRows(text: string, key: string): Record<string, string>[] {
  const [header, ...records] = parseCsv(text, key);
  if (!header) return [];
  const names = header.map((h, i) => (h.trim() === "" || header.indexOf(h) !== i ? `column_${i + 1}` : h.trim()));
  return records.map((r, n) => {
    if (r.length !== names.length) {
      throw new PermanentError("parse", `CSV "${key}" record ${n + 2} has ${r.length} fields; the header has ${names.length}`);
    }
    return Object.fromEntries(names.map((name, i) => [name, r[i]]));
  });
}

function jsonlRows(text: string, key: string): unknown[] {
  const rows: unknown[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new PermanentError("parse", `"${key}" line ${i + 1} is not valid JSON: ${(err as Error).message}`);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new PermanentError("parse", `"${key}" line ${i + 1} is not a JSON object`);
    }
    rows.push(value);
  });
  return rows;
}

function jsonRows(text: string, key: string): unknown[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new PermanentError("parse", `"${key}" is not valid JSON: ${(err as Error).message}`);
  }
  const rows = Array.isArray(value) ? value : [value];
  rows.forEach((r, i) => {
    if (r === null || typeof r !== "object" || Array.isArray(r)) {
      throw new PermanentError("parse", `"${key}" element ${i} is not a JSON object`);
    }
  });
  return rows;
}

const FORMAT_BY_EXT: Readonly<Record<string, string>> = { ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json" };

export const structuredRows: PipelineExecutor = {
  readsObject: true,
  template: "structured_rows",
  async run(ctx) {
    const batchSize = intOption(ctx.options, "batch_size", 500);
    const requested = ctx.options.format ?? "auto";
    const format = requested === "auto" ? FORMAT_BY_EXT[extname(ctx.job.key).toLowerCase()] : requested;
    if (!format) {
      throw new PermanentError(
        "parse",
        `unsupported file type "${extname(ctx.job.key) || "(none)"}" for "${ctx.job.key}"; structured_rows reads .csv, .jsonl, .ndjson and .json`,
      );
    }
    const st = await stat(ctx.path);
    if (st.size > ctx.limits.maxObjectBytes) {
      throw new PermanentError("read", `object "${ctx.job.key}" is ${st.size} bytes; the limit is ${ctx.limits.maxObjectBytes}`);
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(await readFile(ctx.path, { signal: ctx.signal }));
    } catch (err) {
      ctx.signal.throwIfAborted();
      throw new PermanentError("read", `object "${ctx.job.key}" is not valid UTF-8 text`, { cause: err });
    }
    const rows = format === "csv" ? csvRows(text, ctx.job.key) : format === "jsonl" ? jsonlRows(text, ctx.job.key) : jsonRows(text, ctx.job.key);
    return {
      status: "completed",
      output: { kind: "warehouse", rows, batchSize },
      chunksCreated: 0,
      embeddingsCreated: 0,
      vectorStatus: "",
      error: "",
      errorDetails: "",
    };
  },
};
