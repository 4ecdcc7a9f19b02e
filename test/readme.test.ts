/**
 * The README, pasted: every ```sh block, in order, in one shell (variables carry from one
 * block to the next, as in a terminal), against the server its first command starts
 * (`npm start`), from a copy of this checkout with a fresh `.k3-data`. `set -e`: a command
 * that fails fails the test. The only edits are the ports (the README's 8080 and 50051
 * become free ones, so the test never collides with whatever runs on the machine; the
 * CLI's default endpoint with them, through K3_ENDPOINT) and the database (the test's own). A block whose first line is `# needs: TOOL …` runs when those
 * tools are installed and is reported as skipped otherwise.
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDb, type TestDb } from "./helpers/db";
import { freePort } from "./helpers/processes";
import { waitFor } from "./helpers/wait";

jest.setTimeout(300_000);

const ROOT = join(__dirname, "..");

/** The README's shell blocks, in order. */
export function shellBlocks(markdown: string): string[] {
  const blocks: string[] = [];
  const re = /^```sh\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) blocks.push(m[1]);
  return blocks;
}

let work = "";
let db: TestDb;
let server: ReturnType<typeof spawn> | undefined;
let serverLog = "";

afterAll(async () => {
  if (server?.pid) {
    try {
      process.kill(-server.pid, "SIGTERM");
    } catch {
      // gone already
    }
    await new Promise((r) => server!.once("exit", r));
  }
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test("every shell block of the README runs as pasted, in order, against the server of its first command", async () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  // The first command a newcomer runs starts the server.
  expect(readme).toMatch(/^ {4}npm ci && npm start$/m);
  const blocks = shellBlocks(readme);
  expect(blocks.length).toBeGreaterThan(8);

  work = mkdtempSync(join(tmpdir(), "k3-readme-"));
  const repo = join(work, "k3-ingest");
  mkdirSync(repo);
  for (const entry of readdirSync(ROOT)) {
    if ([".git", ".k3-data", "node_modules", "coverage"].includes(entry)) continue;
    cpSync(join(ROOT, entry), join(repo, entry), { recursive: true, preserveTimestamps: true });
  }
  symlinkSync(join(ROOT, "node_modules"), join(repo, "node_modules"));
  const home = join(work, "home");
  mkdirSync(home);

  const [http, grpc] = [await freePort(), await freePort()];
  db = await createTestDb();
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, DATABASE_URL: db.url, K3_HTTP_PORT: String(http), K3_GRPC_PORT: String(grpc), K3_LOG_LEVEL: "warn" };
  delete env.DODIL_TOKEN;
  delete env.K3_ENDPOINT;
  server = spawn("npm", ["start"], { cwd: repo, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  server.stdout?.on("data", (d) => (serverLog += String(d)));
  server.stderr?.on("data", (d) => (serverLog += String(d)));
  await waitFor(
    "the server of `npm start`",
    async () => ((await fetch(`http://127.0.0.1:${http}/readyz`).then((r) => r.ok).catch(() => false)) ? true : undefined),
    { timeoutMs: 180_000, intervalMs: 500 },
  );

  const ported = (b: string) => b.replaceAll("localhost:8080", `localhost:${http}`).replaceAll("localhost:50051", `localhost:${grpc}`);
  const script = ["set -eo pipefail"];
  blocks.forEach((b, i) => {
    const file = join(work, `block-${i + 1}.sh`);
    writeFileSync(file, ported(b));
    const needs = /^# needs: (.+)$/m.exec(b.split("\n")[0])?.[1].split(/\s+/) ?? [];
    const check = needs.map((t) => `command -v ${t} >/dev/null`).join(" && ") || "true";
    script.push(`echo; if ${check}; then echo "=== block ${i + 1}"; source ${JSON.stringify(file)}; else echo "=== block ${i + 1} skipped: needs ${needs.join(" ")}"; fi`);
  });
  // The CLI's default endpoint is localhost:8080: the same port edit, as its environment.
  const run = spawnSync("bash", ["-c", script.join("\n")], { cwd: repo, env: { ...env, K3_ENDPOINT: `http://localhost:${http}` }, encoding: "utf8", timeout: 240_000, maxBuffer: 64 * 2 ** 20 });
  const output = `${run.stdout}\n${run.stderr}`;
  if (run.status !== 0) throw new Error(`the README failed (exit ${run.status}) after:\n${output.slice(-6000)}\n--- server log ---\n${serverLog.slice(-3000)}`);
  const ran = output.match(/^=== block \d+$/gm) ?? [];
  const skipped = output.match(/^=== block \d+ skipped.*$/gm) ?? [];
  expect(ran.length + skipped.length).toBe(blocks.length);
  // What a reader would look at: the ids were captured, the waited-for job completed, search answered.
  expect(output).toMatch(/^pipeline pipe_\S+, rule rule_\S+$/m);
  expect(output).toMatch(/INGEST_STATUS_COMPLETED/);
  expect(output).toMatch(/"results":/);
  expect(skipped.every((s) => /needs (grpcurl|protoc)/.test(s))).toBe(true);
});
