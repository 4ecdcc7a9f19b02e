/**
 * Prometheus metrics (prom-client), one registry per process: RPCs (counted in the wrapper
 * every door shares), jobs run by this process's worker, and the process itself. They
 * reveal nothing of any organization's data. An organization's job counts and queue age
 * are served separately (renderOrgMetrics), only to an admin token of that organization,
 * from the maintained counters, so a scrape never scans the jobs table.
 */
import { PerformanceObserver, constants as perfConstants } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";
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

/** What an organization's job gauges are read from. */
export interface JobStatsSource {
  jobCountsByStatus(org: string): Promise<Record<string, number>>;
  oldestPendingCreatedAt(org: string): Promise<number | undefined>;
}

const STATUSES = ["pending", "processing", "completed", "failed", "partial", "cancelled"];

/** The job gauges of one organization, in the Prometheus text format. */
export async function renderOrgMetrics(stats: JobStatsSource, org: string, now = Date.now()): Promise<string> {
  const [counts, oldest] = await Promise.all([stats.jobCountsByStatus(org), stats.oldestPendingCreatedAt(org)]);
  const lines = ["# HELP k3_jobs Jobs by status (this organization)", "# TYPE k3_jobs gauge"];
  for (const status of STATUSES) lines.push(`k3_jobs{status="${status}"} ${counts[status] ?? 0}`);
  lines.push("# HELP k3_queue_oldest_pending_age_seconds Age of the oldest PENDING job of this organization (0 when none)");
  lines.push("# TYPE k3_queue_oldest_pending_age_seconds gauge");
  lines.push(`k3_queue_oldest_pending_age_seconds ${oldest === undefined ? 0 : Math.max(0, (now - oldest) / 1000)}`);
  return lines.join("\n") + "\n";
}

/**
 * The V8 heap in use right after the last full (mark-sweep) collection: what the process
 * really keeps alive. Heap-in-use and RSS read anywhere on the collector's sawtooth, and
 * V8 keeps memory it has freed, so a leak shows here first and steadily. 0 until the first
 * full collection. One observer per process, whatever the number of registries.
 */
let heapAfterGc = 0;
let gcObserver: PerformanceObserver | undefined;
function observeFullCollections(): void {
  gcObserver ??= new PerformanceObserver((list) => {
    const full = list.getEntries().some((e) => (e as unknown as { detail?: { kind?: number } }).detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR);
    if (full) heapAfterGc = getHeapStatistics().used_heap_size;
  });
  gcObserver.observe({ entryTypes: ["gc"] });
}

/** Creates the registry and its metrics. */
export function createMetrics(): Metrics {
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
  observeFullCollections();
  new Gauge({
    name: "k3_heap_after_gc_bytes",
    help: "V8 heap in use right after the last full garbage collection: the live heap, where a leak shows (0 before the first)",
    registers: [registry],
    collect() {
      this.set(heapAfterGc);
    },
  });
  return m;
}
