/**
 * What the Docker files promise, checked without a Docker engine: the Dockerfile copies
 * files that exist and starts what the build makes; the worker's healthcheck in
 * docker-compose.yml, run as compose runs it, passes while a real worker reaches its
 * database and its file goes stale once the database is gone. And `npm start` does not
 * rebuild an up-to-date build.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "pg";
import { createTestDb } from "./helpers/db";
import { startProcess } from "./helpers/processes";
import { waitFor } from "./helpers/wait";

jest.setTimeout(180_000);
const ROOT = join(__dirname, "..");

test("the Dockerfile copies what exists, runs as a non-root user under tini, and starts the built entry point", () => {
  const docker = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const copies = [...docker.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1].split(/\s+/));
  expect(copies.length).toBeGreaterThan(4);
  for (const c of copies) expect({ c, exists: existsSync(join(ROOT, c)) }).toEqual({ c, exists: true });
  expect(docker).toMatch(/^USER node$/m);
  expect(docker).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--", "node", "dist\/src\/main\.js"\]$/m);
  expect(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).main).toBe("dist/src/main.js");
  const compose = readFileSync(join(ROOT, "docker-compose.yml"), "utf8");
  expect(compose).toMatch(/build: \./);
});

test("the worker healthcheck of docker-compose.yml passes while the worker reaches its database, and its file goes stale when the database is gone", async () => {
  const compose = readFileSync(join(ROOT, "docker-compose.yml"), "utf8");
  const line = /test: \["CMD-SHELL", "(test \$\$.*k3-worker-healthy.*)"\]/.exec(compose)?.[1];
  expect(line).toBeDefined();
  const dir = mkdtempSync(join(tmpdir(), "k3-health-"));
  const file = join(dir, "healthy");
  const check = () => spawnSync("sh", ["-c", line!.replaceAll("$$", "$").replace("/tmp/k3-worker-healthy", file)]).status;
  const db = await createTestDb();
  const worker = await startProcess("worker", { DATABASE_URL: db.url, K3_DATA_DIR: dir, K3_HEALTH_FILE: file, K3_POLL_MS: "200" });
  try {
    await waitFor("the health file", async () => (existsSync(file) ? true : undefined), { timeoutMs: 15_000, intervalMs: 200 });
    expect(check()).toBe(0);
    // An old file fails the check (what a stuck worker leaves).
    utimesSync(file, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    expect(check()).not.toBe(0);
    await waitFor("a fresh touch", async () => (check() === 0 ? true : undefined), { timeoutMs: 10_000, intervalMs: 200 });
    // The database goes away: the file stops moving.
    const admin = new Client({ connectionString: db.url.replace(/\/[^/?]+(\?|$)/, "/postgres$1") });
    await admin.connect();
    const name = new URL(db.url).pathname.slice(1);
    await admin.query("ALTER DATABASE " + JSON.stringify(name) + " WITH ALLOW_CONNECTIONS false");
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name]);
    await admin.end();
    // Healthy means "reached the database within 3 polls + 10 s": past that, no more touches.
    await new Promise((r) => setTimeout(r, 12_000));
    const stale = statSync(file).mtimeMs;
    await new Promise((r) => setTimeout(r, 5_000));
    expect(statSync(file).mtimeMs).toBe(stale);
  } finally {
    worker.proc.kill("SIGKILL");
    await worker.exited;
    const admin = new Client({ connectionString: db.url.replace(/\/[^/?]+(\?|$)/, "/postgres$1") });
    await admin.connect();
    await admin.query("ALTER DATABASE " + JSON.stringify(new URL(db.url).pathname.slice(1)) + " WITH ALLOW_CONNECTIONS true");
    await admin.end();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("npm start's build step does nothing when the build is newer than every source, and builds when a source changed", () => {
  const script = join(ROOT, "src", "build-if-stale.cjs");
  const built = join(ROOT, "dist", "src", "main.js");
  if (!existsSync(built)) execFileSync("npm", ["run", "-s", "build"], { cwd: ROOT, stdio: "ignore" });
  // Fresh: the build's mtime set after every source; the check exits at once without building.
  const future = new Date(Date.now() + 60_000);
  utimesSync(built, future, future);
  const t0 = Date.now();
  const quick = spawnSync(process.execPath, [script], { cwd: ROOT, encoding: "utf8" });
  expect(quick.status).toBe(0);
  expect(Math.abs(statSync(built).mtimeMs - future.getTime())).toBeLessThan(2);
  expect(Date.now() - t0).toBeLessThan(5_000);
  // Stale: a build older than a source is rebuilt (main.js written anew).
  const past = new Date(Date.now() - 10 * 365 * 86_400_000);
  utimesSync(built, past, past);
  const rebuilt = spawnSync(process.execPath, [script], { cwd: ROOT, encoding: "utf8" });
  expect(rebuilt.status).toBe(0);
  expect(statSync(built).mtimeMs).toBeGreaterThan(past.getTime() + 1000);
});
