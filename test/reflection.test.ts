/**
 * Server reflection, as grpcurl and `buf curl` use it: list services and methods,
 * describe a message, and call methods whose request is resolved only through
 * reflection (v1 and v1alpha), with no .proto file anywhere.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { startServers, type TestServers } from "./helpers/servers";

const run = promisify(execFile);
const BUF = join(__dirname, "..", "node_modules", ".bin", "buf");

let s: TestServers;
beforeAll(async () => {
  s = await startServers();
});
afterAll(() => s.stop());

function bufCurl(...args: string[]) {
  return run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], { timeout: 20_000 });
}

test("buf curl --list-services lists both services", async () => {
  const { stdout } = await bufCurl("--list-services", `http://${s.grpcAddress}`);
  const services = stdout.trim().split("\n");
  expect(services).toEqual(expect.arrayContaining(["dodil.k3.ingest.v1.IngestService", "dodil.k3.pipeline.v1.PipelineService"]));
});

test("buf curl --list-methods lists every RPC", async () => {
  const { stdout } = await bufCurl("--list-methods", `http://${s.grpcAddress}`);
  const methods = stdout.trim().split("\n").sort();
  for (const m of [
    "dodil.k3.ingest.v1.IngestService/TriggerIngest",
    "dodil.k3.ingest.v1.IngestService/GetIngestStatus",
    "dodil.k3.ingest.v1.IngestService/ListIngestJobs",
    "dodil.k3.ingest.v1.IngestService/CancelIngestJob",
    "dodil.k3.ingest.v1.IngestService/CreateRule",
    "dodil.k3.ingest.v1.IngestService/UpdateRule",
    "dodil.k3.pipeline.v1.PipelineService/CreatePipeline",
    "dodil.k3.pipeline.v1.PipelineService/DeletePipeline",
  ]) {
    expect(methods).toContain(m);
  }
});

test.each(["grpc-v1", "grpc-v1alpha"])("a call resolved through %s reflection succeeds", async (protocol) => {
  const created = await bufCurl(
    "--reflect-protocol",
    protocol,
    "-d",
    JSON.stringify({ bucket: "kb-prod", name: `p-${protocol}`, scriptum_template: "noop" }),
    `http://${s.grpcAddress}/dodil.k3.pipeline.v1.PipelineService/CreatePipeline`,
  );
  const pipeline = JSON.parse(created.stdout).pipeline;
  expect(pipeline.pipelineId).toMatch(/^pipe_/);
  // buf curl prints proto3 defaults only when they are set, so the empty kind is absent here.
  expect(pipeline.scriptumTemplate).toBe("noop");

  const listed = await bufCurl(
    "--reflect-protocol",
    protocol,
    "-d",
    JSON.stringify({ bucket: "kb-prod", page_size: 1000 }),
    `http://${s.grpcAddress}/dodil.k3.pipeline.v1.PipelineService/ListPipelines`,
  );
  const out = JSON.parse(listed.stdout);
  expect(out.pipelines.map((p: { pipelineId: string }) => p.pipelineId)).toContain(pipeline.pipelineId);
  expect(Number(out.pagination.totalCount)).toBe(out.pipelines.length);
});

test("an error through reflection carries the gRPC code and message", async () => {
  const err = await bufCurl(
    "-d",
    JSON.stringify({ bucket: "kb-prod", job_id: "job_missing" }),
    `http://${s.grpcAddress}/dodil.k3.ingest.v1.IngestService/GetIngestStatus`,
  ).catch((e: { stderr: string }) => e);
  expect(String((err as { stderr: string }).stderr)).toContain("not_found");
  expect(String((err as { stderr: string }).stderr)).toContain('job_id \\"job_missing\\" not found');
});

test("describe: the file containing IngestJob carries its fields and the http annotations", async () => {
  const def = protoLoader.loadSync(
    join(__dirname, "..", "node_modules", "@grpc", "reflection", "build", "proto", "grpc", "reflection", "v1", "reflection.proto"),
    { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
  };
  const client = new pkg.grpc.reflection.v1.ServerReflection(s.grpcAddress, grpc.credentials.createInsecure());
  type Reply = { file_descriptor_response?: { file_descriptor_proto: Buffer[] }; error_response?: unknown };
  const ask = (request: Record<string, string>) =>
    new Promise<Reply>((resolve, reject) => {
      const stream = client.ServerReflectionInfo();
      stream.on("data", (d: Reply) => {
        resolve(d);
        stream.end();
      });
      stream.on("error", reject);
      stream.write(request);
    });
  const decode = (r: Reply) => (r.file_descriptor_response?.file_descriptor_proto ?? []).map((b) => fromBinary(FileDescriptorProtoSchema, b));
  const files = decode(await ask({ file_containing_symbol: "dodil.k3.ingest.v1.IngestJob" }));
  expect(files.map((f) => f.name)).toContain("dodil/k3/ingest/v1/ingest.proto");
  // grpcurl then fetches the imports by name, as here.
  const ingestFile = files.find((f) => f.name === "dodil/k3/ingest/v1/ingest.proto")!;
  expect(ingestFile.dependency).toEqual(["google/api/annotations.proto"]);
  const annotations = decode(await ask({ file_by_filename: "google/api/annotations.proto" }));
  expect(annotations.map((f) => f.name)).toEqual(expect.arrayContaining(["google/api/annotations.proto", "google/api/http.proto"]));
  const descriptor = decode(await ask({ file_by_filename: "google/protobuf/descriptor.proto" }));
  expect(descriptor.map((f) => f.name)).toContain("google/protobuf/descriptor.proto");
  client.close();
  const ingest = files.find((f) => f.name === "dodil/k3/ingest/v1/ingest.proto")!;
  const job = ingest.messageType.find((m) => m.name === "IngestJob")!;
  expect(job.field.slice(0, 17).map((f) => f.jsonName)).toEqual([
    "jobId", "object", "status", "pipelineId", "pipelineName", "pipelineKind", "ruleId", "chunksCreated",
    "embeddingsCreated", "rowsWritten", "createdAt", "updatedAt", "threadId", "vectorStatus", "outputSize",
    "batchesReceived", "embeddingsWritten",
  ]);
});
