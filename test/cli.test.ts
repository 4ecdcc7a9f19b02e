/**
 * The k3-ingest command against a running server, as a user runs it: trigger --wait shows
 * a job from PENDING to COMPLETED; jobs list/get, retry of failed jobs (the newest per
 * object, permanent failures left unless asked, a dry run that counts what a run does, each
 * replay linked to the job it retries), rules and pipelines CRUD; exit codes follow the gRPC
 * code of the failure.
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { cliRunner } from "./helpers/cli";
import { createTestDb } from "./helpers/db";
import { deadPort } from "./helpers/processes";
import { startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";
import { waitFor } from "./helpers/wait";

const ROOT = join(__dirname, "..");
const B = "kb-cli";
let s: TestServers;
let token: string;

jest.setTimeout(60_000);

const cli = cliRunner(() => ({ DODIL_TOKEN: token, K3_ENDPOINT: s.httpUrl }));

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

test("jobs watch JOB_ID streams the job's changes as JSON lines and exits when it ends", async () => {
  const started = JSON.parse((await cli(["trigger", "-b", B, "docs/a.txt", "-p", pipelineId, "-o", "json"])).stdout).job;
  const r = await cli(["jobs", "watch", "-b", B, started.jobId]);
  expect(r.code).toBe(0);
  const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  expect(lines.some((l) => l.type === "WATCH_EVENT_TYPE_SYNCED")).toBe(true);
  const last = lines.filter((l) => l.job).at(-1);
  expect(last.job).toMatchObject({ jobId: started.jobId, status: "INGEST_STATUS_COMPLETED" });
  expect(last.eventId).toMatch(/^\d+$/);
  const bad = await cli(["jobs", "watch", "-b", B, "--resume-after", "later"]);
  expect(bad.code).toBe(3);
  expect(bad.stderr).toMatch(/resume_after "later" is not an event id/);
});

test("jobs list and get, as a table and as JSON", async () => {
  const table = await cli(["jobs", "list", "-b", B, "--status", "failed"]);
  expect(table.code).toBe(0);
  expect(table.stdout).toMatch(/FAILED\s+docs\/broken\.pdf/);
  expect(table.stdout).toMatch(/^1 of 1$/m);
  const json = JSON.parse((await cli(["jobs", "list", "-b", B, "--all", "-o", "json"])).stdout);
  expect(json.totalCount).toBe("3");
  const id = json.jobs[0].jobId;
  const got = JSON.parse((await cli(["jobs", "get", "-b", B, id, "-o", "json"])).stdout);
  expect(got.job.jobId).toBe(id);
  // --prefix narrows to keys starting with it (two jobs of docs/a.txt, one of docs/broken.pdf).
  const narrowed = JSON.parse((await cli(["jobs", "list", "-b", B, "--prefix", "docs/a", "-o", "json"])).stdout);
  expect(narrowed.totalCount).toBe("2");
  expect(narrowed.jobs.map((j: { object: { key: string } }) => j.object.key)).toEqual(["docs/a.txt", "docs/a.txt"]);
});

test("a job says whether its output is the live one; deleting a pipeline says what it removes, removes it, or keeps it with --keep-outputs", async () => {
  const D = "kb-cli-del";
  s.putObject(D, "notes/n.txt", "tide tables and harbour notes ".repeat(20));
  const make = async (name: string) => JSON.parse((await cli(["pipelines", "create", "-b", D, "--name", name, "--template", "text_embedding_index", "-o", "json"])).stdout).pipeline.pipelineId as string;
  const [gone, kept] = [await make("gone"), await make("kept")];
  for (const p of [gone, gone, kept]) expect((await cli(["trigger", "-b", D, "notes/n.txt", "-p", p, "--wait"])).code).toBe(0);
  const listed = JSON.parse((await cli(["jobs", "list", "-b", D, "-p", gone, "-o", "json"])).stdout).jobs as Array<{ jobId: string; outputCurrent: boolean; chunksCreated: number }>;
  // Newest first: the second run's output replaced the first's.
  expect(listed.map((j) => j.outputCurrent)).toEqual([true, false]);
  expect(JSON.parse((await cli(["jobs", "get", "-b", D, listed[1].jobId, "-o", "json"])).stdout).job.outputCurrent).toBe(false);
  const chunks = listed[0].chunksCreated;

  const dry = await cli(["pipelines", "delete", "-b", D, gone, "--dry-run"]);
  expect(dry.stdout.trim()).toBe(`would delete pipeline ${gone} with its 2 jobs, ${chunks} chunks and 0 rows`);
  expect(JSON.parse((await cli(["jobs", "list", "-b", D, "-o", "json"])).stdout).totalCount).toBe("3");
  const del = JSON.parse((await cli(["pipelines", "delete", "-b", D, gone, "-o", "json"])).stdout);
  expect(del).toEqual({ dryRun: false, deletedJobs: 2, deletedChunks: chunks, deletedRows: 0, outputsKept: false });
  expect(JSON.parse((await cli(["jobs", "list", "-b", D, "-o", "json"])).stdout).totalCount).toBe("1");
  expect((await cli(["pipelines", "get", "-b", D, gone])).code).toBe(5);

  const keep = await cli(["pipelines", "delete", "-b", D, kept, "--keep-outputs"]);
  expect(keep.stdout.trim()).toBe(`deleted pipeline ${kept}; its 1 jobs, ${chunks} chunks and 0 rows stay (--keep-outputs)`);
  const left = JSON.parse((await cli(["jobs", "list", "-b", D, "-o", "json"])).stdout).jobs;
  expect(left).toHaveLength(1);
  expect(left[0]).toMatchObject({ pipelineId: kept, outputCurrent: true });
  expect((await cli(["pipelines", "delete", "-b", D, kept, "--force"])).code).toBe(2);
});

test("jobs list says there is more and how to get it", async () => {
  const P = "kb-cli-page";
  for (let i = 0; i < 55; i++) s.putObject(P, `o/${String(i).padStart(2, "0")}.bin`, "x");
  const noop = JSON.parse((await cli(["pipelines", "create", "-b", P, "--name", "nothing", "--template", "noop", "-o", "json"])).stdout).pipeline.pipelineId;
  expect((await cli(["trigger", "-b", P, "--prefix", "o/", "-p", noop])).code).toBe(0);
  const first = await cli(["jobs", "list", "-b", P]);
  const hint = /^50 of 55 — use --all, or --page-token (\S+) for the next page$/m.exec(first.stdout);
  expect(hint).not.toBeNull();
  const second = await cli(["jobs", "list", "-b", P, "--page-token", hint![1]]);
  expect(second.stdout).toMatch(/^5 of 55$/m);
  expect((await cli(["jobs", "list", "-b", P, "--all"])).stdout).toMatch(/^55 of 55$/m);
  expect((await cli(["jobs", "list", "-b", P, "--all", "--page-token", hint![1]])).code).toBe(2);
});

test("jobs cancel says where the job ends", async () => {
  const a = await startServers(); // API only: the job stays PENDING
  try {
    a.putObject("kb-cancel", "x.bin", "x");
    const env = { K3_ENDPOINT: a.httpUrl, DODIL_TOKEN: "" };
    const noop = JSON.parse((await cli(["pipelines", "create", "-b", "kb-cancel", "--name", "n", "--template", "noop", "-o", "json"], env)).stdout).pipeline.pipelineId;
    const job = JSON.parse((await cli(["trigger", "-b", "kb-cancel", "x.bin", "-p", noop, "-o", "json"], env)).stdout).job.jobId;
    const c = await cli(["jobs", "cancel", "-b", "kb-cancel", job], env);
    expect(c.stdout).toMatch(new RegExp(`^job ${job} is CANCELLED$`, "m"));
  } finally {
    await a.stop();
  }
});

test("serve on a terminal says where it listens, where the token and the data are", async () => {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { spawn } = await import("node:child_process");
  const dir = mkdtempSync(join(tmpdir(), "k3-banner-"));
  const db = await createTestDb(); // its own: the first start on an empty token table writes the admin token
  const cmd = [process.execPath, "-r", join(ROOT, "test/helpers/ts-register.cjs"), join(ROOT, "src/main.ts"), "api"].join(" ");
  // `script` gives the server a terminal, as a person starting it has.
  const child = spawn("script", ["-qfec", cmd, "/dev/null"], {
    env: { ...process.env, DATABASE_URL: db.url, K3_AUTH: "on", K3_DATA_DIR: dir, K3_HOST: "127.0.0.1", K3_HTTP_PORT: "0", K3_GRPC_PORT: "0" },
    detached: true,
  });
  let out = "";
  child.stdout.on("data", (d) => (out += String(d)));
  try {
    await waitFor("the banner", async () => (/stop with Ctrl-C/.test(out) ? true : undefined), { timeoutMs: 20_000, intervalMs: 100 });
    expect(out).toMatch(/k3-ingest \S+ \(API only\)/);
    expect(out).toMatch(/HTTP \(REST, Connect, gRPC-Web, S3\)\s+http:\/\/127\.0\.0\.1:\d+/);
    expect(out).toMatch(/gRPC \(reflection on\)\s+127\.0\.0\.1:\d+/);
    expect(out).toContain(`admin token                         ${join(dir, "admin-token")}`);
    expect(out).toMatch(/database\s+DATABASE_URL/);
  } finally {
    process.kill(-child.pid!, "SIGTERM");
    await new Promise((r) => child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
    await db.drop();
  }
});

test("serve runs the role K3_ROLE names (the Docker image's command is serve); api, worker and all name it themselves", async () => {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { spawn } = await import("node:child_process");
  const db = await createTestDb();
  const started = async (command: string, role: string): Promise<string> => {
    const dir = mkdtempSync(join(tmpdir(), "k3-role-"));
    const child = spawn(process.execPath, ["-r", join(ROOT, "test/helpers/ts-register.cjs"), join(ROOT, "src/main.ts"), command], {
      env: { ...process.env, DATABASE_URL: db.url, K3_ROLE: role, K3_DATA_DIR: dir, K3_HOST: "127.0.0.1", K3_HTTP_PORT: "0", K3_GRPC_PORT: "0" },
    });
    let out = "";
    child.stdout.on("data", (d) => (out += String(d)));
    child.stderr.on("data", (d) => (out += String(d)));
    try {
      const line = await waitFor(`${command} with K3_ROLE=${role} to start`, async () => out.split("\n").find((l) => l.includes('"k3-ingest started"')), { timeoutMs: 30_000, intervalMs: 100 });
      return JSON.parse(line).role as string;
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    }
  };
  try {
    expect(await started("serve", "api")).toBe("api");
    expect(await started("serve", "worker")).toBe("worker");
    expect(await started("worker", "api")).toBe("worker");
    expect(await started("all", "api")).toBe("all");
  } finally {
    await db.drop();
  }
});

test("trigger --wait on a terminal keeps its progress on one line, rewritten in place", async () => {
  const { spawn } = await import("node:child_process");
  const cmd = [process.execPath, "-r", join(ROOT, "test/helpers/ts-register.cjs"), join(ROOT, "src/main.ts"), "trigger", "-b", B, "docs/a.txt", "-p", pipelineId, "--wait"].join(" ");
  const child = spawn("script", ["-qfec", cmd, "/dev/null"], { env: { ...process.env, DODIL_TOKEN: token, K3_ENDPOINT: s.httpUrl } });
  let out = "";
  child.stdout.on("data", (d) => (out += String(d)));
  const code = await new Promise((r) => child.once("exit", r));
  expect(code).toBe(0);
  // Each update returns to the start of the line and clears it; the last one stays, then the table.
  expect(out).toContain("\r\x1b[K");
  expect(out).toMatch(/\r\x1b\[Kjob_\w+\s+INGEST_STATUS_COMPLETED[^\n]*\r?\n/);
  expect(out).toMatch(/COMPLETED\s+docs\/a\.txt/);
});

test("db-url prints the database to point psql at, or says there is none yet", async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const withUrl = await cli(["db-url"], { DATABASE_URL: "postgres://u@db.example:5432/k3" });
  expect(withUrl).toMatchObject({ code: 0, stdout: "postgres://u@db.example:5432/k3\n" });
  const dir = mkdtempSync(join(tmpdir(), "k3-dburl-"));
  try {
    const none = await cli(["db-url"], { DATABASE_URL: "", K3_DATA_DIR: dir });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no embedded database in .* yet \(no pg-password\); start the server first, or set DATABASE_URL/);
    writeFileSync(join(dir, "pg-password"), "s3cr/t\n");
    const embedded = await cli(["db-url"], { DATABASE_URL: "", K3_DATA_DIR: dir, K3_EMBEDDED_PG_PORT: "54400" });
    expect(embedded.stdout).toBe("postgres://postgres:s3cr%2Ft@127.0.0.1:54400/k3\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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

test("dodil's command names work as its CLI guide gives them: object create|show|list|url|remove, bucket show|remove", async () => {
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "k3-cli-dodil-"));
  expect((await cli(["bucket", "create", "kb-cli-dodil"])).code).toBe(0);
  writeFileSync(join(dir, "memo.txt"), "a memo");
  // The key defaults to the file's base name, as `dodil k3 object create` documents.
  expect(await cli(["object", "create", join(dir, "memo.txt"), "-b", "kb-cli-dodil"])).toMatchObject({ code: 0, stdout: "uploaded memo.txt (6 bytes)\n" });
  expect((await cli(["object", "show", "memo.txt", "-b", "kb-cli-dodil", "-o", "json"])).stdout).toMatch(/"key": "memo\.txt"/);
  expect((await cli(["object", "list", "-b", "kb-cli-dodil"])).stdout).toMatch(/^memo\.txt\s+6\s+text\/plain/m);
  const url = (await cli(["object", "url", "memo.txt", "-b", "kb-cli-dodil", "--expires", "60"])).stdout.trim();
  expect(await (await fetch(url)).text()).toBe("a memo");
  expect((await cli(["object", "remove", "memo.txt", "-b", "kb-cli-dodil"])).stdout).toBe("deleted\n");
  expect((await cli(["bucket", "show", "kb-cli-dodil"])).stdout).toMatch(/kb-cli-dodil/);
  expect((await cli(["bucket", "remove", "kb-cli-dodil"])).code).toBe(0);
  expect((await cli(["object", "--help"])).stdout).toMatch(/^usage: k3-ingest objects/);
});

test("buckets cors shows, sets (from the file aws s3api takes, or the API's) and deletes a bucket's CORS rules; bad rules name the field", async () => {
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "k3-cli-cors-"));
  expect((await cli(["buckets", "create", "kb-cli-cors"])).code).toBe(0);
  expect((await cli(["buckets", "cors", "kb-cli-cors"])).code).toBe(5); // none yet
  const s3Shape = join(dir, "s3.json");
  writeFileSync(s3Shape, JSON.stringify({ CORSRules: [{ ID: "app", AllowedOrigins: ["https://app.example.com"], AllowedMethods: ["GET", "PUT"], AllowedHeaders: ["*"], ExposeHeaders: ["ETag"], MaxAgeSeconds: 600 }] }));
  const set = await cli(["buckets", "cors", "kb-cli-cors", "--set", s3Shape]);
  expect(set.code).toBe(0);
  expect(set.stdout).toMatch(/app\s+https:\/\/app\.example\.com\s+GET,PUT\s+\*\s+ETag\s+600/);
  // What a browser's preflight is told, from the rules the CLI set.
  const pf = await fetch(`${s.httpUrl}/kb-cli-cors/x.txt`, { method: "OPTIONS", headers: { origin: "https://app.example.com", "access-control-request-method": "PUT" } });
  expect(pf.status).toBe(200);
  expect(pf.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
  const apiShape = join(dir, "api.json");
  writeFileSync(apiShape, JSON.stringify({ rules: [{ allowed_origins: ["*"], allowed_methods: ["GET"] }] }));
  expect((await cli(["buckets", "cors", "kb-cli-cors", "--set", apiShape])).code).toBe(0);
  expect(JSON.parse((await cli(["buckets", "cors", "kb-cli-cors", "-o", "json"])).stdout).rules).toEqual([{ id: "", allowedOrigins: ["*"], allowedMethods: ["GET"], allowedHeaders: [], exposeHeaders: [] }]);
  writeFileSync(apiShape, JSON.stringify({ rules: [{ allowed_origins: ["*"], allowed_methods: ["PATCH"] }] }));
  const bad = await cli(["buckets", "cors", "kb-cli-cors", "--set", apiShape]);
  expect(bad.code).toBe(3);
  expect(bad.stderr).toContain('rules[0].allowed_methods: "PATCH" is not one of GET, PUT, POST, DELETE, HEAD');
  writeFileSync(apiShape, "{ not json");
  expect((await cli(["buckets", "cors", "kb-cli-cors", "--set", apiShape])).stderr).toContain("api.json is not JSON");
  expect((await cli(["buckets", "cors", "kb-cli-cors", "--delete"])).stdout).toBe("deleted\n");
  expect((await cli(["buckets", "cors", "kb-cli-cors"])).code).toBe(5);
  expect((await cli(["buckets", "cors", "kb-cli-cors", "--force"])).stderr).toMatch(/buckets cors does not take --force; it takes --set, --delete/);
});

test("buckets policy shows, sets (the document aws s3api put-bucket-policy takes) and deletes a bucket's policy; a bad one names the element", async () => {
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "k3-cli-policy-"));
  expect((await cli(["buckets", "create", "kb-cli-policy"])).code).toBe(0);
  expect((await cli(["buckets", "policy", "kb-cli-policy"])).code).toBe(5); // none yet
  const file = join(dir, "policy.json");
  const doc = { Version: "2012-10-17", Statement: [{ Sid: "Site", Effect: "Allow", Principal: "*", Action: ["s3:GetObject"], Resource: "arn:aws:s3:::kb-cli-policy/site/*" }] };
  writeFileSync(file, JSON.stringify(doc));
  const set = await cli(["buckets", "policy", "kb-cli-policy", "--set", file]);
  expect(set.code).toBe(0);
  expect(set.stdout).toMatch(/Site\s+Allow\s+\*\s+s3:GetObject\s+arn:aws:s3:::kb-cli-policy\/site\/\*/);
  expect(JSON.parse((await cli(["buckets", "policy", "kb-cli-policy", "-o", "json"])).stdout).policy).toEqual({ bucket: "kb-cli-policy", document: doc, public: true });
  writeFileSync(file, JSON.stringify({ Statement: [{ ...doc.Statement[0], Principal: { AWS: "someone" } }] }));
  const bad = await cli(["buckets", "policy", "kb-cli-policy", "--set", file]);
  expect(bad.code).toBe(3);
  expect(bad.stderr).toContain('policy Statement[0].Principal.AWS: "someone" is not "*" or a token id');
  writeFileSync(file, "{ not json");
  expect((await cli(["buckets", "policy", "kb-cli-policy", "--set", file])).stderr).toContain("policy.json: not a JSON policy document");
  expect((await cli(["buckets", "policy", "kb-cli-policy", "--delete"])).stdout).toBe("deleted\n");
  expect((await cli(["buckets", "policy", "kb-cli-policy"])).code).toBe(5);
});

