/**
 * Exact vector search in memory, kept in step with PostgreSQL. Each collection (vector
 * pipeline) is held as one Float32Array block per object, with each chunk's norm; before
 * every search the collection's version (bumped by every write of its chunks) is read, and
 * when it moved, the objects whose current job changed are reloaded and the deleted ones
 * dropped (object_outputs says which), so a committed chunk is searchable at the next
 * search, on every instance, and a crash leaves nothing to repair: the memory is rebuilt
 * from the table. Scoring is cosine similarity over every chunk (exact: recall 1).
 */
import type { Scope } from "../domain/job";
import type { VectorStore } from "../storage/postgres/vector-store";

interface ObjectBlock {
  jobId: string;
  dims: number;
  indexes: Int32Array;
  vectors: Float32Array;
  norms: Float32Array;
}

interface CollectionIndex {
  version: number;
  objects: Map<string, ObjectBlock>;
  /** Bytes its blocks hold, as of its last refresh. */
  bytes: number;
  lastUsed: number;
  /** Serialises refreshes of this collection. */
  refreshing?: Promise<void>;
}

/** One scored chunk. */
export interface Hit {
  pipelineId: string;
  key: string;
  chunkIndex: number;
  score: number;
}

const LOAD_BATCH = 500;

/** Keeps the best `k` hits (a small sorted array: k is at most 1,000). */
class TopK {
  readonly hits: Hit[] = [];
  constructor(private readonly k: number) {}
  floor(): number {
    return this.hits.length < this.k ? -Infinity : this.hits[this.hits.length - 1].score;
  }
  add(h: Hit): void {
    if (h.score <= this.floor()) return;
    let i = this.hits.length;
    while (i > 0 && this.hits[i - 1].score < h.score) i--;
    this.hits.splice(i, 0, h);
    if (this.hits.length > this.k) this.hits.pop();
  }
}

export class VectorIndex {
  private readonly collections = new Map<string, CollectionIndex>();

  /** `maxBytes`: past it, the least recently searched collections are dropped (reloaded when next searched). */
  constructor(
    private readonly store: VectorStore,
    private readonly maxBytes = 1024 * 2 ** 20,
  ) {}

  /** Bytes held, all collections together. */
  heldBytes(): number {
    let n = 0;
    for (const c of this.collections.values()) n += c.bytes;
    return n;
  }

  private evict(keep: CollectionIndex): void {
    let total = this.heldBytes();
    const byAge = [...this.collections].filter(([, c]) => c !== keep && !c.refreshing).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [id, c] of byAge) {
      if (total <= this.maxBytes) break;
      this.collections.delete(id);
      total -= c.bytes;
    }
  }

  private async refresh(scope: Scope, pipelineId: string, version: number): Promise<CollectionIndex> {
    const id = `${scope.org}\u0000${scope.bucket}\u0000${pipelineId}`;
    let c = this.collections.get(id);
    if (!c) this.collections.set(id, (c = { version: -1, objects: new Map(), bytes: 0, lastUsed: 0 }));
    const col = c;
    col.lastUsed = Date.now();
    while (col.version !== version) {
      if (col.refreshing) {
        await col.refreshing;
        continue;
      }
      col.refreshing = (async () => {
        const outputs = await this.store.outputs(scope, pipelineId);
        for (const key of col.objects.keys()) if (!outputs.has(key)) col.objects.delete(key);
        const stale = [...outputs].filter(([key, jobId]) => col.objects.get(key)?.jobId !== jobId).map(([key]) => key);
        for (let i = 0; i < stale.length; i += LOAD_BATCH) {
          const batch = stale.slice(i, i + LOAD_BATCH);
          const loaded = new Map((await this.store.chunksOf(scope, pipelineId, batch)).map((o) => [o.key, o]));
          for (const key of batch) {
            const o = loaded.get(key);
            if (!o || o.vectors.length === 0) {
              col.objects.delete(key);
              continue;
            }
            const dims = o.vectors[0].length;
            const vectors = new Float32Array(o.vectors.length * dims);
            const norms = new Float32Array(o.vectors.length);
            o.vectors.forEach((v, r) => {
              vectors.set(v.subarray(0, dims), r * dims);
              let n = 0;
              for (let d = 0; d < dims; d++) n += v[d] * v[d];
              norms[r] = Math.sqrt(n);
            });
            col.objects.set(key, { jobId: o.jobId, dims, indexes: Int32Array.from(o.indexes), vectors, norms });
          }
        }
        // Written while we read: the next search sees the version move again and catches up.
        col.version = version;
        col.bytes = 0;
        for (const o of col.objects.values()) col.bytes += o.vectors.byteLength + o.norms.byteLength + o.indexes.byteLength + 64;
      })().finally(() => (col.refreshing = undefined));
      await col.refreshing;
      this.evict(col);
    }
    return col;
  }

  /** The dimension of a collection's chunks (0 when it holds none), after bringing it up to date. */
  async dimensionOf(scope: Scope, pipelineId: string): Promise<number> {
    const versions = await this.store.versions(scope, [pipelineId]);
    const col = await this.refresh(scope, pipelineId, versions.get(pipelineId) ?? 0);
    for (const o of col.objects.values()) return o.dims;
    return 0;
  }

  /**
   * The `k` chunks most similar to `query` (cosine) across the given collections whose
   * chunks have the query's dimension; `accept` filters objects by key.
   */
  async search(scope: Scope, pipelineIds: string[], query: Float32Array, k: number, accept: (key: string) => boolean): Promise<Hit[]> {
    const versions = await this.store.versions(scope, pipelineIds);
    let qn = 0;
    for (let d = 0; d < query.length; d++) qn += query[d] * query[d];
    qn = Math.sqrt(qn);
    const top = new TopK(k);
    if (qn === 0) return [];
    for (const pipelineId of pipelineIds) {
      const col = await this.refresh(scope, pipelineId, versions.get(pipelineId) ?? 0);
      const dims = query.length;
      for (const [key, o] of col.objects) {
        if (o.dims !== dims || !accept(key)) continue;
        const v = o.vectors;
        for (let r = 0; r < o.indexes.length; r++) {
          const base = r * dims;
          // Four running sums: independent additions the CPU can overlap.
          let a0 = 0;
          let a1 = 0;
          let a2 = 0;
          let a3 = 0;
          let d = 0;
          for (; d + 3 < dims; d += 4) {
            a0 += v[base + d] * query[d];
            a1 += v[base + d + 1] * query[d + 1];
            a2 += v[base + d + 2] * query[d + 2];
            a3 += v[base + d + 3] * query[d + 3];
          }
          for (; d < dims; d++) a0 += v[base + d] * query[d];
          const dot = a0 + a1 + a2 + a3;
          const norm = o.norms[r];
          if (norm === 0) continue;
          const score = dot / (norm * qn);
          if (score > top.floor()) top.add({ pipelineId, key, chunkIndex: o.indexes[r], score });
        }
      }
    }
    return top.hits;
  }
}
