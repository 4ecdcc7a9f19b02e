/**
 * Discoveries, run by workers: claim one (with a lease), stream the source's listing in
 * key order, compare each batch with the checkpoint, and commit the batch — checkpoint
 * writes, deletions with their outputs, the jobs of new and modified objects, and the
 * resume key — in one transaction fenced by the lease. A discovery that crashed resumes
 * after its last committed key, so every object is dispatched exactly once per
 * discovery. Memory holds one batch, whatever the size of the source.
 *
 * The same loop starts the scheduled polls: each tick claims the sources whose period is
 * due (one instance wins each period) and creates their discoveries.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { newId } from "../domain/ids";
import { mimeTypeOf } from "../domain/mime";
import type { NewJob, Scope } from "../domain/job";
import { zeroCounts, type CheckpointEntry, type Discovery, type Source } from "../domain/source";
import type { Logger } from "../log";
import type { ScanEntry } from "../storage/object-store";
import { LostLease, type DiscoveryBatch, type SyncStore } from "../storage/postgres/sync-store";
import type { Repository } from "../storage/repository";
import { loadRouting, planJobs, type Routing } from "../service/upload-jobs";
import type { SourceObjects } from "./source-objects";

export interface DiscoveryConfig {
  /** How often an idle runner looks for work and due sources (ms). */
  pollMs: number;
  leaseMs: number;
  /** Listed objects per committed batch. */
  batchSize: number;
}

/** True when a listed object differs from its checkpoint row. */
export function changed(c: CheckpointEntry, e: ScanEntry): boolean {
  if (c.size !== e.size) return true;
  // An S3 listing: compare etags (a multipart etag of ours is not the upstream's: size only).
  if (e.etag) return c.etag !== "" && !c.etag.includes("-") ? c.etag !== e.etag : false;
  return c.version !== e.version; // a folder: modification time
}

export class DiscoveryRunner {
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly owner = newId("thread");

  constructor(
    private readonly deps: { repo: Repository; sync: SyncStore; sources: SourceObjects; log: Logger; now?: () => number },
    private readonly config: DiscoveryConfig,
  ) {}

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Looks for work at once (a discovery was just created here). */
  kick(): void {
    this.wake?.();
  }

