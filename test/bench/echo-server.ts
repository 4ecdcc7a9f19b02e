/**
 * The echo baseline: the very same transport stack as the server (grpc-js door, Connect
 * and REST doors, the shared wrapper) with services that answer a canned reply and touch
 * no database. Prints {"httpPort", "grpcPort"} on stdout once listening.
 */
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { IngestJobSchema, IngestService, IngestStatus } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { createLogger } from "../../src/log";
import { createOpenAuthenticator } from "../../src/transport/auth";
import { bindGrpc, createGrpcServer } from "../../src/transport/grpc";
import { createHttpServer } from "../../src/transport/http";
import { registerService } from "../../src/transport/services";

const job = create(IngestJobSchema, {
  jobId: "job_01m8echo00000000000000000",
  object: { bucket: "kb-bench", key: "docs/a.txt" },
  status: IngestStatus.PENDING,
  pipelineId: "pipe_echo",
  pipelineName: "echo",
  createdAt: 1716843600000n,
  updatedAt: 1716843600000n,
});

const impl = Object.fromEntries(IngestService.methods.map((m) => [m.localName, async () => ({ job })]));

async function main() {
  const log = createLogger("error");
  const entries = [registerService(IngestService, impl, log, createOpenAuthenticator())];
  const http = createHttpServer(entries, { log, maxBodyBytes: 1 << 20, ready: async () => true });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  const grpc = createGrpcServer(entries, { log, maxReceiveBytes: 1 << 20, ready: async () => true });
  const grpcPort = await bindGrpc(grpc, "127.0.0.1", 0);
  process.stdout.write(JSON.stringify({ httpPort: (http.address() as AddressInfo).port, grpcPort }) + "\n");
  process.on("SIGTERM", () => process.exit(0));
}

void main();
