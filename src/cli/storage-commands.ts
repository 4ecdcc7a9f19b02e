/**
 * `k3-ingest buckets …` and `k3-ingest objects …`, modelled on `dodil k3 bucket` and
 * `dodil k3 object`: buckets and the admin object routes through StorageService (Connect),
 * object bytes through the S3 byte plane with the bearer token (PUT/GET /{bucket}/{key}).
 */
import { createReadStream, createWriteStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fromJson, toJson, type DescMessage, type JsonObject, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { PutBucketCorsRequestSchema, StorageService, type Bucket, type CorsRule, type CorsRuleSchema, type ObjectInfo } from "../../gen/dodil/k3/storage/v1/storage_pb";
import { IngestStatus } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { uriEncode } from "../domain/uri";

type Out = { write(s: string): unknown };

/** What the storage commands need from the command line. */
export interface StorageCommandContext {
  client: Client<typeof StorageService>;
  endpoint: string;
  token: string;
  asJson: boolean;
  out: Out;
  flags: { bucket?: string; description?: string; force?: boolean; key?: string; prefix?: string; expires?: string; set?: string; delete?: boolean };
  args: string[];
  usage(message: string): Error;
  table(rows: string[][]): string;
}

function show(c: StorageCommandContext, schema: DescMessage, msg: Parameters<typeof toJson>[1], rows: string[][]): void {
  c.out.write(c.asJson ? JSON.stringify(toJson(schema, msg, { alwaysEmitImplicit: true }), null, 2) + "\n" : c.table(rows));
}

const bucketRow = (b: Bucket) => [b.name, String(b.objectCount), String(b.storageUsedBytes), String(b.ruleCount), b.description];
const BUCKET_HEADER = ["BUCKET", "OBJECTS", "BYTES", "RULES", "DESCRIPTION"];

/** Runs `buckets create|ls|get|rm|cors|policy`. */
export async function bucketCommand(c: StorageCommandContext, verb: string | undefined): Promise<number> {
  const m = StorageService.method;
  const name = () => {
    const n = c.args[0];
    if (!n) throw c.usage("NAME is required");
    return n;
  };
  switch (verb) {
    case "create": {
      const res = await c.client.createBucket({ name: name(), description: c.flags.description ?? "" });
      show(c, m.createBucket.output, res, [BUCKET_HEADER, bucketRow(res.bucket!)]);
      return 0;
    }
    case "ls":
    case "list": {
      const res = await c.client.listBuckets({ pageSize: 1000 });
      show(c, m.listBuckets.output, res, [BUCKET_HEADER, ...res.buckets.map(bucketRow)]);
      return 0;
    }
    case "get":
    case "show": {
      const res = await c.client.getBucket({ name: name() });
      show(c, m.getBucket.output, res, [BUCKET_HEADER, bucketRow(res.bucket!)]);
      return 0;
    }
    case "rm":
    case "remove":
    case "delete":
      await c.client.deleteBucket({ name: name(), force: c.flags.force ?? false });
      c.out.write(c.asJson ? "{}\n" : "deleted\n");
      return 0;
    case "cors":
      return corsCommand(c, name());
    case "policy":
      return policyCommand(c, name());
  }
  throw c.usage(`unknown buckets command ${verb ?? ""}`);
}

const CORS_HEADER = ["ID", "ORIGINS", "METHODS", "HEADERS", "EXPOSE", "MAX AGE"];
const corsRow = (r: CorsRule) => [r.id, r.allowedOrigins.join(","), r.allowedMethods.join(","), r.allowedHeaders.join(","), r.exposeHeaders.join(","), r.maxAgeSeconds === undefined ? "" : String(r.maxAgeSeconds)];

/**
 * A rules file: S3's `{"CORSRules": [{"AllowedOrigins": …}]}`, as `aws s3api put-bucket-cors`
 * takes it, or the API's `{"rules": [{"allowed_origins": …}]}`; the server checks the rules.
 */
function corsRulesOf(text: string, file: string, usage: (message: string) => Error): MessageInitShape<typeof CorsRuleSchema>[] {
  let doc: { CORSRules?: Array<Record<string, unknown>>; rules?: Array<Record<string, unknown>> };
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw usage(`${file} is not JSON: ${(err as Error).message}`);
  }
  const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
  if (Array.isArray(doc?.CORSRules)) {
    return doc.CORSRules.map((r) => ({
      id: String(r.ID ?? ""),
      allowedOrigins: list(r.AllowedOrigins),
      allowedMethods: list(r.AllowedMethods),
      allowedHeaders: list(r.AllowedHeaders),
      exposeHeaders: list(r.ExposeHeaders),
      maxAgeSeconds: r.MaxAgeSeconds === undefined ? undefined : Number(r.MaxAgeSeconds),
    }));
  }
  if (Array.isArray(doc?.rules)) {
    try {
      return fromJson(PutBucketCorsRequestSchema, { rules: doc.rules } as JsonValue).rules;
    } catch (err) {
      throw usage(`${file}: ${(err as Error).message}`);
    }
  }
  throw usage(`${file} holds neither "CORSRules" (as aws s3api put-bucket-cors takes) nor "rules"`);
}

