/**
 * `k3-ingest sources …` (SourceService) and `k3-ingest sync discover|ingest|status`
 * (IngestService's sync RPCs), over Connect like the other client commands. An external
 * source's secret is read from K3_SOURCE_SECRET_ACCESS_KEY, never from the command line
 * (where `ps` would show it). `sync discover --wait` follows the discovery until it ends
 * and exits 0 when it completed, 1 otherwise.
 */
import { toJson, type DescMessage, type JsonObject } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { decodeJson } from "../transport/json-errors";
import { IngestService, type Discovery } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { CreateSourceRequestSchema, SourceProvider, SourceService, SourceStatus, UpdateSourceRequestSchema, type Source } from "../../gen/dodil/k3/source/v1/source_pb";

type Out = { write(s: string): unknown };

/** What the sync commands need from the command line. */
export interface SyncCommandContext {
  sources: Client<typeof SourceService>;
  ingest: Client<typeof IngestService>;
  asJson: boolean;
  out: Out;
  err: Out;
  env: NodeJS.ProcessEnv;
  bucket(): string;
  args: string[];
  flags: {
    name?: string;
    description?: string;
    root?: string;
    interval?: string;
    s3Endpoint?: string;
    s3Bucket?: string;
    s3Region?: string;
    accessKeyId?: string;
    credential?: string;
    full?: boolean;
    rule?: string;
    retryFailed?: boolean;
    object?: string;
    wait?: boolean;
    json?: JsonObject;
  };
  usage(message: string): Error;
  table(rows: string[][]): string;
}

/** The flags of the sources and sync commands, from the parsed command line. */
export function syncFlags(v: Record<string, string | boolean | string[] | undefined>, bodyOf: (v: Record<string, string | boolean | string[] | undefined>) => JsonObject): SyncCommandContext["flags"] {
  const str = (k: string) => (typeof v[k] === "string" ? (v[k] as string) : undefined);
  const bool = (k: string) => (typeof v[k] === "boolean" ? (v[k] as boolean) : undefined);
  return {
    name: str("name"),
    description: str("description"),
    root: str("root"),
    interval: str("interval"),
    s3Endpoint: str("s3-endpoint"),
    s3Bucket: str("s3-bucket"),
    s3Region: str("s3-region"),
    accessKeyId: str("access-key-id"),
    credential: str("credential"),
    full: bool("full"),
    rule: str("rule"),
    retryFailed: bool("retry-failed"),
    object: str("object"),
    wait: bool("wait"),
    json: v.json === undefined ? undefined : bodyOf(v),
  };
}

const HEADER = ["SOURCE", "PROVIDER", "NAME", "STATUS", "OBJECTS", "INDEXED", "INTERVAL"];
const row = (s: Source) => [
  s.sourceId,
  SourceProvider[s.provider],
  s.name,
  SourceStatus[s.status],
  String(s.totalObjects),
  String(s.indexedObjects),
  s.syncIntervalSeconds ? `${s.syncIntervalSeconds}s` : "manual",
];

function show(c: SyncCommandContext, schema: DescMessage, msg: Parameters<typeof toJson>[1], rows: string[][]): void {
  c.out.write(c.asJson ? JSON.stringify(toJson(schema, msg, { alwaysEmitImplicit: true }), null, 2) + "\n" : c.table(rows));
}

function sourceId(c: SyncCommandContext): string {
  const id = c.args[0];
  if (!id) throw c.usage("SOURCE_ID is required");
  return id;
}

/** The request fields the flags give (the --json body under them). */
function fieldsOf(c: SyncCommandContext): JsonObject {
  const f = c.flags;
  const body: JsonObject = { ...(f.json ?? {}) };
  if (f.name !== undefined) body.name = f.name;
  if (f.description !== undefined) body.description = f.description;
  if (f.root !== undefined) body.rootPath = f.root;
  if (f.interval !== undefined) body.syncIntervalSeconds = f.interval;
  if (f.s3Endpoint || f.s3Bucket || f.accessKeyId || f.credential) {
    body.externalS3 = {
      endpoint: f.s3Endpoint ?? "",
      bucket: f.s3Bucket ?? "",
      region: f.s3Region ?? "",
      // A stored credential (credentials store) instead of a key pair of the source's own.
      ...(f.credential ? { credentialId: f.credential } : { accessKeyId: f.accessKeyId ?? "", secretAccessKey: c.env.K3_SOURCE_SECRET_ACCESS_KEY ?? "" }),
    };
  }
  return body;
}

