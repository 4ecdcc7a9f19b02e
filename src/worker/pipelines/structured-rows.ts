/**
 * `structured_rows` (kind warehouse): `.csv` / `.tsv`, `.jsonl` / `.ndjson`, `.json` and `.xlsx` objects
 * become rows (rows.ts) for the warehouse table, written in batches of `batch_size`
 * (default 500). Large objects are parsed in the sandbox process.
 */
import { extname } from "node:path";
import { PACKED_EXTENSIONS } from "../extract";
import { PermanentError } from "../failures";
import { rowsTaskSandboxed } from "../sandbox";
import { rowsTask, type RowsTaskParams } from "../tasks";
import { intOption, objectOf, textReadLimit, type PipelineExecutor } from "./types";

const FORMAT_BY_EXT: Readonly<Record<string, string>> = { ".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".xlsx": "xlsx" };

export const structuredRows: PipelineExecutor = {
  readsObject: true,
  readLimit: textReadLimit,
  template: "structured_rows",
  async run(ctx) {
    const batchSize = intOption(ctx.options, "batch_size", 500);
    const requested = ctx.options.format ?? "auto";
    const format = requested === "auto" ? FORMAT_BY_EXT[extname(ctx.job.key).toLowerCase()] : requested;
    if (!format) {
      throw new PermanentError(
        "parse",
        `unsupported file type "${extname(ctx.job.key) || "(none)"}" for "${ctx.job.key}"; structured_rows reads .csv, .tsv, .jsonl, .ndjson, .json and .xlsx`,
      );
    }
    const params: RowsTaskParams = { key: ctx.job.key, format, how: { delimiter: ctx.options.delimiter ?? "auto", sheet: ctx.options.sheet ?? "", encoding: ctx.options.encoding ?? "auto" }, limits: ctx.limits.parse };
    const object = objectOf(ctx);
    ctx.progress({ stage: "extracting" });
    const { rows } =
      object.size > ctx.limits.inlineBytes || PACKED_EXTENSIONS.has(extname(ctx.job.key).toLowerCase()) ? await rowsTaskSandboxed(object, params, ctx.signal, ctx.limits.sandbox) : rowsTask(await object.readAll(), params);
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
