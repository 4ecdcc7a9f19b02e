/**
 * The standard gRPC health service (grpc.health.v1.Health) on the native gRPC port, so
 * Kubernetes gRPC probes and grpc-health-probe work. SERVING means what /readyz means —
 * the database answers and the migrations are applied — for the whole server ("") and
 * for each of its services; NOT_SERVING otherwise. Watch sends the status at once and then
 * every change (checked once a second). Health calls need no token, like /healthz.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as Status,
  HealthCheckResponseSchema,
  type HealthCheckRequest,
} from "../../gen/grpc/health/v1/health_pb";

const WATCH_INTERVAL_MS = 1000;

function encode(status: Status): Buffer {
  return Buffer.from(toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema, { status })));
}

/** Adds the health service; `ready` says whether the server can serve, `services` the names it knows. */
export function addHealthService(server: grpc.Server, ready: () => Promise<boolean>, services: readonly string[]): void {
  const known = new Set(["", ...services, Health.typeName]);
  const statusOf = async (service: string): Promise<Status> => {
    if (!known.has(service)) return Status.SERVICE_UNKNOWN;
    return (await ready().catch(() => false)) ? Status.SERVING : Status.NOT_SERVING;
  };
  const method = (name: "Check" | "Watch"): grpc.MethodDefinition<HealthCheckRequest, Buffer> => ({
    path: `/${Health.typeName}/${name}`,
    requestStream: false,
    responseStream: name === "Watch",
    requestSerialize: (m) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
    requestDeserialize: (b) => fromBinary(HealthCheckRequestSchema, b),
    responseSerialize: (b) => b,
    responseDeserialize: (b) => b,
    originalName: name.toLowerCase(),
  });
  server.addService({ Check: method("Check"), Watch: method("Watch") } as grpc.ServiceDefinition, {
    Check(call: grpc.ServerUnaryCall<HealthCheckRequest, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      void statusOf(call.request.service).then((status) => {
        if (status === Status.SERVICE_UNKNOWN) callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${JSON.stringify(call.request.service)}` });
        else callback(null, encode(status));
      });
    },
    Watch(call: grpc.ServerWritableStream<HealthCheckRequest, Buffer>) {
      let last: Status | undefined;
      let stopped = false;
      const tick = async () => {
        if (stopped) return;
        const status = await statusOf(call.request.service);
        if (stopped) return;
        if (status !== last) {
          last = status;
          call.write(encode(status));
        }
        timer = setTimeout(() => void tick(), WATCH_INTERVAL_MS);
      };
      let timer: NodeJS.Timeout | undefined;
      const stop = () => {
        stopped = true;
        clearTimeout(timer);
      };
      call.on("cancelled", stop);
      call.on("close", stop);
      void tick();
    },
  });
}
