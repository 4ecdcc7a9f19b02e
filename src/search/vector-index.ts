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

  constructor(private readonly store: VectorStore) {}

  private async refresh(scope: Scope, pipelineId: string, version: number): Promise<CollectionIndex> {
    const id = `${scope.org}\u0000${scope.bucket}\u0000${pipelineId}`;
    let c = this.collections.get(id);
    if (!c) this.collections.set(id, (c = { version: -1, objects: new Map() }));
    const col = c;
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
              let n = 0;
              for (let d = 0; d < dims; d++) {
                vectors[r * dims + d] = v[d];
                n += v[d] * v[d];
              }
              norms[r] = Math.sqrt(n);
            });
            col.objects.set(key, { jobId: o.jobId, dims, indexes: Int32Array.from(o.indexes), vectors, norms });
          }
        }
        // Written while we read: the next search sees the version move again and catches up.
        col.version = version;
      })().finally(() => (col.refreshing = undefined));
      await col.refreshing;
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
          let dot = 0;
          const base = r * dims;
          for (let d = 0; d < dims; d++) dot += v[base + d] * query[d];
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
