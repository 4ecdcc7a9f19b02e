/**
 * The embedded default database, in a real server process with no DATABASE_URL: it
 * heals after its postmaster is killed with -9, without a restart of ours, and its
 * superuser password is a random one kept in a 0600 file.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "pg";
import { freePort, startProcess, type Child } from "./helpers/processes";
import { waitFor } from "./helpers/wait";

jest.setTimeout(120_000);


let child: Child | undefined;
let dataDir: string;
afterAll(async () => {
  if (child && child.proc.exitCode === null) {
    child.proc.kill("SIGTERM");
    await child.exited;
  }
  rmSync(dataDir, { recursive: true, force: true });
});

test("kill -9 of the embedded postmaster heals without a restart of ours; the password is random and private", async () => {
  dataDir = mkdtempSync(join(tmpdir(), "k3-embedded-"));
  chmodSync(dataDir, 0o755);
  const http = await freePort();
  const pgPort = await freePort();
  child = await startProcess("serve", {
    DATABASE_URL: "",
    K3_DATA_DIR: dataDir,
    K3_HOST: "127.0.0.1",
    K3_HTTP_PORT: String(http),
    K3_GRPC_PORT: String(await freePort()),
    K3_EMBEDDED_PG_PORT: String(pgPort),
    K3_POLL_MS: "100",
  });
  const url = `http://127.0.0.1:${http}`;
  const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
  const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };

  // The password: random, in a file only its owner can read, and the old fixed one fails.
  const pwPath = join(dataDir, "pg-password");
  expect(statSync(pwPath).mode & 0o777).toBe(0o600);
  const password = readFileSync(pwPath, "utf8").trim();
  expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
  const old = new Client({ connectionString: `postgres://postgres:postgres@127.0.0.1:${pgPort}/k3` });
  await expect(old.connect()).rejects.toThrow(/password authentication failed/);
  await old.end().catch(() => undefined);

  const pidFile = join(dataDir, "pg", "postmaster.pid");
  const postmaster = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  process.kill(postmaster, "SIGKILL");

  // It comes back on its own; /healthz stays green meanwhile (it is healing, not dead).
  await waitFor("the embedded PostgreSQL to be restarted", () => {
    try {
      const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
      return pid !== postmaster && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }, { timeoutMs: 30_000, intervalMs: 100 });
  expect((await fetch(`${url}/healthz`)).status).toBe(200);
  await waitFor("/readyz to be green again", async () => ((await fetch(`${url}/readyz`)).status === 200 ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });

  // And the server works end to end again, API and worker, without having been restarted.
  const p = await fetch(`${url}/kb-heal/pipelines`, { method: "POST", headers: auth, body: JSON.stringify({ name: "noop", scriptum_template: "noop" }) });
  expect(p.status).toBe(200);
  const pipelineId = ((await p.json()) as { pipeline: { pipelineId: string } }).pipeline.pipelineId;
  const { mkdirSync, writeFileSync } = await import("node:fs");
  mkdirSync(join(dataDir, "buckets", "kb-heal"), { recursive: true });
  writeFileSync(join(dataDir, "buckets", "kb-heal", "a.txt"), "a");
  const t = await fetch(`${url}/kb-heal/ingest`, { method: "POST", headers: auth, body: JSON.stringify({ object: { key: "a.txt" }, pipelineId }) });
  expect(t.status).toBe(200);
  const jobId = ((await t.json()) as { job: { jobId: string } }).job.jobId;
  await waitFor("the job to complete", async () => {
    const g = await fetch(`${url}/kb-heal/ingest/jobs/${jobId}`, { headers: auth });
    return ((await g.json()) as { job: { status: string } }).job.status === "INGEST_STATUS_COMPLETED" ? true : undefined;
  }, { timeoutMs: 15_000 });
  expect(child.proc.exitCode).toBeNull();
  expect(child.output()).toContain("the embedded PostgreSQL stopped unexpectedly");

  child.proc.kill("SIGTERM");
  expect(await child.exited).toBe(0);
});

/** Runs `serve` until it exits or starts; resolves with its exit code and output. */
async function serveOnce(env: Record<string, string>): Promise<{ started: Child | undefined; code?: number | string; output: string }> {
  try {
    const started = await startProcess("serve", env);
    return { started, output: started.output() };
  } catch (err) {
    const message = (err as Error).message;
    const code = /exited \(([^)]+)\)/.exec(message)?.[1];
    return { started: undefined, code: code === undefined ? undefined : Number(code), output: message };
  }
}

test("a port already taken is one line naming its variable; a start that failed after initdb leaves nothing a later start trips on", async () => {
  const dir = mkdtempSync(join(tmpdir(), "k3-embedded-taken-"));
  chmodSync(dir, 0o755);
  const { createServer } = await import("node:net");
  const blocker = createServer();
  const taken = await new Promise<number>((resolve) => blocker.listen(0, "127.0.0.1", () => resolve((blocker.address() as { port: number }).port)));
  const ports = { http: await freePort(), grpc: await freePort(), pg: await freePort() };
  const env = (over: Record<string, string>) => ({
    DATABASE_URL: "",
    K3_DATA_DIR: dir,
    K3_HOST: "127.0.0.1",
    K3_HTTP_PORT: String(ports.http),
    K3_GRPC_PORT: String(ports.grpc),
    K3_EMBEDDED_PG_PORT: String(ports.pg),
    ...over,
  });
  try {
    for (const variable of ["K3_EMBEDDED_PG_PORT", "K3_HTTP_PORT", "K3_GRPC_PORT"]) {
      const r = await serveOnce(env({ [variable]: String(taken) }));
      expect({ variable, code: r.code }).toEqual({ variable, code: 1 });
      expect(r.output).toContain(`k3-ingest: port ${taken} is in use; set ${variable}\n`);
      // Nothing started before the failure outlives the database it used (the webhook pass did).
      expect(r.output).not.toContain("after calling end on the pool");
    }
    // The first of those failed after initdb: the cluster exists, its database k3 was never
    // made. The next start makes it and starts at once.
    const t0 = Date.now();
    const ok = await serveOnce(env({}));
    expect(ok.started).toBeDefined();
    expect(Date.now() - t0).toBeLessThan(20_000);
    const token = readFileSync(join(dir, "admin-token"), "utf8").trim();
    const res = await fetch(`http://127.0.0.1:${ports.http}/admin/buckets`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    ok.started!.proc.kill("SIGTERM");
    await ok.started!.exited;
  } finally {
    blocker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