  /** Stops; a running discovery is handed back, to resume after its checkpoint elsewhere. */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      let busy = false;
      try {
        await this.schedule();
        const d = await this.deps.sync.discoveryClaim(this.owner, this.config.leaseMs, this.now());
        if (d) {
          busy = true;
          await this.discover(d);
        }
      } catch (err) {
        if (!signal.aborted) this.deps.log.warn("discovery loop error", { err: (err as Error).message });
      }
      if (!busy && !signal.aborted) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          void sleep(this.config.pollMs, undefined, { signal }).then(resolve, resolve);
        });
        this.wake = undefined;
      }
    }
  }

  /** Creates the discoveries of the sources whose period is due. */
  private async schedule(): Promise<void> {
    for (const s of await this.deps.sync.sourcesDue(this.now())) {
      const { created } = await this.deps.sync.discoveryCreate({ discoveryId: newId("disc"), org: s.org, bucket: s.bucket, sourceId: s.sourceId, fullSync: false, ruleId: "", createdAt: this.now() });
      if (created) this.deps.log.info("scheduled discovery", { sourceId: s.sourceId, bucket: s.bucket });
    }
  }

  private async discover(d: Discovery): Promise<void> {
    const { sync, log } = this.deps;
    const signal = this.stopping.signal;
    const heartbeat = setInterval(() => {
      void sync.discoveryHeartbeat(d.discoveryId, this.owner, this.config.leaseMs, this.now()).catch(() => undefined);
    }, Math.max(200, Math.floor(this.config.leaseMs / 3)));
    try {
      const source = await sync.sourceById(d.sourceId);
      if (!source) throw new Error("the source no longer exists");
      const scope: Scope = { org: source.org, bucket: source.bucket, signal };
      const routing = await loadRouting(this.deps.repo, scope, source.sourceId, d.ruleId);
      if (d.ruleId && routing.rules.length === 0) throw new Error(`rule ${JSON.stringify(d.ruleId)} is not an enabled rule of this source with a pipeline`);
      const store = await this.deps.sources.storeFor(source);
      let cursor = d.checkpointKey;
      let batch: ScanEntry[] = [];
      for await (const e of store.scan(scope, cursor)) {
        batch.push(e);
        // A batch ends at an object's key (an unreadable entry's is not one to resume after).
        if (batch.length >= this.config.batchSize && !e.unreadable) {
          await this.commit(d, source, routing, batch, cursor, e.key);
          cursor = e.key;
          batch = [];
        }
      }
      await this.commit(d, source, routing, batch, cursor, undefined);
      if (await sync.discoveryFinish(d, this.owner, "completed", "", this.now())) log.info("discovery completed", { discoveryId: d.discoveryId, sourceId: d.sourceId });
    } catch (err) {
      if (err instanceof LostLease) {
        log.info("discovery stopped: no longer held (cancelled, or taken over)", { discoveryId: d.discoveryId });
      } else if (signal.aborted) {
        await sync.discoveryRelease(d.discoveryId, this.owner).catch(() => undefined);
      } else {
        const message = (err as Error).message;
        log.warn("discovery failed", { discoveryId: d.discoveryId, sourceId: d.sourceId, err: message });
        await sync.discoveryFinish(d, this.owner, "failed", message, this.now()).catch(() => undefined);
      }
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** Compares listed objects (keys in (after, upTo]) with the checkpoint and commits the batch. */
  private async commit(d: Discovery, s: Source, routing: Routing, listed: ScanEntry[], after: string, upTo: string | undefined): Promise<void> {
    const { sync } = this.deps;
    const checkpoint = new Map<string, CheckpointEntry>();
    for (let from = after; ; ) {
      const rows = await sync.checkpointRange(s, from, upTo, 5000);
      for (const r of rows) checkpoint.set(r.key, r);
      if (rows.length < 5000) break;
      from = rows[rows.length - 1].key;
    }
    const now = this.now();
    const internal = s.provider === "internal_s3";
    const b: DiscoveryBatch = { upserts: [], deletions: [], jobs: [], guarded: new Set(), counts: zeroCounts(), checkpointKey: upTo ?? listed.at(-1)?.key ?? after };
    const jobsFor = (key: string, contentType: string, size: number, version: string): NewJob[] =>
      planJobs(routing, { key, mimeType: contentType, size }, { objectVersion: version, traceId: d.discoveryId, now });
    for (const e of listed) {
      b.counts.scanned++;
      if (e.unreadable) {
        b.counts.failed++;
        this.deps.log.warn("discovery left out an entry it cannot read", { discoveryId: d.discoveryId, sourceId: d.sourceId, key: e.key, reason: e.unreadable });
        continue;
      }
      const c = checkpoint.get(e.key);
      checkpoint.delete(e.key);
      const version = internal ? e.version : e.etag || e.version;
      if (!c || changed(c, e)) {
        if (c) b.counts.modified++;
        else b.counts.newObjects++;
        const contentType = c?.contentType || mimeTypeOf(e.key);
        b.upserts.push({ key: e.key, size: e.size, etag: e.etag, version, contentType, previousVersion: c?.version ?? "" });
        b.guarded.add(e.key);
        b.jobs.push(...jobsFor(e.key, contentType, e.size, version));
      } else {
        b.counts.unchanged++;
        if (d.fullSync) b.jobs.push(...jobsFor(e.key, c.contentType || mimeTypeOf(e.key), c.size, c.version));
      }
    }
    // Checkpoint rows the listing did not show. A bucket's store does not list keys it keeps
    // by hash (storage/key-path.ts): those are asked for one by one before counting as gone.
    const store = await this.deps.sources.storeFor(s);
    for (const c of checkpoint.values()) {
      if (internal && (await store.stat({ org: s.org, bucket: s.bucket }, c.key))) continue;
      b.deletions.push({ key: c.key, version: c.version });
    }
    if (upTo !== undefined || listed.length > 0 || b.deletions.length > 0) {
      await sync.discoveryCommit(d, this.owner, s, b, this.config.leaseMs, now);
    }
  }
}