test("credentials store (the secret from K3_CREDENTIAL_SECRET), ls and validate; a source created with --credential signs with it; rm once nothing uses it", async () => {
  const upstream = await insertToken(s, "default", [{ bucket: "*", role: "reader" }], true);
  const http = (method: string, path: string, body?: unknown) => fetch(`${s.httpUrl}${path}`, { method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  expect((await http("POST", "/admin/buckets", { name: "kb-cli-upstream" })).status).toBe(200);
  expect((await http("PUT", "/kb-cli-upstream/shared/a.txt", "upstream words")).status).toBe(200);
  expect((await cli(["credentials", "store", "--name", "up", "--access-key-id", upstream.id])).stderr).toContain("K3_CREDENTIAL_SECRET is empty");
  const stored = await cli(["credentials", "store", "--name", "up", "--access-key-id", upstream.id, "-o", "json"], { K3_CREDENTIAL_SECRET: upstream.secret });
  expect(stored.code).toBe(0);
  const cred = JSON.parse(stored.stdout).credential;
  expect(cred).toMatchObject({ displayName: "up", hint: upstream.id, credentialType: "CREDENTIAL_TYPE_ACCESS_KEY" });
  expect(stored.stdout).not.toContain(upstream.secret);
  expect((await cli(["credentials", "ls"])).stdout).toMatch(new RegExp(`^${cred.credentialId}\\s+EXTERNAL_S3\\s+ACCESS_KEY\\s+up\\s+${upstream.id}`, "m"));
  const made = await cli(["sources", "create", "-b", B, "--name", "upstream", "--root", "shared/", "--s3-endpoint", s.httpUrl, "--s3-bucket", "kb-cli-upstream", "--credential", cred.credentialId, "-o", "json"]);
  expect(made.code).toBe(0);
  const src = JSON.parse(made.stdout).source;
  expect(src.externalS3.credentialId).toBe(cred.credentialId);
  const valid = await cli(["credentials", "validate", cred.credentialId]);
  expect([valid.code, valid.stdout]).toEqual([0, expect.stringMatching(/^valid: listed bucket "kb-cli-upstream"/)]);
  const held = await cli(["credentials", "rm", cred.credentialId]);
  expect([held.code, held.stderr]).toEqual([9, expect.stringContaining(`is used by sources ${src.sourceId}`)]);
  expect((await cli(["sources", "delete", "-b", B, src.sourceId])).code).toBe(0);
  expect((await cli(["credentials", "rm", cred.credentialId])).stdout).toBe("deleted\n");
  expect((await cli(["credentials", "validate", cred.credentialId, "--name", "x"])).stderr).toMatch(/credentials validate does not take --name; it takes none besides --endpoint, --token and -o/);
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

describe("jobs retry", () => {
  // A server whose embedder is down: text jobs fail on a cause that may pass (transient),
  // a corrupt PDF on one that cannot (permanent). Two attempts each, 1.2 s apart.
  let r: TestServers;
  let dead: Awaited<ReturnType<typeof deadPort>>;
  const RB = "kb-retry";
  type Job = { jobId: string; status: string; object: { key: string }; retryOf: string; ruleId: string; permanentFailure: boolean };
  const rcli = (args: string[]) => cli(args, { K3_ENDPOINT: r.httpUrl, DODIL_TOKEN: token });
  const jobs = async (): Promise<Job[]> => JSON.parse((await rcli(["jobs", "list", "-b", RB, "--all", "-o", "json"])).stdout).jobs;
  const ended = () =>
    waitFor("every job to end", async () => ((await jobs()).every((j) => /FAILED|COMPLETED|PARTIAL|CANCELLED/.test(j.status)) ? true : undefined), { timeoutMs: 30_000, intervalMs: 100 });
  let pdfRule = "";

  beforeAll(async () => {
    dead = await deadPort();
    r = await startServers({ K3_AUTH: "on", K3_ROLE: "all", K3_POLL_MS: "50", K3_MAX_ATTEMPTS: "2", K3_RETRY_BASE_MS: "1200", K3_EMBEDDINGS_URL: `http://127.0.0.1:${dead.port}` });
    token = readFileSync(join(r.dataDir, "admin-token"), "utf8").trim();
    r.putObject(RB, "docs/t1.txt", "words ".repeat(50));
    r.putObject(RB, "docs/t2.txt", "more words ".repeat(50));
    r.putObject(RB, "docs/bad.pdf", "not a pdf");
    const pipe = JSON.parse((await rcli(["pipelines", "create", "-b", RB, "--name", "embed", "--template", "text_embedding_index", "-o", "json"])).stdout).pipeline.pipelineId;
    pdfRule = JSON.parse((await rcli(["rules", "create", "-b", RB, "--name", "pdfs", "-p", pipe, "--include", "**/*.pdf", "-o", "json"])).stdout).rule.ruleId;
    await rcli(["rules", "create", "-b", RB, "--name", "texts", "-p", pipe, "--include", "**/*.txt"]);
    expect((await rcli(["trigger", "-b", RB, "docs/t1.txt", "docs/t2.txt", "docs/bad.pdf"])).code).toBe(0);
    await ended();
  });
  afterAll(async () => {
    await dead.close();
    await r.stop();
    token = readFileSync(join(s.dataDir, "admin-token"), "utf8").trim();
  });

  test("a failure says whether a retry can fix it", async () => {
    const byKey = new Map((await jobs()).map((j) => [j.object.key, j]));
    expect(byKey.get("docs/bad.pdf")).toMatchObject({ status: "INGEST_STATUS_FAILED", permanentFailure: true });
    expect(byKey.get("docs/t1.txt")).toMatchObject({ status: "INGEST_STATUS_FAILED", permanentFailure: false, attempts: 2 });
    expect(byKey.get("docs/bad.pdf")).toMatchObject({ attempts: 1 });
  });

  test("the jobs table shows attempts, created and finished in local time, and the duration", async () => {
    const t = (await rcli(["jobs", "list", "-b", RB])).stdout;
    expect(t.split("\n")[0]).toMatch(/^JOB\s+STATUS\s+KEY\s+PIPELINE\s+COUNTERS\s+ATTEMPTS\s+CREATED\s+FINISHED\s+DURATION\s+ERROR$/);
    const row = t.split("\n").find((l) => l.includes("docs/t1.txt"))!;
    const [created, finished] = row.match(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/g)!;
    expect(created <= finished).toBe(true);
    expect(row).toMatch(/chunks \d+ embedded 0\s+2\s+\d{4}-.*\d(\.\d)?(ms|s)\s+embedder unreachable/);
  });

  test("--status takes only what can be retried", async () => {
    const bad = await rcli(["jobs", "retry", "-b", RB, "--status", "COMPLETED"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/takes --status FAILED, PARTIAL or CANCELLED.*COMPLETED jobs have nothing to retry/);
  });

  test("a dry run counts what a run then does; the run links each replay to the job it retries; a second run retries only the newest", async () => {
    const before = await jobs();
    const dry = await rcli(["jobs", "retry", "-b", RB, "--dry-run", "-o", "json"]);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, matched: 3, retried: 2, permanentSkipped: 1, superseded: 0, refused: [] });
    expect(await jobs()).toHaveLength(before.length);
    const human = await rcli(["jobs", "retry", "-b", RB, "--dry-run"]);
    expect(human.stdout).toMatch(/would retry 2 of 3 FAILED\/PARTIAL jobs/);
    expect(human.stdout).toMatch(/1 permanent failures left .*--include-permanent/);

    const run = JSON.parse((await rcli(["jobs", "retry", "-b", RB, "-o", "json"])).stdout);
    expect(run).toMatchObject({ dryRun: false, matched: 3, retried: 2, permanentSkipped: 1 });
    const old = new Map(before.map((j) => [j.object.key, j.jobId]));
    expect(run.jobs.map((j: Job) => [j.object.key, j.retryOf]).sort()).toEqual([
      ["docs/t1.txt", old.get("docs/t1.txt")],
      ["docs/t2.txt", old.get("docs/t2.txt")],
    ]);
    await ended();
    // Five FAILED jobs now, but only two objects' newest are transient failures.
    expect(JSON.parse((await rcli(["jobs", "retry", "-b", RB, "--dry-run", "-o", "json"])).stdout)).toMatchObject({ matched: 5, retried: 2, permanentSkipped: 1 });
    // The replaced job itself is refused by id, naming the newer one.
    const stale = await rcli(["jobs", "retry", "-b", RB, old.get("docs/t1.txt")!]);
    expect(stale.code).toBe(9);
    expect(stale.stderr).toMatch(/is not the newest job of object "docs\/t1\.txt".*retry that one/);
  });

  test("a rule deleted since does not stop a retry: the replay runs the pipeline, and --include-permanent takes permanent failures", async () => {
    const bad = (await jobs()).find((j) => j.object.key === "docs/bad.pdf")!;
    expect(bad.ruleId).toBe(pdfRule);
    expect((await rcli(["rules", "delete", "-b", RB, pdfRule])).code).toBe(0);
    const one = await rcli(["jobs", "retry", "-b", RB, bad.jobId, "-o", "json"]);
    expect(one.code).toBe(0);
    expect(JSON.parse(one.stdout).job).toMatchObject({ object: { key: "docs/bad.pdf" }, retryOf: bad.jobId, ruleId: "" });
    await ended();
    const all = JSON.parse((await rcli(["jobs", "retry", "-b", RB, "--include-permanent", "--dry-run", "-o", "json"])).stdout);
    expect(all).toMatchObject({ retried: 3, permanentSkipped: 0, refused: [] });
  });

  test("trigger --wait shows the attempt, the error and when it runs again while a job is retried", async () => {
    const w = await rcli(["trigger", "-b", RB, "docs/t2.txt", "--wait"]);
    expect(w.code).toBe(1);
    expect(w.stderr).toMatch(/INGEST_STATUS_PENDING\s+chunks \d+ embedded 0\s+attempt 1\s+retry at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d after: embedder unreachable/);
    expect(w.stderr).toMatch(/ended INGEST_STATUS_FAILED: embedder unreachable.*\(gave up after 2 attempts\)/);
  });

  test("retry_of over REST: validate_only creates nothing; a job still running, a COMPLETED one or a different object is refused by name", async () => {
    const rest = (body: unknown) =>
      fetch(`${r.httpUrl}/${RB}/ingest`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) }).then(async (x) => ({ status: x.status, json: (await x.json()) as Record<string, any> })); // eslint-disable-line @typescript-eslint/no-explicit-any
    const newest = (await jobs()).find((j) => j.object.key === "docs/t1.txt")!;
    const count = (await jobs()).length;
    const dry = await rest({ retry_of: newest.jobId, validate_only: true });
    expect(dry).toMatchObject({ status: 200, json: { job: { jobId: "", retryOf: newest.jobId, object: { key: "docs/t1.txt" }, status: "INGEST_STATUS_PENDING" } } });
    expect(await jobs()).toHaveLength(count);
    // A replay sent twice with its request_id is one job, though it is no longer the newest.
    const once = await rest({ retry_of: newest.jobId, request_id: "replay-1" });
    expect(once).toMatchObject({ status: 200, json: { job: { retryOf: newest.jobId } } });
    const twice = await rest({ retry_of: newest.jobId, request_id: "replay-1" });
    expect(twice).toMatchObject({ status: 200, json: { job: { jobId: once.json.job.jobId } } });
    expect((await rest({ retry_of: once.json.job.jobId, request_id: "replay-1" })).status).toBe(409);
    const other = await rest({ retry_of: newest.jobId, object: { key: "docs/t2.txt" } });
    expect(other.status).toBe(400);
    expect(other.json.message).toMatch(/object\.key "docs\/t2\.txt" is not the replayed job's "docs\/t1\.txt"/);
    await ended();
    const missing = await rest({ retry_of: "job_nope" });
    expect(missing.status).toBe(404);
    expect(missing.json.message).toMatch(/retry_of "job_nope" is not a job of bucket "kb-retry"/);
    // A COMPLETED job (a noop pipeline completes anything).
    r.putObject(RB, "docs/ok.bin", "x");
    const noopPipe = JSON.parse((await rcli(["pipelines", "create", "-b", RB, "--name", "nothing", "--template", "noop", "-o", "json"])).stdout).pipeline.pipelineId;
    const done = JSON.parse((await rcli(["trigger", "-b", RB, "docs/ok.bin", "-p", noopPipe, "--wait", "-o", "json"])).stdout).job;
    const completed = await rest({ retry_of: done.jobId });
    expect(completed.status).toBe(400);
    expect(completed.json.message).toMatch(/is INGEST_STATUS_COMPLETED; retry_of replays a FAILED, PARTIAL or CANCELLED job/);
  });
});
