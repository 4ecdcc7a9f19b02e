/**
 * The k3-ingest command against a running server, as a user runs it: trigger --wait shows
 * a job from PENDING to COMPLETED; jobs list/get, retry of failed jobs, rules and pipelines
 * CRUD; exit codes follow the gRPC code of the failure.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { startServers, type TestServers } from "./helpers/servers";

const run = promisify(execFile);
const ROOT = join(__dirname, "..");
const B = "kb-cli";
let s: TestServers;
let token: string;

jest.setTimeout(60_000);

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, ["-r", join(ROOT, "test/helpers/ts-register.cjs"), join(ROOT, "src/main.ts"), ...args], {
      env: { ...process.env, DODIL_TOKEN: token, K3_ENDPOINT: s.httpUrl, ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on", K3_ROLE: "all", K3_POLL_MS: "100", K3_MAX_ATTEMPTS: "1" });
  token = readFileSync(join(s.dataDir, "admin-token"), "utf8").trim();
  s.putObject(B, "docs/a.txt", "some words to embed ".repeat(100));
  s.putObject(B, "docs/broken.pdf", "not a pdf");
});
afterAll(() => s.stop());

let pipelineId: string;

test("pipelines create/list/get and rules create/list through the CLI", async () => {
  const created = await cli(["pipelines", "create", "-b", B, "--name", "embed", "--template", "text_embedding_index", "--option", "chunk_size=500", "--option", "chunk_overlap=50", "-o", "json"]);
  expect(created.code).toBe(0);
  const p = JSON.parse(created.stdout).pipeline;
  expect(p).toMatchObject({ name: "embed", scriptumTemplate: "text_embedding_index", storeEntityKind: "vector", options: { chunk_size: "500", chunk_overlap: "50" } });
  pipelineId = p.pipelineId;
  const listed = await cli(["pipelines", "list", "-b", B]);
  expect(listed.stdout).toMatch(new RegExp(`^${pipelineId}\\s+embed\\s+text_embedding_index\\s+vector$`, "m"));
  const rule = await cli(["rules", "create", "-b", B, "--name", "docs", "-p", pipelineId, "--include", "docs/**", "--priority", "5", "-o", "json"]);
  expect(JSON.parse(rule.stdout).rule).toMatchObject({ includePatterns: ["docs/**"], priority: 5, enabled: true });
  const updated = await cli(["rules", "update", "-b", B, JSON.parse(rule.stdout).rule.ruleId, "--json", '{"include_patterns":{"values":["docs/*.txt"]}}', "-o", "json"]);
  expect(JSON.parse(updated.stdout).rule.includePatterns).toEqual(["docs/*.txt"]);
  expect((await cli(["rules", "list", "-b", B])).stdout).toContain("docs/*.txt");
});

test("trigger --wait shows the job go from PENDING to COMPLETED and exits 0", async () => {
  const r = await cli(["trigger", "-b", B, "docs/a.txt", "-p", pipelineId, "--wait"]);
  expect(r.code).toBe(0);
  const progress = r.stderr.trim().split("\n");
  expect(progress[0]).toMatch(/INGEST_STATUS_PENDING/);
  expect(progress.at(-1)).toMatch(/INGEST_STATUS_COMPLETED\s+chunks 5 embedded 5$/);
  expect(r.stdout).toMatch(/COMPLETED\s+docs\/a\.txt\s+embed\s+chunks 5 embedded 5/);
});

test("trigger --wait on a file that fails exits non-zero and prints the error", async () => {
  const r = await cli(["trigger", "-b", B, "docs/broken.pdf", "-p", pipelineId, "--wait"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/ended INGEST_STATUS_FAILED: PDF "docs\/broken\.pdf" is corrupt or unreadable/);
});

test("jobs list and get, as a table and as JSON", async () => {
  const table = await cli(["jobs", "list", "-b", B, "--status", "failed"]);
  expect(table.code).toBe(0);
  expect(table.stdout).toMatch(/FAILED\s+docs\/broken\.pdf/);
  expect(table.stdout).toMatch(/^1 of 1$/m);
  const json = JSON.parse((await cli(["jobs", "list", "-b", B, "--all", "-o", "json"])).stdout);
  expect(json.totalCount).toBe("2");
  const id = json.jobs[0].jobId;
  const got = JSON.parse((await cli(["jobs", "get", "-b", B, id, "-o", "json"])).stdout);
  expect(got.job.jobId).toBe(id);
});

test("jobs retry re-triggers the objects of the failed jobs", async () => {
  const r = await cli(["jobs", "retry", "-b", B, "--status", "FAILED", "-o", "json"]);
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout)).toEqual({ matched: 1, queued: 1 });
  const json = JSON.parse((await cli(["jobs", "list", "-b", B, "-o", "json"])).stdout);
  expect(json.jobs.filter((j: { object: { key: string } }) => j.object.key === "docs/broken.pdf")).toHaveLength(2);
});

test("exit codes follow the gRPC code", async () => {
  expect((await cli(["jobs", "get", "-b", B, "job_missing"])).code).toBe(5);
  const unauth = await cli(["jobs", "list", "-b", B], { DODIL_TOKEN: "" });
  expect(unauth.code).toBe(16);
  expect(unauth.stderr).toMatch(/^Unauthenticated: missing Authorization header/);
  expect((await cli(["jobs", "list", "-b", "Bad_Bucket"])).code).toBe(3);
  expect((await cli(["jobs", "list", "-b", B], { K3_ENDPOINT: "http://127.0.0.1:1" })).code).toBe(14);
  expect((await cli(["jobs", "frobnicate"])).code).toBe(2);
});

test("buckets create/ls/get/rm and objects put/ls/info/get/url/rm through the CLI", async () => {
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "k3-cli-objects-"));
  const made = await cli(["buckets", "create", "kb-cli-store", "-d", "made by the CLI", "-o", "json"]);
  expect(made.code).toBe(0);
  expect(JSON.parse(made.stdout).bucket).toMatchObject({ name: "kb-cli-store", description: "made by the CLI" });
  expect((await cli(["buckets", "ls"])).stdout).toMatch(/kb-cli-store\s+0\s+0\s+0\s+made by the CLI/);
  writeFileSync(join(dir, "note.txt"), "a note from the CLI");
  const put = await cli(["objects", "put", "-b", "kb-cli-store", join(dir, "note.txt"), "-k", "notes/note.txt", "-o", "json"]);
  expect(put.code).toBe(0);
  expect(JSON.parse(put.stdout)).toMatchObject({ key: "notes/note.txt", size: 19 });
  expect((await cli(["objects", "ls", "-b", "kb-cli-store"])).stdout).toMatch(/notes\/note\.txt\s+19\s+text\/plain/);
  const info = await cli(["objects", "info", "-b", "kb-cli-store", "notes/note.txt", "-o", "json"]);
  expect(JSON.parse(info.stdout).object).toMatchObject({ key: "notes/note.txt", size: "19" });
  const got = await cli(["objects", "get", "-b", "kb-cli-store", "notes/note.txt", "-"]);
  expect(got.stdout).toBe("a note from the CLI");
  const url = (await cli(["objects", "url", "-b", "kb-cli-store", "notes/note.txt", "--expires", "60"])).stdout.trim();
  expect(await (await fetch(url)).text()).toBe("a note from the CLI");
  expect((await cli(["buckets", "rm", "kb-cli-store"])).code).toBe(9); // FAILED_PRECONDITION: it holds an object
  expect((await cli(["objects", "rm", "-b", "kb-cli-store", "notes/note.txt"])).code).toBe(0);
  expect((await cli(["objects", "get", "-b", "kb-cli-store", "notes/note.txt", "-"])).code).toBe(5);
  expect((await cli(["buckets", "rm", "kb-cli-store"])).code).toBe(0);
  expect((await cli(["buckets", "get", "kb-cli-store"])).code).toBe(5);
});

test("sources and sync through the CLI: list, discover --wait with progress and exit code, status, ingest, an external source's secret from the environment", async () => {
  const listed = await cli(["sources", "list", "-b", B, "-o", "json"]);
  expect(listed.code).toBe(0);
  const internal = JSON.parse(listed.stdout).sources[0];
  expect(internal.provider).toBe("SOURCE_PROVIDER_INTERNAL_S3");
  s.putObject(B, "docs/dropped.txt", "dropped in by hand");
  const discovered = await cli(["sync", "discover", "-b", B, internal.sourceId, "--wait"]);
  expect(discovered.code).toBe(0);
  expect(discovered.stderr).toMatch(/disc_\w+ {2}completed {2}scanned \d+/);
  const status = await cli(["sync", "status", "-b", B, internal.sourceId]);
  expect(status.stdout).toMatch(new RegExp(`^${internal.sourceId}\\s+false\\s+\\d+`, "m"));
  const ingest = await cli(["sync", "ingest", "-b", B, internal.sourceId, "--retry-failed", "-o", "json"]);
  expect(JSON.parse(ingest.stdout)).toMatchObject({ accepted: true });
  const closed = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
  const created = await cli(
    ["sources", "create", "-b", B, "--name", "elsewhere", "--root", "kb/", "--s3-endpoint", `http://127.0.0.1:${closed}`, "--s3-bucket", "elsewhere", "--access-key-id", "AKEXAMPLE", "-o", "json"],
    { K3_SOURCE_SECRET_ACCESS_KEY: "from-the-environment" },
  );
  expect(created.code).toBe(0);
  const ext = JSON.parse(created.stdout).source;
  expect(ext).toMatchObject({ provider: "SOURCE_PROVIDER_EXTERNAL_S3", rootPath: "kb/", externalS3: { accessKeyId: "AKEXAMPLE" } });
  expect(created.stdout).not.toContain("from-the-environment");
  // The endpoint refuses connections: the discovery fails, and --wait says so with exit code 1.
  const failed = await cli(["sync", "discover", "-b", B, ext.sourceId, "--wait"]);
  expect(failed.code).toBe(1);
  expect(failed.stderr).toMatch(/failed {2}.*error: the S3 server could not be reached \(ECONNREFUSED\)/);
  expect((await cli(["sources", "delete", "-b", B, ext.sourceId])).code).toBe(0);
  expect((await cli(["sources", "get", "-b", B, ext.sourceId])).code).toBe(5);
});

test("search prints key, page, score and a snippet; -o json is the API's answer; bad --top-k is a usage error", async () => {
  const r = await cli(["search", "words to embed", "-b", B, "--top-k", "2"]);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^KEY\s+PAGE\s+SCORE\s+SNIPPET$/m);
  expect(r.stdout).toMatch(/^docs\/a\.txt\s+-\s+0\.\d{4}\s+some words to embed/m);
  const j = await cli(["search", "words", "to", "embed", "-b", B, "--vector", "-o", "json"]);
  const answer = JSON.parse(j.stdout);
  expect(answer.searchMode).toBe("SEARCH_MODE_VECTOR");
  expect(answer.results[0]).toMatchObject({ object: { key: "docs/a.txt" }, collectionName: "embed" });
  const bad = await cli(["search", "x", "-b", B, "--top-k", "5000"]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--top-k 5000 must be a whole number from 1 to 1000/);
});

test("rules update and pipelines update take every documented flag; a flag a command does not take is refused by name", async () => {
  const rule = JSON.parse((await cli(["rules", "create", "-b", B, "--name", "r1", "-p", pipelineId, "--include", "a/**", "-o", "json"])).stdout).rule;
  const updated = await cli(["rules", "update", "-b", B, rule.ruleId, "--name", "r2", "--include", "b/**", "--include", "c/**", "--exclude", "b/tmp/**", "--mime", "text/*", "--priority", "7", "-o", "json"]);
  expect(updated.code).toBe(0);
  expect(JSON.parse(updated.stdout).rule).toMatchObject({ name: "r2", includePatterns: ["b/**", "c/**"], excludePatterns: ["b/tmp/**"], includeMimeTypes: ["text/*"], priority: 7 });
  const p = await cli(["pipelines", "update", "-b", B, pipelineId, "--option", "chunk_size=700", "--name", "embed2", "-o", "json"]);
  expect(p.code).toBe(0);
  // --option sets its key and keeps the others.
  expect(JSON.parse(p.stdout).pipeline).toMatchObject({ name: "embed2", options: { chunk_size: "700", chunk_overlap: "50" } });
  const stray = await cli(["rules", "update", "-b", B, rule.ruleId, "--template", "noop"]);
  expect(stray.code).toBe(2);
  expect(stray.stderr).toMatch(/^rules does not take --template; it takes --bucket, --name, --pipeline, --include, --exclude, --mime, --priority, --json/);
  expect((await cli(["jobs", "get", "-b", B, "job_x", "--wait"])).stderr).toMatch(/jobs get does not take --wait/);
  await cli(["rules", "delete", "-b", B, rule.ruleId]);
  await cli(["pipelines", "update", "-b", B, pipelineId, "--name", "embed"]);
});

test("help and version: bare k3-ingest, --help, help GROUP, GROUP --help, --version; a group without its command", async () => {
  const bare = await cli([]);
  expect(bare.code).toBe(0);
  expect(bare.stdout).toMatch(/^k3-ingest \d+\.\d+\.\d+ — a server for the K3 ingest API/);
  expect(bare.stdout).toMatch(/k3-ingest serve {14}API and worker in one process/);
  expect((await cli(["--help"])).stdout).toBe(bare.stdout);
  expect((await cli(["-h"])).stdout).toBe(bare.stdout);
  const version = await cli(["--version"]);
  expect(version.stdout).toMatch(/^k3-ingest \d+\.\d+\.\d+\n$/);
  const rules = await cli(["help", "rules"]);
  expect(rules.stdout).toMatch(/^usage: k3-ingest rules …/);
  expect(rules.stdout).not.toMatch(/jobs list/);
  expect((await cli(["rules", "--help"])).stdout).toBe(rules.stdout);
  const jobs = await cli(["jobs"]);
  expect(jobs.code).toBe(2);
  expect(jobs.stderr).toMatch(/^k3-ingest jobs needs a command\nusage: k3-ingest jobs …[\s\S]*jobs list/);
  const unknown = await cli(["frobnicate"]);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toMatch(/^k3-ingest: unknown command "frobnicate"\nk3-ingest \d/);
});

test("the CLI finds the admin token beside the server's data, and -p / --rule take names", async () => {
  // No --token, no DODIL_TOKEN: the admin-token file under K3_DATA_DIR is used.
  const listed = await cli(["buckets", "ls", "-o", "json"], { DODIL_TOKEN: "", K3_DATA_DIR: s.dataDir });
  expect(listed.code).toBe(0);
  expect(JSON.parse(listed.stdout).buckets.map((b: { name: string }) => b.name)).toContain(B);
  const withoutToken = await cli(["buckets", "ls"], { DODIL_TOKEN: "", K3_DATA_DIR: "/nonexistent" });
  expect(withoutToken.code).toBe(16);
  // A pipeline by name.
  const byName = await cli(["trigger", "-b", B, "docs/a.txt", "-p", "embed", "-o", "json"]);
  expect(byName.code).toBe(0);
  expect(JSON.parse(byName.stdout).job.pipelineId).toBe(pipelineId);
  const unknown = await cli(["trigger", "-b", B, "docs/a.txt", "-p", "no-such-pipeline"]);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toMatch(/-p "no-such-pipeline": bucket kb-cli has no pipeline of that id or name/);
});

test("trigger takes several keys, --prefix and --glob, counts first and wants --yes above 100 objects", async () => {
  const two = await cli(["trigger", "-b", B, "docs/a.txt", "docs/nope.txt", "-p", "embed"]);
  expect(two.code).toBe(1);
  expect(two.stdout).toMatch(/1 of 2 triggered, 1 refused/);
  expect(two.stderr).toMatch(/docs\/nope\.txt: NotFound: object "docs\/nope\.txt" not found/);
  // Uploaded (the listing is the bucket's catalog, as ListObjects shows it).
  for (let i = 0; i < 101; i++) {
    const put = await fetch(`${s.httpUrl}/${B}/many/m${i}.txt`, { method: "PUT", headers: { authorization: `Bearer ${token}` }, body: `many ${i}` });
    expect(put.status).toBe(200);
  }
  const refused = await cli(["trigger", "-b", B, "--glob", "many/*.txt", "-p", "embed"]);
  expect(refused.code).toBe(2);
  expect(refused.stderr).toMatch(/^101 objects match; pass --yes to trigger them all/);
  const all = await cli(["trigger", "-b", B, "--glob", "many/*.txt", "-p", "embed", "--yes", "-o", "json"]);
  expect(all.code).toBe(0);
  const answer = JSON.parse(all.stdout);
  expect(answer).toMatchObject({ count: 101, failed: [] });
  expect(new Set(answer.jobs.map((j: { object: { key: string } }) => j.object.key)).size).toBe(101);
  const prefixed = await cli(["trigger", "-b", B, "--prefix", "many/m10", "-p", "embed", "-o", "json"]);
  expect(JSON.parse(prefixed.stdout).jobs.map((j: { object: { key: string } }) => j.object.key).sort()).toEqual(["many/m10.txt", "many/m100.txt"]);
  // --request-id makes one trigger idempotent.
  const r1 = JSON.parse((await cli(["trigger", "-b", B, "docs/a.txt", "-p", "embed", "--request-id", "cli-once", "-o", "json"])).stdout).job.jobId;
  const r2 = JSON.parse((await cli(["trigger", "-b", B, "docs/a.txt", "-p", "embed", "--request-id", "cli-once", "-o", "json"])).stdout).job.jobId;
  expect(r2).toBe(r1);
});
