/**
 * Errors that teach, the same on REST, Connect JSON and the CLI's --json: an unknown field
 * names the nearest known one, a bad enum value lists the accepted ones (and the near
 * one), a bare list where a wrapper goes shows the shape to send. And the CLI pointed at
 * the gRPC port says so.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";

jest.setTimeout(60_000);

const run = promisify(execFile);
const ROOT = join(__dirname, "..");
const B = "kb-teach";
let s: TestServers;
let http: ReturnType<typeof jsonClient>;
let ruleId = "";

const connect = async (method: string, body: unknown) => {
  const res = await fetch(`${s.httpUrl}/dodil.k3.ingest.v1.IngestService/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as J };
};

async function cli(args: string[], endpoint = s.httpUrl): Promise<{ code: number; stderr: string }> {
  try {
    await run(process.execPath, ["-r", join(ROOT, "test/helpers/ts-register.cjs"), join(ROOT, "src/main.ts"), ...args], { env: { ...process.env, K3_ENDPOINT: endpoint, DODIL_TOKEN: "" }, timeout: 30_000 });
    return { code: 0, stderr: "" };
  } catch (e) {
    const x = e as { code: number; stderr: string };
    return { code: x.code, stderr: x.stderr };
  }
}

beforeAll(async () => {
  s = await startServers();
  http = jsonClient(() => s.httpUrl);
  s.putObject(B, "a.txt", "x");
  const pipe = (await http("POST", `/${B}/pipelines`, { name: "p", scriptum_template: "noop" })).json.pipeline.pipelineId;
  ruleId = (await http("POST", `/${B}/rules`, { name: "r", pipeline_id: pipe, include_patterns: ["**"] })).json.rule.ruleId;
});
afterAll(() => s.stop());

test("an unknown field names the nearest known one, on REST and Connect", async () => {
  const rest = await http("POST", `/${B}/rules`, { name: "r2", pipelineID: "pipe_x" });
  expect(rest.status).toBe(400);
  expect(rest.json.message).toMatch(/^invalid CreateRuleRequest: unknown field "pipelineID" of CreateRuleRequest; did you mean "pipelineId"\? its fields are bucket, sourceId, pipelineId/);
  const c = await connect("CreateRule", { bucket: B, name: "r2", pipeline_idd: "pipe_x" });
  expect(c.status).toBe(400);
  expect(c.json).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/unknown field "pipeline_idd" of CreateRuleRequest; did you mean "pipelineId"\?/) });
});

test("a bad enum value lists what is accepted, and the near one", async () => {
  const rest = await http("GET", `/${B}/ingest/jobs?status_filter=FAILD`);
  expect(rest.status).toBe(400);
  expect(rest.json.message).toMatch(/statusFilter "FAILD" is not a IngestStatus; did you mean "INGEST_STATUS_FAILED"\? accepted: INGEST_STATUS_UNSPECIFIED, INGEST_STATUS_PENDING, .*INGEST_STATUS_CANCELLED \(or their numbers\)/);
  const c = await connect("ListIngestJobs", { bucket: B, statusFilter: "DONE" });
  expect(c.status).toBe(400);
  expect(c.json.message).toMatch(/statusFilter "DONE" is not a IngestStatus; accepted: INGEST_STATUS_UNSPECIFIED/);
  // Good values still pass through the same check.
  expect((await connect("ListIngestJobs", { bucket: B, statusFilter: "INGEST_STATUS_FAILED" })).status).toBe(200);
});

test("a bare list where a wrapper goes shows the shape to send; the CLI's --json says the same", async () => {
  const rest = await http("PATCH", `/${B}/rules/${ruleId}`, { include_patterns: ["docs/*.txt"] });
  expect(rest.status).toBe(400);
  expect(rest.json.message).toMatch(/includePatterns takes \{"values": \[…\]\}, not a bare list: send "includePatterns": \{"values": \["docs\/\*\.txt"\]\}/);
  const c = await connect("UpdateRule", { bucket: B, ruleId, includePatterns: ["docs/*.txt"] });
  expect(c.json.message).toMatch(/includePatterns takes \{"values": \[…\]\}/);
  const viaCli = await cli(["rules", "update", "-b", B, ruleId, "--json", '{"include_patterns":["docs/*.txt"]}']);
  expect(viaCli.code).toBe(3);
  expect(viaCli.stderr).toMatch(/^InvalidArgument: invalid UpdateRuleRequest: includePatterns takes \{"values": \[…\]\}, not a bare list/);
  expect(viaCli.stderr).not.toMatch(/cannot decode/);
  // The shape it names works.
  expect((await http("PATCH", `/${B}/rules/${ruleId}`, { include_patterns: { values: ["docs/*.txt"] } })).status).toBe(200);
});

test("the CLI pointed at the gRPC port says that is the gRPC port", async () => {
  const r = await cli(["jobs", "list", "-b", B], `http://${s.grpcAddress}`);
  expect(r.code).toBe(14);
  expect(r.stderr).toMatch(/speaks only HTTP\/2 gRPC.*the HTTP port/);
  expect(r.stderr).not.toMatch(/EPIPE/);
});
