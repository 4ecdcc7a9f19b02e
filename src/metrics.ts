/**
 * Prometheus metrics (prom-client), one registry per process. RPCs are counted in the
 * wrapper every door shares; job state gauges are read from the maintained counters when
 * scraped, so a scrape costs two small queries, never a scan of the jobs table.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** The metrics a process records. */
export interface Metrics {
  registry: Registry;
  rpcs: Counter<"method" | "code" | "door">;
  rpcSeconds: Histogram<"method" | "door">;
  jobSeconds: Histogram<"template" | "outcome">;
  retries: Counter<"template">;
  rescues: Counter<"outcome">;
  workerSlots: Gauge;
  workerBusy: Gauge;
}

/** What the job gauges are read from at scrape time. */
export interface JobStatsSource {
  jobCountsByStatus(): Promise<Record<string, number>>;
  oldestPendingCreatedAt(): Promise<number | undefined>;
}

/** Creates the registry and its metrics; `stats` feeds the job gauges when given. */
export function createMetrics(stats?: JobStatsSource): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "k3_" });
  const m: Metrics = {
    registry,
    rpcs: new Counter({ name: "k3_rpc_requests_total", help: "RPCs handled, by method, code and door", labelNames: ["method", "code", "door"], registers: [registry] }),
    rpcSeconds: new Histogram({
      name: "k3_rpc_duration_seconds",
      help: "RPC handling time, by method and door",
      labelNames: ["method", "door"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    jobSeconds: new Histogram({
      name: "k3_job_duration_seconds",
      help: "Time from claim to the end of an attempt, by template and outcome",
      labelNames: ["template", "outcome"],
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    retries: new Counter({ name: "k3_job_retries_total", help: "Attempts that failed transiently and were scheduled again", labelNames: ["template"], registers: [registry] }),
    rescues: new Counter({ name: "k3_job_rescues_total", help: "Jobs whose lease expired, by what the rescuer made of them", labelNames: ["outcome"], registers: [registry] }),
    workerSlots: new Gauge({ name: "k3_worker_slots", help: "Jobs this process's worker may run at once (0: no worker)", registers: [registry] }),
    workerBusy: new Gauge({ name: "k3_worker_busy", help: "Jobs this process's worker is running", registers: [registry] }),
  };
  if (stats) {
    new Gauge({
      name: "k3_jobs",
      help: "Jobs by status (all organizations and buckets)",
      labelNames: ["status"],
      registers: [registry],
      async collect() {
        const counts = await stats.jobCountsByStatus();
        for (const status of ["pending", "processing", "completed", "failed", "partial", "cancelled"]) this.set({ status }, counts[status] ?? 0);
      },
    });
    new Gauge({
      name: "k3_queue_oldest_pending_age_seconds",
      help: "Age of the oldest PENDING job (0 when none)",
      registers: [registry],
      async collect() {
        const oldest = await stats.oldestPendingCreatedAt();
        this.set(oldest === undefined ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
      },
    });
  }
  return m;
}
