/**
 * Protocol edges: two Authorization headers, a client that disconnects mid-body, and the
 * standard gRPC health service following the database.
 */
import { connect as netConnect } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import {
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as Status,
} from "../gen/grpc/health/v1/health_pb";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

const B = "kb-edges";


describe("with auth on", () => {
  let s: TestServers;
  const logLines: string[] = [];
  let token: string;
  beforeAll(async () => {
    s = await startServers({ K3_AUTH: "on" }, { logLines });
    token = (await import("node:fs")).readFileSync(`${s.dataDir}/admin-token`, "utf8").trim();
  });
  afterAll(() => s.stop());

  test("two Authorization headers are refused with 400 / INVALID_ARGUMENT on every HTTP door (REST, Connect, gRPC-Web)", async () => {
    // fetch folds repeated headers into one; a raw request sends them as a proxy might.
    const raw = (method: string, path: string, type: string) =>
      new Promise<string>((resolve, reject) => {
        const url = new URL(s.httpUrl);
        const sock = netConnect(Number(url.port), url.hostname, () => {
          sock.write(
            `${method} ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\nauthorization: Bearer k3t_someone-else\r\n` +
              `content-type: ${type}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}`,
          );
        });
        let out = "";
        sock.on("data", (d) => (out += String(d)));
        sock.on("end", () => resolve(out));
        sock.on("error", reject);
      });
    const rest = await raw("GET", `/${B}/ingest/jobs`, "application/json");
    expect(rest).toMatch(/^HTTP\/1\.1 400 /);
    expect(rest).toMatch(/"code":"invalid_argument".*exactly one Authorization header; this request has 2/);
    expect(await raw("POST", "/dodil.k3.ingest.v1.IngestService/ListIngestJobs", "application/json")).toMatch(/^HTTP\/1\.1 400 /);
    const web = await raw("POST", "/dodil.k3.ingest.v1.IngestService/ListIngestJobs", "application/grpc-web+proto");
    expect(web).toMatch(new RegExp(`grpc-status: ${grpc.status.INVALID_ARGUMENT}\r\n`, "i"));
    // One header still works.
    expect((await fetch(`${s.httpUrl}/${B}/ingest/jobs`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });

  test("a client that disconnects mid-body is logged at debug level, never as an error", async () => {
    const url = new URL(s.httpUrl);
    for (const path of [`/${B}/ingest`, "/dodil.k3.ingest.v1.IngestService/TriggerIngest"]) {
      await new Promise<void>((resolve) => {
        const sock = netConnect(Number(url.port), url.hostname, () => {
          sock.write(`POST ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"object":`);
          setTimeout(() => {
            sock.destroy();
            resolve();
          }, 100);
        });
      });
    }
    // The server keeps serving; nothing about it reached the error level.
    expect((await fetch(`${s.httpUrl}/healthz`)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 100));
    const errors = logLines.filter((l) => /"level":"(error|fatal)"/.test(l) || /"level":50/.test(l));
    expect(errors).toEqual([]);
  });
});

describe("grpc.health.v1.Health", () => {
  test("Check and Watch answer SERVING, then NOT_SERVING when the database goes away", async () => {
    const s = await startServers();
    const client = new grpc.Client(s.grpcAddress, grpc.credentials.createInsecure());
    const check = (service: string) =>
      new Promise<{ code: number; status?: Status }>((resolve) =>
        client.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          (m: Uint8Array) => Buffer.from(m),
          (b: Buffer) => b,
          toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service })),
          (err, res) => resolve(err ? { code: err.code } : { code: 0, status: fromBinary(HealthCheckResponseSchema, res!).status }),
        ),
      );
    try {
      expect(await check("")).toEqual({ code: 0, status: Status.SERVING });
      expect(await check(IngestService.typeName)).toEqual({ code: 0, status: Status.SERVING });
      expect((await check("no.such.Service")).code).toBe(grpc.status.NOT_FOUND);
      const seen: Status[] = [];
      const watch = client.makeServerStreamRequest(
        "/grpc.health.v1.Health/Watch",
        (m: Uint8Array) => Buffer.from(m),
        (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
        toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: "" })),
      );
      watch.on("data", (r: { status: Status }) => seen.push(r.status));
      watch.on("error", () => undefined);
      await waitFor("the first Watch message", () => (seen.length > 0 ? true : undefined));
      await s.db.drop(); // every connection cut, the database gone
      expect(await check("")).toEqual({ code: 0, status: Status.NOT_SERVING });
      await waitFor("Watch to report NOT_SERVING", () => (seen.includes(Status.NOT_SERVING) ? true : undefined), { timeoutMs: 5000 });
      expect(seen[0]).toBe(Status.SERVING);
      watch.cancel();
    } finally {
      client.close();
      await s.app.stop();
    }
  });
});
