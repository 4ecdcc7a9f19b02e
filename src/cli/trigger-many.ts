/**
 * `k3-ingest trigger -b B KEY KEY …`, `--prefix P`, `--glob G`: one TriggerIngest per object,
 * eight at a time, with a count first and a confirmation above CONFIRM_ABOVE objects
 * (a prompt on a terminal, `--yes` otherwise). Every key is answered: a job, or why not.
 */
import { createInterface } from "node:readline/promises";
import { toJson } from "@bufbuild/protobuf";
import { ConnectError, Code, type Client } from "@connectrpc/connect";
import { IngestJobSchema, type IngestJob, type IngestService } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import type { StorageService } from "../../gen/dodil/k3/storage/v1/storage_pb";
import { compileGlob } from "../domain/rules";
import { UsageError, type Out } from "./common";

export const CONFIRM_ABOVE = 100;

/** The keys to trigger: the given ones, then those under `prefix` or matching `glob`. */
async function keysOf(storage: Client<typeof StorageService>, bucket: string, given: string[], prefix?: string, glob?: string): Promise<string[]> {
  const keys = new Set(given);
  if (prefix === undefined && glob === undefined) return [...keys];
  let matcher;
  try {
    matcher = glob === undefined ? undefined : compileGlob(glob, "--glob");
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  // Only the part of a glob before its first wildcard narrows the listing.
  const listPrefix = prefix ?? (glob ?? "").split(/[*?[{]/)[0];
  let token = "";
  do {
    const page = await storage.listObjects({ bucket, prefix: listPrefix, maxKeys: 1000, continuationToken: token });
    for (const o of page.objects) if (!matcher || matcher.test(o.key.replace(/[A-Z]/g, (c) => c.toLowerCase()))) keys.add(o.key);
    token = page.nextContinuationToken;
  } while (token);
  return [...keys];
}

export async function triggerMany(c: {
  ingest: Client<typeof IngestService>;
  storage: Client<typeof StorageService>;
  bucket: string;
  keys: string[];
  prefix?: string;
  glob?: string;
  yes?: boolean;
  request: { pipelineId: string; ruleId: string; options: Record<string, string> };
  asJson: boolean;
  out: Out;
  err: Out;
  table(rows: string[][]): string;
  row(job: IngestJob): string[];
  header: string[];
}): Promise<number> {
  const keys = await keysOf(c.storage, c.bucket, c.keys, c.prefix, c.glob);
  if (keys.length === 0) throw new UsageError(`no object of bucket ${c.bucket} matches${c.prefix !== undefined ? ` --prefix ${JSON.stringify(c.prefix)}` : ""}${c.glob !== undefined ? ` --glob ${JSON.stringify(c.glob)}` : ""}`);
  if (keys.length > CONFIRM_ABOVE && !c.yes) {
    if (!process.stdin.isTTY) throw new UsageError(`${keys.length} objects match; pass --yes to trigger them all`);
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    const answer = await rl.question(`Trigger ${keys.length} objects of ${c.bucket}? [y/N] `);
    rl.close();
    if (!/^y(es)?$/i.test(answer.trim())) {
      c.err.write("nothing triggered\n");
      return 1;
    }
  }
  c.err.write(`triggering ${keys.length} objects\n`);
  const jobs: IngestJob[] = [];
  const failed: Array<{ key: string; code: string; message: string }> = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(8, keys.length) }, async () => {
      while (next < keys.length) {
        const key = keys[next++];
        try {
          jobs.push((await c.ingest.triggerIngest({ bucket: c.bucket, object: { key }, ...c.request })).job!);
        } catch (e) {
          const ce = ConnectError.from(e);
          failed.push({ key, code: Code[ce.code], message: ce.rawMessage });
        }
      }
    }),
  );
  if (c.asJson) {
    c.out.write(JSON.stringify({ count: keys.length, jobs: jobs.map((j) => toJson(IngestJobSchema, j)), failed }, null, 2) + "\n");
  } else {
    c.out.write(c.table([c.header, ...jobs.map(c.row)]));
    for (const f of failed) c.err.write(`${f.key}: ${f.code}: ${f.message}\n`);
    c.out.write(`${jobs.length} of ${keys.length} triggered${failed.length ? `, ${failed.length} refused` : ""}\n`);
  }
  return failed.length ? 1 : 0;
}
