/**
 * The client half of the `k3-ingest` command: jobs, trigger, rules and pipelines against a
 * running server, modelled on `dodil k3 ingest`. It speaks the Connect protocol to the
 * HTTP port (`--endpoint`, default http://localhost:8080) with `--token` or DODIL_TOKEN.
 * Output is a table or JSON (`-o json`, the API's own JSON). The exit code is the gRPC
 * code of a failed call (3 invalid argument, 5 not found, 16 unauthenticated, …), 1 when
 * a waited-for job did not complete, 2 for usage errors.
 */
import { readFileSync } from "node:fs";
import { connect as http2Connect, type ClientHttp2Session } from "node:http2";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { create, toJson, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { GetIngestStatusResponseSchema, IngestJobSchema, IngestService, IngestStatus, type IngestJob } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { StorageService } from "../../gen/dodil/k3/storage/v1/storage_pb";
import { bucketCommand, objectCommand } from "./storage-commands";
import { bodyOf, parseOptions, render, table, UsageError, type Out } from "./common";
import { pipelineCommand, ruleCommand } from "./config-commands";
import { sourceCommand, syncCommand, syncFlags } from "./sync-commands";
import { credentialCommand } from "./credential-commands";
import { searchCommand } from "./search-command";
import { collectionCommand, vectorCommand } from "./vector-commands";
import { text } from "node:stream/consumers";
import { triggerMany } from "./trigger-many";
import { retryCommand, retryStatuses } from "./retry-command";
import { cancelOutcome, JOB_HEADER, jobRow, parseStatus, statusName } from "./job-view";
import { waitForJob, watchCommand } from "./watch-command";
import { VectorService } from "../../gen/dodil/k3/vector/v1/vector_pb";
import { SourceService } from "../../gen/dodil/k3/source/v1/source_pb";

export const USAGE = `usage: k3-ingest <command> [flags]   (--endpoint URL, --token T or DODIL_TOKEN, -o table|json)
  jobs list   -b BUCKET [--status FAILED] [-p PIPELINE] [--rule RULE] [--prefix KEYS/] [--all | --page-token T]
  jobs get    -b BUCKET JOB_ID
  jobs cancel -b BUCKET JOB_ID
  jobs watch  -b BUCKET [JOB_ID] [--status S] [-p PIPELINE] [--rule RULE] [--resume-after EVENT_ID]
              (live lines on a terminal, JSON lines otherwise; Ctrl-C stops)
  jobs retry  -b BUCKET [JOB_ID | --status FAILED|PARTIAL|CANCELLED] [-p PIPELINE] [--rule RULE]
              [--include-permanent] [--dry-run]
  trigger     -b BUCKET KEY [-p PIPELINE | --rule RULE] [--option k=v …] [--request-id ID] [--wait]
              | -b BUCKET KEY KEY … | --prefix P | --glob 'docs/**/*.pdf'  [--yes above 100 objects]
  pipelines list|get|create|update|delete -b BUCKET [ID] [--name N] [--template T] [--option k=v …] [--json BODY]
              | delete -b BUCKET ID [--keep-outputs] [--dry-run]   (deletes its jobs and outputs unless kept)
  rules       list|get|create|update|delete -b BUCKET [ID] [--name N] [-p PIPELINE] [--include GLOB …]
              [--exclude GLOB …] [--mime TYPE …] [--priority N] [--json BODY]
  buckets     create NAME [-d DESCRIPTION] | ls | get NAME | rm NAME [--force]
              | cors NAME [--set FILE | --delete]   (FILE: {"CORSRules": […]} as aws s3api takes it, or {"rules": […]})
              | policy NAME [--set FILE | --delete] (FILE: a bucket policy {"Version": …, "Statement": […]})
  objects     put -b BUCKET FILE [-k KEY] | get -b BUCKET KEY [FILE|-] | ls -b BUCKET [--prefix P]
              | info -b BUCKET KEY | rm -b BUCKET KEY | url -b BUCKET KEY [--expires SECONDS]
              (dodil's names work too: object create|show|list|url|remove, bucket show|remove)
  sources     list|get|create|update|delete -b BUCKET [ID] [--name N] [--root PREFIX] [--interval SECONDS]
              [--s3-endpoint URL --s3-bucket B --s3-region R --access-key-id K]   (secret: K3_SOURCE_SECRET_ACCESS_KEY)
              [... --credential CREDENTIAL_ID instead of --access-key-id]
  credentials store --name N --access-key-id K [--source SOURCE_ID]   (secret: K3_CREDENTIAL_SECRET)
              | ls [--source SOURCE_ID] | validate CREDENTIAL_ID | rm CREDENTIAL_ID
  sync        discover -b BUCKET SOURCE_ID [--full] [--rule RULE] [--wait] | status -b BUCKET SOURCE_ID
              | ingest -b BUCKET SOURCE_ID [--retry-failed] [--rule RULE] [--object KEY]
  search      "QUERY" -b BUCKET [--top-k N] [--hybrid | --vector] [--collection NAME]
  collections ls -b BUCKET | create -b BUCKET NAME --dimensions N [--embed-model M] [-d DESCRIPTION]
              | rm -b BUCKET COLLECTION   (a collection of vectors you push; rm deletes its vectors too)
  vectors     push -b BUCKET COLLECTION FILE|- [--upsert]   (JSON lines: {"id", "values", "content", "metadata"})
              | rm -b BUCKET COLLECTION ID …`;

/** The usage lines of one command group (`jobs`, `rules` …), or undefined for an unknown one. */
export function groupUsage(group: string): string | undefined {
  const lines = USAGE.split("\n").slice(1);
  const out: string[] = [];
  let inGroup = false;
  for (const line of lines) {
    const head = /^ {2}(\S+)/.exec(line)?.[1];
    if (head) inGroup = head === group;
    if (inGroup) out.push(line);
  }
  return out.length ? `usage: k3-ingest ${group} …   (--endpoint URL, --token T or DODIL_TOKEN, -o table|json)\n${out.join("\n")}` : undefined;
}

/** The admin token a server wrote beside its data (K3_DATA_DIR, default .k3-data), when readable. */
function adminTokenBeside(env: NodeJS.ProcessEnv): string {
  try {
    return readFileSync(join(env.K3_DATA_DIR || ".k3-data", "admin-token"), "utf8").trim();
  } catch {
    return "";
  }
}

/** The flags each command takes, besides --endpoint, --token and -o. */
const TAKES: Record<string, string[]> = {
  "jobs list": ["bucket", "status", "pipeline", "rule", "prefix", "all", "page-token"],
  "jobs get": ["bucket"],
  "jobs watch": ["bucket", "status", "pipeline", "rule", "resume-after"],
  "jobs cancel": ["bucket"],
  "jobs retry": ["bucket", "status", "pipeline", "rule", "include-permanent", "dry-run"],
  trigger: ["bucket", "pipeline", "rule", "option", "wait", "request-id", "prefix", "glob", "yes"],
  "pipelines delete": ["bucket", "keep-outputs", "dry-run"],
  pipelines: ["bucket", "name", "template", "option", "json"],
  "rules list": ["bucket", "pipeline"],
  rules: ["bucket", "name", "pipeline", "include", "exclude", "mime", "priority", "json"],
  "buckets cors": ["set", "delete"],
  "buckets policy": ["set", "delete"],
  buckets: ["description", "force"],
  objects: ["bucket", "key", "prefix", "expires"],
  sources: ["bucket", "name", "description", "root", "interval", "s3-endpoint", "s3-bucket", "s3-region", "access-key-id", "credential", "json"],
  "credentials store": ["name", "access-key-id", "source"],
  "credentials ls": ["source"],
  "credentials list": ["source"],
  "credentials validate": [],
  "credentials rm": [],
  "credentials delete": [],
  "sync discover": ["bucket", "full", "rule", "wait"],
  "sync ingest": ["bucket", "rule", "retry-failed", "object"],
  "sync status": ["bucket"],
  search: ["bucket", "top-k", "hybrid", "vector", "collection"],
  "collections create": ["bucket", "dimensions", "embed-model", "description"],
  collections: ["bucket"],
  "vectors push": ["bucket", "upsert"],
  vectors: ["bucket"],
};

/** A usage message naming a flag the command does not take, or undefined when all fit. */
function flagsNotTaken(group: string | undefined, verb: string | undefined, given: string[]): string | undefined {
  const takes = TAKES[`${group} ${verb}`] ?? TAKES[group ?? ""];
  if (!takes) return undefined;
  const stray = given.filter((f) => !["endpoint", "token", "output"].includes(f) && !takes.includes(f));
  if (stray.length === 0) return undefined;
  const name = TAKES[`${group} ${verb}`] ? `${group} ${verb}` : group;
  return `${name} does not take ${stray.map((f) => `--${f}`).join(", ")}; it takes ${takes.length ? takes.map((f) => `--${f}`).join(", ") : "none besides --endpoint, --token and -o"}`;
}


/** The groups as dodil's CLI names them (`dodil k3 object create FILE -b B`), taken here too. */
export const GROUP_ALIASES: Record<string, string> = { object: "objects", bucket: "buckets" };

/** Runs a client command; resolves with the exit code. */
export async function runClientCli(argv: string[], env: NodeJS.ProcessEnv, out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  if (argv[0] && GROUP_ALIASES[argv[0]]) argv = [GROUP_ALIASES[argv[0]], ...argv.slice(1)];
  // `k3-ingest jobs --help` (or -h) prints the group's usage; `k3-ingest jobs` alone too, as an error.
  const group0 = argv[0] ?? "";
  if (argv.includes("--help") || argv.includes("-h")) {
    out.write(`${groupUsage(group0) ?? USAGE}\n`);
    return 0;
  }
  const needsVerb = ["jobs", "pipelines", "rules", "buckets", "objects", "sources", "sync", "credentials", "collections", "vectors"];
  if (needsVerb.includes(group0) && argv.length === 1) {
    err.write(`k3-ingest ${group0} needs a command\n${groupUsage(group0)}\n`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        endpoint: { type: "string" },
        token: { type: "string" },
        output: { type: "string", short: "o" },
        bucket: { type: "string", short: "b" },
        status: { type: "string" },
        pipeline: { type: "string", short: "p" },
        rule: { type: "string" },
        all: { type: "boolean" },
        option: { type: "string", multiple: true },
        wait: { type: "boolean" },
        name: { type: "string" },
        template: { type: "string" },
        include: { type: "string", multiple: true },
        exclude: { type: "string", multiple: true },
        mime: { type: "string", multiple: true },
        priority: { type: "string" },
        json: { type: "string" },
        description: { type: "string", short: "d" },
        force: { type: "boolean" },
        key: { type: "string", short: "k" },
        prefix: { type: "string" },
        expires: { type: "string" },
        root: { type: "string" },
        interval: { type: "string" },
        "s3-endpoint": { type: "string" },
        "s3-bucket": { type: "string" },
        "s3-region": { type: "string" },
        "access-key-id": { type: "string" },
        credential: { type: "string" },
        source: { type: "string" },
        full: { type: "boolean" },
        "retry-failed": { type: "boolean" },
        object: { type: "string" },
        glob: { type: "string" },
        yes: { type: "boolean" },
        "request-id": { type: "string" },
        "top-k": { type: "string" },
        hybrid: { type: "boolean" },
        vector: { type: "boolean" },
        collection: { type: "string" },
        "resume-after": { type: "string" },
        "include-permanent": { type: "boolean" },
        "dry-run": { type: "boolean" },
        "keep-outputs": { type: "boolean" },
        "page-token": { type: "string" },
        set: { type: "string" },
        delete: { type: "boolean" },
        dimensions: { type: "string" },
        "embed-model": { type: "string" },
        upsert: { type: "boolean" },
      },
    });
  } catch (e) {
    err.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  const [group, verb, ...rest] = positionals;
  const unknown = flagsNotTaken(group, verb, Object.keys(v).filter((k) => v[k as keyof typeof v] !== undefined));
  if (unknown) {
    err.write(`${unknown}\n${USAGE}\n`);
    return 2;
  }
  const asJson = (v.output ?? "table") === "json";
  if (v.output && !["table", "json"].includes(v.output)) {
    err.write(`-o ${v.output}: use table or json\n`);
    return 2;
  }
  const token = v.token || env.DODIL_TOKEN || adminTokenBeside(env);
  const endpoint = v.endpoint ?? env.K3_ENDPOINT ?? "http://localhost:8080";
  const transport = createConnectTransport({
    baseUrl: endpoint,
    httpVersion: "1.1",
    interceptors: [
      (next) => (req) => {
        if (token) req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      },
    ],
  });
  const ingest = createClient(IngestService, transport);
  const pipelines = createClient(PipelineService, transport);
  const showJob = (schema: DescMessage, msg: Parameters<typeof toJson>[1], job: IngestJob) => render(out, asJson, schema, msg, JOB_HEADER, [jobRow(job)]);
  const bucket = () => {
    if (!v.bucket) throw new UsageError("-b BUCKET is required");
    return v.bucket;
  };
  const id = (what: string) => {
    const x = group === "trigger" ? verb : rest[0];
    if (!x) throw new UsageError(`${what} is required`);
    return x;
  };

  try {
    // -p and --rule take a name as well as an id (when the name is the bucket's only one).
    if (v.pipeline && !v.pipeline.startsWith("pipe_") && v.bucket) {
      const named = (await pipelines.listPipelines({ bucket: v.bucket, pageSize: 1000 })).pipelines.filter((p) => p.name === v.pipeline);
      if (named.length !== 1) throw new UsageError(`-p ${JSON.stringify(v.pipeline)}: bucket ${v.bucket} has no pipeline of that id or name`);
      v.pipeline = named[0].pipelineId;
    }
    if (v.rule && !v.rule.startsWith("rule_") && v.bucket) {
      const named = (await ingest.listRules({ bucket: v.bucket, pageSize: 1000 })).rules.filter((r) => r.name === v.rule);
      if (named.length !== 1) throw new UsageError(`--rule ${JSON.stringify(v.rule)}: bucket ${v.bucket} has ${named.length ? "several rules" : "no rule"} of that name; give its id`);
      v.rule = named[0].ruleId;
    }
    if (group === "jobs" && verb === "list") {
      if (v.all && v["page-token"]) throw new UsageError("--all lists every page; --page-token starts at one: give one of them");
      const jobs: IngestJob[] = [];
      let pageToken = v["page-token"] ?? "";
      let next = "";
      let total = 0n;
      do {
        const res = await ingest.listIngestJobs({
          bucket: bucket(),
          statusFilter: v.status ? parseStatus(v.status) : IngestStatus.UNSPECIFIED,
          pipelineId: v.pipeline ?? "",
          ruleId: v.rule ?? "",
          keyPrefix: v.prefix ?? "",
          pageSize: v.all ? 1000 : 50,
          pageToken,
        });
        jobs.push(...res.jobs);
        total = res.pagination?.totalCount ?? 0n;
        next = res.pagination?.nextPageToken ?? "";
        pageToken = v.all ? next : "";
      } while (pageToken);
      if (asJson) {
        out.write(JSON.stringify({ jobs: jobs.map((j) => toJson(IngestJobSchema, j, { alwaysEmitImplicit: true })), totalCount: String(total), nextPageToken: next }, null, 2) + "\n");
      } else {
        out.write(table([JOB_HEADER, ...jobs.map(jobRow)]) + `${jobs.length} of ${total}${next ? ` — use --all, or --page-token ${next} for the next page` : ""}\n`);
      }
      return 0;
    }
    if (group === "jobs" && (verb === "get" || verb === "cancel")) {
      const res =
        verb === "get" ? await ingest.getIngestStatus({ bucket: bucket(), jobId: id("JOB_ID") }) : await ingest.cancelIngestJob({ bucket: bucket(), jobId: id("JOB_ID") });
      showJob(IngestService.method.getIngestStatus.output, res, res.job!);
      if (verb === "cancel" && !asJson) out.write(cancelOutcome(res.job!) + "\n");
      return 0;
    }
    if (group === "jobs" && verb === "watch") {
      const stop = new AbortController();
      const onInt = () => stop.abort();
      process.once("SIGINT", onInt);
      try {
        return await watchCommand(
          ingest,
          { bucket: bucket(), jobId: rest[0] ?? "", statusFilter: v.status ? parseStatus(v.status) : IngestStatus.UNSPECIFIED, pipelineId: v.pipeline ?? "", ruleId: v.rule ?? "", resumeAfter: v["resume-after"] ?? "" },
          asJson,
          out,
          stop.signal,
        );
      } catch (e) {
        if (stop.signal.aborted) return 0;
        throw e;
      } finally {
        process.off("SIGINT", onInt);
      }
    }
    if (group === "jobs" && verb === "retry") {
      return await retryCommand({
        ingest,
        bucket: bucket(),
        jobId: rest[0],
        statuses: retryStatuses(v.status === undefined ? undefined : parseStatus(v.status)),
        pipelineId: v.pipeline ?? "",
        ruleId: v.rule ?? "",
        includePermanent: v["include-permanent"] ?? false,
        dryRun: v["dry-run"] ?? false,
        asJson,
        out,
        table,
        row: jobRow,
        header: JOB_HEADER,
      });
    }
    if (group === "trigger") {
      if (v.pipeline && v.rule) throw new UsageError("use -p PIPELINE or --rule RULE, not both");
      const keys = [verb, ...rest].filter((k): k is string => k !== undefined);
      if (keys.length > 1 || v.prefix !== undefined || v.glob !== undefined) {
        if (v.wait || v["request-id"]) throw new UsageError("--wait and --request-id take one KEY; several keys, --prefix and --glob trigger without them");
        const request = { pipelineId: v.pipeline ?? "", ruleId: v.rule ?? "", options: parseOptions(v.option) };
        const storage = createClient(StorageService, transport);
        return await triggerMany({ ingest, storage, bucket: bucket(), keys, prefix: v.prefix, glob: v.glob, yes: v.yes, request, asJson, out, err, table, row: jobRow, header: JOB_HEADER });
      }
      const res = await ingest.triggerIngest({
        bucket: bucket(),
        object: { key: id("KEY") },
        pipelineId: v.pipeline ?? "",
        ruleId: v.rule ?? "",
        options: parseOptions(v.option),
        requestId: v["request-id"] ?? "",
      });
      let job = res.job!;
      if (!v.wait) {
        showJob(IngestService.method.triggerIngest.output, res, job);
        return 0;
      }
      job = await waitForJob(ingest, bucket(), job, err);
      showJob(GetIngestStatusResponseSchema, create(GetIngestStatusResponseSchema, { job }), job);
      if (job.status !== IngestStatus.COMPLETED) {
        err.write(`job ${job.jobId} ended ${statusName(job.status)}${job.error ? `: ${job.error}` : ""}\n`);
        return 1;
      }
      return 0;
    }
    if (group === "buckets" || group === "objects") {
      const ctx = {
        client: createClient(StorageService, transport),
        endpoint,
        token,
        asJson,
        out,
        flags: { bucket: v.bucket, description: v.description, force: v.force, key: v.key, prefix: v.prefix, expires: v.expires, set: v.set, delete: v.delete },
        args: rest,
        usage: (message: string) => new UsageError(message),
        table,
      };
      return group === "buckets" ? await bucketCommand(ctx, verb) : await objectCommand(ctx, verb);
    }
    if (group === "search") {
      const query = [verb, ...rest].filter((x) => x !== undefined).join(" ");
      const vector = createClient(VectorService, transport);
      return await searchCommand(
        { vector, bucket: bucket(), query, topK: v["top-k"], hybrid: v.hybrid, vectorOnly: v.vector, collection: v.collection, asJson, out, table },
        (message) => new UsageError(message),
      );
    }
    if (group === "collections" || group === "vectors") {
      const ctx = {
        vector: createClient(VectorService, transport),
        bucket,
        asJson,
        out,
        args: rest,
        flags: { dimensions: v.dimensions, embedModel: v["embed-model"], description: v.description, upsert: v.upsert },
        stdin: () => text(process.stdin),
        usage: (m: string) => new UsageError(m),
      };
      return group === "collections" ? await collectionCommand(ctx, verb) : await vectorCommand(ctx, verb);
    }
    if (group === "sources" || group === "sync") {
      const ctx = { sources: createClient(SourceService, transport), ingest, asJson, out, err, env, bucket, args: rest, flags: syncFlags(v, bodyOf), usage: (m: string) => new UsageError(m), table };
      return group === "sources" ? await sourceCommand(ctx, verb) : await syncCommand(ctx, verb);
    }
    if (group === "credentials") {
      const ctx = { sources: createClient(SourceService, transport), asJson, out, env, args: rest, flags: { name: v.name, source: v.source, accessKeyId: v["access-key-id"] }, usage: (m: string) => new UsageError(m) };
      return await credentialCommand(ctx, verb);
    }
    if (group === "pipelines") return await pipelineCommand(pipelines, verb, bucket, id, v, asJson, out);
    if (group === "rules") return await ruleCommand(ingest, verb, bucket, id, v, asJson, out);
    throw new UsageError(`unknown command ${positionals.join(" ") || "(none)"}`);
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`${e.message}\n${USAGE}\n`);
      return 2;
    }
    const ce = ConnectError.from(e);
    if (/EPIPE|ECONNRESET|socket hang up|Parse Error|HPE_/i.test(ce.rawMessage) && (await speaksOnlyHttp2(endpoint))) {
      err.write(`Unavailable: ${endpoint} speaks only HTTP/2 gRPC: that is the gRPC port; the CLI talks to the HTTP port (K3_HTTP_PORT, default 8080): --endpoint http://HOST:8080\n`);
      return Code.Unavailable;
    }
    err.write(`${Code[ce.code]}: ${ce.rawMessage}\n`);
    return ce.code;
  }
}

/** Whether the endpoint answers an HTTP/2 connection preface (a gRPC port does; the HTTP port answers HTTP/1.1). */
function speaksOnlyHttp2(endpoint: string): Promise<boolean> {
  return new Promise((resolve) => {
    let session: ClientHttp2Session | undefined;
    const done = (yes: boolean) => {
      clearTimeout(timer);
      session?.destroy();
      resolve(yes);
    };
    const timer = setTimeout(() => done(false), 2000);
    try {
      session = http2Connect(endpoint);
      session.once("remoteSettings", () => done(true));
      session.once("error", () => done(false));
    } catch {
      done(false);
    }
  });
}