/** Runs `sources list|get|create|update|delete`. */
export async function sourceCommand(c: SyncCommandContext, verb: string | undefined): Promise<number> {
  const m = SourceService.method;
  const bucket = c.bucket();
  switch (verb) {
    case "list":
    case "ls": {
      const res = await c.sources.listSources({ bucket, pageSize: 1000 });
      show(c, m.listSources.output, res, [HEADER, ...res.sources.map(row)]);
      return 0;
    }
    case "get": {
      const res = await c.sources.getSource({ bucket, sourceId: sourceId(c) });
      show(c, m.getSource.output, res, [HEADER, row(res.source!)]);
      return 0;
    }
    case "create": {
      const req = decodeJson(CreateSourceRequestSchema, { provider: "SOURCE_PROVIDER_EXTERNAL_S3", ...fieldsOf(c), bucket });
      const res = await c.sources.createSource(req);
      show(c, m.createSource.output, res, [HEADER, row(res.source!)]);
      return 0;
    }
    case "update": {
      const req = decodeJson(UpdateSourceRequestSchema, { ...fieldsOf(c), bucket, sourceId: sourceId(c) });
      const res = await c.sources.updateSource(req);
      show(c, m.updateSource.output, res, [HEADER, row(res.source!)]);
      return 0;
    }
    case "delete":
    case "rm":
      await c.sources.deleteSource({ bucket, sourceId: sourceId(c) });
      c.out.write(c.asJson ? "{}\n" : "deleted\n");
      return 0;
  }
  throw c.usage(`unknown sources command ${verb ?? ""}`);
}

const progress = (d: Discovery) =>
  `${d.discoveryId}  ${d.state}  scanned ${d.scanned}  new ${d.newObjects}  modified ${d.modified}  unchanged ${d.unchanged}  deleted ${d.deleted}  dispatched ${d.dispatched}${d.error ? `  error: ${d.error}` : ""}`;

/** Runs `sync discover|ingest|status`. */
export async function syncCommand(c: SyncCommandContext, verb: string | undefined): Promise<number> {
  const m = IngestService.method;
  const bucket = c.bucket();
  switch (verb) {
    case "discover": {
      const id = sourceId(c);
      const res = await c.ingest.triggerDiscovery({ bucket, sourceId: id, fullSync: c.flags.full ?? false, ruleId: c.flags.rule ?? "" });
      if (!c.flags.wait) {
        show(c, m.triggerDiscovery.output, res, [["DISCOVERY", "ACCEPTED", "MESSAGE"], [res.jobId, String(res.accepted), res.message]]);
        return res.accepted ? 0 : 1;
      }
      if (!res.accepted) c.err.write(`${res.message}; waiting for it\n`);
      let last = "";
      for (;;) {
        const st = await c.ingest.getSyncStatus({ bucket, sourceId: id });
        const d = st.current?.discoveryId === res.jobId ? st.current : st.last?.discoveryId === res.jobId ? st.last : undefined;
        if (d) {
          const line = progress(d);
          if (line !== last) c.err.write(line + "\n");
          last = line;
          if (d.state !== "pending" && d.state !== "running") {
            show(c, m.getSyncStatus.output, st, [["DISCOVERY", "STATE", "SCANNED", "DISPATCHED"], [d.discoveryId, d.state, String(d.scanned), String(d.dispatched)]]);
            return d.state === "completed" ? 0 : 1;
          }
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    case "ingest": {
      const res = await c.ingest.triggerIngestion({ bucket, sourceId: sourceId(c), ruleId: c.flags.rule ?? "", retryFailed: c.flags.retryFailed ?? false, sourceObjectId: c.flags.object ?? "" });
      show(c, m.triggerIngestion.output, res, [["DISPATCHED", "CONSIDERED", "MESSAGE"], [String(res.dispatched), String(res.considered), res.message]]);
      return 0;
    }
    case "status": {
      const st = await c.ingest.getSyncStatus({ bucket, sourceId: sourceId(c) });
      const counts = Object.entries(st.jobCounts).map(([k, n]) => `${k.replace("INGEST_STATUS_", "").toLowerCase()} ${n}`).join(", ");
      const d = st.current ?? st.last;
      show(c, m.getSyncStatus.output, st, [
        ["SOURCE", "SYNCING", "OBJECTS", "INDEXED", "DISCOVERY", "JOBS"],
        [st.sourceId, String(st.syncing), String(st.totalObjects), String(st.indexedObjects), d ? `${d.discoveryId} ${d.state}` : "-", counts || "-"],
      ]);
      return 0;
    }
  }
  throw c.usage(`unknown sync command ${verb ?? ""}`);
}