/** `buckets cors NAME`: shows the bucket's CORS rules, sets them from a file (--set) or deletes them (--delete). */
async function corsCommand(c: StorageCommandContext, name: string): Promise<number> {
  const m = StorageService.method;
  if (c.flags.set !== undefined && c.flags.delete) throw c.usage("give --set FILE or --delete, not both");
  if (c.flags.delete) {
    await c.client.deleteBucketCors({ name });
    c.out.write(c.asJson ? "{}\n" : "deleted\n");
    return 0;
  }
  const res = c.flags.set !== undefined
    ? await c.client.putBucketCors({ name, rules: corsRulesOf(await readFile(c.flags.set, "utf8"), c.flags.set, c.usage) })
    : await c.client.getBucketCors({ name });
  show(c, m.getBucketCors.output, res, [CORS_HEADER, ...res.rules.map(corsRow)]);
  return 0;
}

const POLICY_HEADER = ["SID", "EFFECT", "PRINCIPAL", "ACTION", "RESOURCE"];
const listed = (v: unknown) => (Array.isArray(v) ? v.join(",") : typeof v === "string" ? v : JSON.stringify(v));
const statementRow = (s: JsonObject) => [String(s.Sid ?? ""), String(s.Effect ?? ""), listed(s.Principal), listed(s.Action), listed(s.Resource)];

/** `buckets policy NAME`: shows the bucket's policy, sets it from a policy document file (--set) or deletes it (--delete). */
async function policyCommand(c: StorageCommandContext, name: string): Promise<number> {
  if (c.flags.set !== undefined && c.flags.delete) throw c.usage("give --set FILE or --delete, not both");
  if (c.flags.delete) {
    await c.client.deleteBucketPolicy({ name });
    c.out.write(c.asJson ? "{}\n" : "deleted\n");
    return 0;
  }
  let policy: JsonObject | undefined;
  if (c.flags.set !== undefined) {
    try {
      policy = JSON.parse(await readFile(c.flags.set, "utf8")) as JsonObject;
    } catch (err) {
      throw c.usage(`${c.flags.set}: not a JSON policy document (${(err as Error).message})`);
    }
  }
  const res = policy ? await c.client.setBucketPolicy({ name, policy }) : await c.client.getBucketPolicy({ name });
  const statements = res.policy?.document?.Statement;
  const list = (Array.isArray(statements) ? statements : statements ? [statements] : []) as JsonObject[];
  show(c, StorageService.method.getBucketPolicy.output, res, [POLICY_HEADER, ...list.map(statementRow)]);
  return 0;
}

const objectRow = (o: ObjectInfo) => [o.key, String(o.size), o.contentType, new Date(Number(o.lastModified)).toISOString()];

