/**
 * The PostgreSQL repository: one pool, shared by the stores it is made of, each in its own
 * module — jobs (job-store.ts), the worker's queue (queue.ts), pipelines and rules with
 * their cache (config-store.ts), buckets (bucket-store.ts), the object catalog and
 * multipart uploads (object-catalog.ts), tokens (token-store.ts), sources and sync
 * (sync-store.ts), search (vector-store.ts) and collections of pushed vectors (collection-store.ts), credentials (credential-store.ts), job events and webhooks (event-store.ts). How
 * statements run (pool, deadlines, transactions, listings) is db.ts; row mapping rows.ts.
 */
import type { Repository, WorkerRepository } from "../repository";
import { PgDb } from "./db";
import { BucketStore } from "./bucket-store";
import { CollectionStore } from "./collection-store";
import { CredentialStore } from "./credential-store";
import { ConfigStore } from "./config-store";
import { EventStore } from "./event-store";
import { JobStore } from "./job-store";
import { ObjectCatalog } from "./object-catalog";
import { JobQueue } from "./queue";
import { SyncStore } from "./sync-store";
import { TokenStore } from "./token-store";
import { VectorStore } from "./vector-store";

export class PgRepository extends PgDb implements Repository, WorkerRepository {
  readonly jobs = new JobStore(this.pool);
  readonly queue = new JobQueue(this.pool);
  readonly config = new ConfigStore(this.pool);
  readonly buckets = new BucketStore(this.pool, this.config);
  readonly catalog = new ObjectCatalog(this.pool);
  readonly tokens = new TokenStore(this.pool);
  readonly sync = new SyncStore(this.pool);
  readonly vector = new VectorStore(this.pool);
  readonly collections = new CollectionStore(this.pool);
  readonly credentials = new CredentialStore(this.pool);
  readonly events = new EventStore(this.pool);

  async ping(): Promise<void> {
    await this.q("SELECT 1");
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