/** Runs `objects put|get|ls|rm|info|url`. */
export async function objectCommand(c: StorageCommandContext, verb: string | undefined): Promise<number> {
  const m = StorageService.method;
  const bucket = c.flags.bucket;
  if (!bucket) throw c.usage("-b BUCKET is required");
  const arg = (what: string) => {
    const a = c.args[0];
    if (!a) throw c.usage(`${what} is required`);
    return a;
  };
  const objectUrl = (key: string) => `${c.endpoint.replace(/\/+$/, "")}/${bucket}/${uriEncode(key, true)}`;
  const auth: Record<string, string> = c.token ? { authorization: `Bearer ${c.token}` } : {};
  const failed = async (res: Response) => {
    const text = await res.text();
    const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? String(res.status);
    const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? text;
    const grpc = res.status === 404 ? Code.NotFound : res.status === 403 ? Code.PermissionDenied : res.status === 413 ? Code.ResourceExhausted : Code.InvalidArgument;
    return new ConnectError(`${code}: ${message}`, grpc);
  };
  switch (verb) {
    case "put":
    case "create": {
      const file = arg("FILE");
      const key = c.flags.key ?? basename(file);
      const size = (await stat(file)).size;
      const res = await fetch(objectUrl(key), {
        method: "PUT",
        headers: { ...auth, "content-length": String(size) },
        body: Readable.toWeb(createReadStream(file)) as ReadableStream,
        duplex: "half",
      } as RequestInit);
      if (res.status !== 200) throw await failed(res);
      const jobs = (res.headers.get("x-k3-jobs") ?? "").split(",").filter(Boolean);
      c.out.write(c.asJson ? JSON.stringify({ bucket, key, etag: res.headers.get("etag"), size, jobs }) + "\n" : `uploaded ${key} (${size} bytes${jobs.length ? `; jobs ${jobs.join(", ")}` : ""})\n`);
      return 0;
    }
    case "get": {
      const key = arg("KEY");
      const res = await fetch(objectUrl(key), { headers: auth });
      if (res.status !== 200 || !res.body) throw await failed(res);
      const to = c.args[1] ?? basename(key);
      const body = Readable.fromWeb(res.body as never);
      if (to === "-") await pipeline(body, c.out as NodeJS.WritableStream);
      else await pipeline(body, createWriteStream(to));
      return 0;
    }
    case "ls":
    case "list": {
      const res = await c.client.listObjects({ bucket, prefix: c.flags.prefix ?? "", maxKeys: 1000 });
      show(c, m.listObjects.output, res, [["KEY", "SIZE", "TYPE", "MODIFIED"], ...res.objects.map(objectRow), ...res.commonPrefixes.map((p) => [p, "", "", ""])]);
      return 0;
    }
    case "info":
    case "show": {
      const res = await c.client.getObjectInfo({ bucket, key: arg("KEY") });
      const o = res.object!;
      const rows = [["KEY", "SIZE", "TYPE", "MODIFIED"], objectRow(o)];
      for (const s of o.indexStatus) rows.push([`  ${s.pipelineName}`, s.jobId, `INGEST_STATUS_${IngestStatus[s.status]}`, s.error]);
      show(c, m.getObjectInfo.output, res, rows);
      return 0;
    }
    case "rm":
    case "remove":
      await c.client.deleteObject({ bucket, key: arg("KEY") });
      c.out.write(c.asJson ? "{}\n" : "deleted\n");
      return 0;
    case "url": {
      const expires = c.flags.expires === undefined ? 3600 : Number(c.flags.expires);
      if (!Number.isInteger(expires) || expires < 0) throw c.usage(`--expires ${c.flags.expires} must be a whole number of seconds`);
      const res = await c.client.getObjectUrl({ bucket, key: arg("KEY"), expiresInSeconds: BigInt(expires) });
      c.out.write(c.asJson ? JSON.stringify(toJson(m.getObjectUrl.output, res, { alwaysEmitImplicit: true })) + "\n" : `${res.url}\n`);
      return 0;
    }
  }
  throw c.usage(`unknown objects command ${verb ?? ""}`);
}
