/**
 * Vector search in memory, kept in step with PostgreSQL (the source of truth).
 *
 * Each collection (vector pipeline) holds its chunks as 4-bit codes: every vector scaled so
 * its largest component is ±7 (cosine does not see the scale), half a byte per dimension,
 * in segments of about 16 MB (segments.ts, scan-kernel.cjs). A search scores every code
 * with our WebAssembly SIMD kernel (about 16 ms per million chunks of 384 dimensions on one
 * core; full segments are shared out to a scan thread, scan-threads.ts, which scans its half
 * meanwhile), keeps four times the asked number of candidates, and reranks those with their
 * real vectors read from PostgreSQL, so scores are exact cosines and the only loss is a
 * true neighbour quantized below four times k (recall 1.0 in the bench at 100,000 and
 * 1,000,000). No graph to build, nothing that depends on the data's shape, an eighth of the
 * memory of the vectors themselves.
 *
 * Before every search the collection's version (bumped by every write of its chunks) is
 * read; when it moved, the objects whose current job changed are reloaded and the deleted
 * ones dropped (object_outputs says which), so a committed chunk is searchable at the next
 * search, on every instance, and a crash leaves nothing to repair: the memory is rebuilt
 * from the table.
 */
import { cpus } from "node:os";
import { ScanThread } from "./scan-threads";
import { Best, CodeBlock, encodeQuery, rowBytes, type KernelQuery, type TaggedResult } from "./scan-kernel.cjs";
import { Segment, type ObjectEntry, type Part } from "./segments";
import type { Scope } from "../domain/job";
import { chunkRefKey, type ChunkPlaceRow, type ObjectChunks, type VectorStore } from "../storage/postgres/vector-store";

interface CollectionIndex {
  version: number;
  objects: Map<string, ObjectEntry>;
  /** Segments per dimension (a collection's model may have changed between ingests). */
  groups: Map<number, Segment[]>;
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
  /** Where the chunk lies (read with its vector for the rerank). */
  place?: ChunkPlaceRow;
}

const LOAD_BATCH = 500;
/** Bytes of codes per segment: a scan of one is a millisecond or two, then other work runs. */
const SEGMENT_BYTES = 16 * 2 ** 20;
/** Dead rows a segment may hold before it is compacted (and at least this share of its rows). */
const DEAD_ROWS = 64;

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let d = 0; d < a.length; d++) {
    dot += a[d] * b[d];
    na += a[d] * a[d];
    nb += b[d] * b[d];
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

const yieldToOthers = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The scan thread stopped during a search: the search starts again without it. */
class ScanThreadLost extends Error {}

/** Candidates of one scan: owner and chunk, best first after the merge. */
interface Candidate {
  owner: ObjectEntry;
  chunkIndex: number;
  /** The kernel's score: the cosine to the 4-bit codes, times the query's norm. */
  score: number;
}

export class VectorIndex {
  private readonly collections = new Map<string, CollectionIndex>();

  /** `maxBytes`: past it, the least recently searched collections are dropped (reloaded when next searched). */
  private thread: ScanThread | undefined;
  private threadLost = false;

  private readonly threads: number;
  private readonly segmentBytes: number;

  /**
   * `maxBytes`: past it, the least recently searched collections are dropped (reloaded when
   * next searched). `threads`: scan threads besides this one (default one on a multi-core
   * machine, none on one core); `segmentBytes`: codes per segment (16 MB).
   */
  constructor(
    private readonly store: VectorStore,
    private readonly maxBytes = 1024 * 2 ** 20,
    opts: { threads?: number; segmentBytes?: number } = {},
  ) {
    this.threads = Math.min(1, opts.threads ?? (cpus().length > 1 ? 1 : 0));
    this.segmentBytes = opts.segmentBytes ?? SEGMENT_BYTES;
  }

  private static bytesOf(c: CollectionIndex): number {
    let n = 0;
    for (const segs of c.groups.values()) for (const s of segs) n += s.bytes();
    return n + c.objects.size * 160;
  }

  /** Stops the scan thread; the index empties and would rebuild on this thread. */
  async close(): Promise<void> {
    const t = this.thread;
    this.thread = undefined;
    this.threadLost = true;
    this.collections.clear();
    await t?.close();
  }

  /** Live rows held on this thread and on the scan thread, all collections together. */
  placement(): { here: number; away: number } {
    const out = { here: 0, away: 0 };
    for (const c of this.collections.values()) for (const segs of c.groups.values()) for (const seg of segs) out[seg.away ? "away" : "here"] += seg.live;
    return out;
  }

  /** Bytes held, all collections together. */
  heldBytes(): number {
    let n = 0;
    for (const c of this.collections.values()) n += VectorIndex.bytesOf(c);
    return n;
  }

  private evict(keep: CollectionIndex): void {
    let total = this.heldBytes();
    const byAge = [...this.collections].filter(([, c]) => c !== keep && !c.refreshing).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [id, c] of byAge) {
      if (total <= this.maxBytes) break;
      this.collections.delete(id);
      for (const segs of c.groups.values()) for (const seg of segs) if (seg.away) this.thread?.drop(seg.id);
      total -= VectorIndex.bytesOf(c);
    }
  }

  /** The scan thread, started on first use on a machine with more than one core; undefined once lost. */
  private scanThread(): ScanThread | undefined {
    if (this.thread === undefined && !this.threadLost && this.threads > 0) {
      this.thread = new ScanThread(() => {
        // Its segments are gone with it: everything is rebuilt here from PostgreSQL.
        this.thread = undefined;
        this.threadLost = true;
        this.collections.clear();
      });
    }
    return this.thread?.alive ? this.thread : undefined;
  }

  private remove(col: CollectionIndex, o: ObjectEntry): void {
    col.objects.delete(o.key);
    for (const p of o.parts) {
      p.seg.owners.fill(null, p.start, p.start + p.count);
      p.seg.live -= p.count;
      if (p.seg.used - p.seg.live > Math.max(DEAD_ROWS, p.seg.used / 8)) {
        const keep = p.seg.compact();
        if (p.seg.away) this.thread?.compact(p.seg.id, keep);
      }
    }
  }

  /** A full segment goes to the scan thread while fewer full ones are there than here. */
  private balance(segs: Segment[], seg: Segment): void {
    const thread = seg.used === seg.maxRows && !seg.away ? this.scanThread() : undefined;
    if (!thread) return;
    const away = segs.filter((x) => x.away).length;
    const here = segs.filter((x) => !x.away && x.used === x.maxRows).length;
    if (away >= here || !seg.block) return;
    thread.adopt(seg.id, seg.block.export(seg.used));
    seg.block = undefined;
    seg.away = true;
  }

  private add(col: CollectionIndex, key: string, jobId: string, indexes: number[], vectors: Float32Array[]): void {
    const dims = vectors[0].length;
    let segs = col.groups.get(dims);
    if (!segs) col.groups.set(dims, (segs = []));
    const maxRows = Math.max(256, Math.floor(this.segmentBytes / rowBytes(dims)));
    const o: ObjectEntry = { key, jobId, dims, parts: [] };
    let i = 0;
    while (i < vectors.length) {
      let seg = segs[segs.length - 1];
      if (!seg || seg.used === seg.maxRows) segs.push((seg = new Segment(dims, maxRows, 0)));
      const n = Math.min(vectors.length - i, seg.maxRows - seg.used);
      seg.reserve(n);
      const part: Part = { seg, start: seg.used, count: 0 };
      for (const end = i + n; i < end; i++) {
        const v = vectors[i];
        if (v.length !== dims || !seg.block?.encode(seg.used, v)) continue;
        seg.chunks[seg.used] = indexes[i];
        seg.owners[seg.used] = o;
        seg.used++;
        part.count++;
      }
      seg.live += part.count;
      if (part.count > 0) o.parts.push(part);
      this.balance(segs, seg);
    }
    if (o.parts.length > 0) col.objects.set(key, o);
  }

  private async refresh(scope: Scope, pipelineId: string, version: number): Promise<CollectionIndex> {
    const id = `${scope.org}\u0000${scope.bucket}\u0000${pipelineId}`;
    let c = this.collections.get(id);
    if (!c) this.collections.set(id, (c = { version: -1, objects: new Map(), groups: new Map(), lastUsed: 0 }));
    const col = c;
    col.lastUsed = Date.now();
    while (col.version !== version) {
      if (col.refreshing) {
        await col.refreshing;
        continue;
      }
      col.refreshing = (async () => {
        const outputs = await this.store.outputs(scope, pipelineId);
        for (const o of [...col.objects.values()]) if (outputs.get(o.key) !== o.jobId) this.remove(col, o);
        const stale = [...outputs].filter(([key]) => !col.objects.has(key)).map(([key]) => key);
        // Two batches are read ahead while one is added: PostgreSQL's backends encode rows
        // on both cores while this thread decodes and quantizes.
        const reads: Array<Promise<ObjectChunks[]>> = [];
        const readAhead = (from: number) => {
          if (from >= stale.length) return;
          const r = this.store.chunksOf(scope, pipelineId, stale.slice(from, from + LOAD_BATCH));
          r.catch(() => undefined); // awaited in turn; not unhandled if an earlier one throws first
          reads.push(r);
        };
        readAhead(0);
        readAhead(LOAD_BATCH);
        for (let i = 0; i < stale.length; i += LOAD_BATCH) {
          const batch = await (reads.shift() as Promise<ObjectChunks[]>);
          readAhead(i + 2 * LOAD_BATCH);
          for (const o of batch) if (o.vectors.length > 0) this.add(col, o.key, o.jobId, o.indexes, o.vectors);
        }
        // Written while we read: the next search sees the version move again and catches up.
        col.version = version;
      })().finally(() => (col.refreshing = undefined));
      await col.refreshing;
      this.evict(col);
    }
    return col;
  }

  /** The dimension of a collection's chunks (its largest group; 0 when it holds none), after bringing it up to date. */
  async dimensionOf(scope: Scope, pipelineId: string): Promise<number> {
    return (await this.dimensionsOf(scope, [pipelineId])).dims.get(pipelineId) ?? 0;
  }

  /**
   * Each collection's dimension after bringing it up to date, and the versions read for
   * that (one read for all): a search given them does not read them again.
   */
  async dimensionsOf(scope: Scope, pipelineIds: string[]): Promise<{ dims: Map<string, number>; versions: Map<string, number> }> {
    const versions = await this.store.versions(scope, pipelineIds);
    const dims = new Map<string, number>();
    for (const pipelineId of pipelineIds) {
      const col = await this.refresh(scope, pipelineId, versions.get(pipelineId) ?? 0);
      let best = 0;
      let rows = 0;
      for (const [d, segs] of col.groups) {
        const n = segs.reduce((s, g) => s + g.live, 0);
        if (n > rows) [best, rows] = [d, n];
      }
      dims.set(pipelineId, best);
    }
    return { dims, versions };
  }

  /** The chunks the given collections hold now, when all are held (as of their last refresh). */
  liveChunks(scope: Scope, pipelineIds: string[]): number | undefined {
    let n = 0;
    for (const pipelineId of pipelineIds) {
      const col = this.collections.get(`${scope.org}\u0000${scope.bucket}\u0000${pipelineId}`);
      if (!col || col.version < 0) return undefined;
      for (const segs of col.groups.values()) for (const seg of segs) n += seg.live;
    }
    return n;
  }

  /**
   * Candidates among every live row of the segments: the scan thread scans the segments it
   * holds while this thread scans the others, each keeping its best `want` across its
   * segments (plus as many as they hold dead rows, which a filter then drops). What each
   * segment holds is taken before the scan: rows added or compacted meanwhile go to new arrays.
   */
  private async scanSegments(segs: Segment[], query: KernelQuery, want: number, accept: (o: ObjectEntry) => boolean): Promise<Candidate[]> {
    const held = segs.filter((s) => s.live > 0).map((s) => ({ seg: s, block: s.block, owners: s.owners, chunks: s.chunks, rows: s.used }));
    const dead = (hs: typeof held) => hs.reduce((n, h) => n + h.rows - h.seg.live, 0);
    const away = held.filter((h) => h.seg.away);
    const local = held.filter((h) => !h.seg.away);
    const there = away.length ? this.requireThread().scan(query, want + dead(away), away.map((h) => ({ seg: h.seg.id, rows: h.rows }))) : Promise.resolve(undefined);
    there.catch(() => undefined); // awaited below
    const out: Candidate[] = [];
    const take = (hs: typeof held, m: TaggedResult) => {
      for (let i = 0; i < m.rows.length; i++) {
        const h = hs[m.tags[i]];
        const r = m.rows[i];
        const owner = h.owners[r];
        if (owner && accept(owner)) out.push({ owner, chunkIndex: h.chunks[r], score: m.scores[i] });
      }
    };
    const best = new Best(want + dead(local));
    for (let tag = 0; tag < local.length; tag++) {
      const h = local[tag];
      if (!h.block) continue;
      h.block.score(query, h.rows);
      best.take(h.block, h.rows, tag);
      await yieldToOthers();
    }
    take(local, best.result());
    const m = await there;
    if (m) take(away, m);
    return out;
  }

  private requireThread(): ScanThread {
    const t = this.thread;
    if (!t?.alive) throw new ScanThreadLost();
    return t;
  }

  /** Candidates among the given objects only: their rows copied together (here, and on the scan thread for its segments), then scanned. */
  private async scanObjects(objects: ObjectEntry[], dims: number, query: KernelQuery, want: number): Promise<Candidate[]> {
    const out: Candidate[] = [];
    // The scan thread's rows: asked for first, gathered there.
    const ranges: Array<{ seg: number; start: number; count: number }> = [];
    const remote: Array<{ owner: ObjectEntry; seg: Segment; start: number; count: number }> = [];
    for (const o of objects) for (const p of o.parts) if (p.seg.away) remote.push({ owner: o, seg: p.seg, start: p.start, count: p.count });
    for (const r of remote) ranges.push({ seg: r.seg.id, start: r.start, count: r.count });
    const rowsOf = remote.flatMap((r) => Array.from({ length: r.count }, (_, i) => ({ owner: r.owner, chunkIndex: r.seg.chunks[r.start + i] })));
    const there = ranges.length ? this.requireThread().gather(query, want, ranges) : Promise.resolve(undefined);
    there.catch(() => undefined); // awaited below
    // This thread's rows, a segment's worth at a time, in a block no larger than they need.
    let here = 0;
    for (const o of objects) for (const p of o.parts) if (!p.seg.away) here += p.count;
    const batchRows = Math.min(here, Math.max(256, Math.floor(this.segmentBytes / rowBytes(dims))));
    let batch: CodeBlock | undefined;
    let owners: ObjectEntry[] = [];
    let chunks: number[] = [];
    const flush = async () => {
      if (owners.length === 0 || !batch) return;
      const m = batch.scan(query, owners.length, want);
      for (let i = 0; i < m.rows.length; i++) {
        const r = m.rows[i];
        out.push({ owner: owners[r], chunkIndex: chunks[r], score: m.scores[i] });
      }
      owners = [];
      chunks = [];
      await yieldToOthers();
    };
    for (const o of objects) {
      for (const p of o.parts) {
        const from = p.seg.block;
        if (!from) continue;
        for (let r = p.start; r < p.start + p.count; r++) {
          if (owners.length === batchRows) await flush();
          batch ??= new CodeBlock(dims, batchRows);
          batch.copyRow(owners.length, from, r);
          owners.push(o);
          chunks.push(p.seg.chunks[r]);
        }
      }
    }
    await flush();
    const m = await there;
    if (m) for (let i = 0; i < m.rows.length; i++) out.push({ ...rowsOf[m.rows[i]], score: m.scores[i] });
    return out;
  }

  /** One collection's candidates for the query `q`. */
  private async candidates(scope: Scope, pipelineId: string, version: number, q: KernelQuery, want: number, accept?: (key: string) => boolean): Promise<Candidate[]> {
    const dims = q.dims;
    const col = await this.refresh(scope, pipelineId, version);
    const segs = col.groups.get(dims) ?? [];
    if (!accept) return this.scanSegments(segs, q, want, () => true);
    const all = [...col.objects.values()].filter((o) => o.dims === dims);
    const chosen = all.filter((o) => accept(o.key));
    const rows = chosen.reduce((s, o) => s + o.parts.reduce((t, p) => t + p.count, 0), 0);
    // Most objects pass: scan everything, asking for enough to keep `want` after the filter;
    // few pass, or that dropped too many of the best: scan exactly those that pass.
    const found = chosen.length * 2 >= all.length ? await this.scanSegments(segs, q, Math.ceil((want * all.length) / Math.max(1, chosen.length)) * 2, (o) => accept(o.key)) : [];
    return found.length < Math.min(want, rows) ? this.scanObjects(chosen, dims, q, want) : found;
  }

  /**
   * The `k` chunks most similar to `query` (cosine) across the given collections whose
   * chunks have the query's dimension; `accept`, when given, filters objects by key;
   * `versions`, when given, are the collections' versions just read (dimensionsOf). The
   * best `exact` (default all k) are reranked with their real vectors: exact cosines, in
   * exact order, with their places. The rest follow in the codes' order with the codes'
   * cosine and no place: what a ranking that only needs the order (hybrid's) asks for.
   */
  async search(scope: Scope, pipelineIds: string[], query: Float32Array, k: number, accept?: (key: string) => boolean, known?: Map<string, number>, withContent = false, exact = k): Promise<Hit[]> {
    const dims = query.length;
    const q = encodeQuery(query);
    if (k <= 0 || !q) return [];
    const versions = known ?? (await this.store.versions(scope, pipelineIds));
    // Room for the neighbours the 4-bit codes pushed down: four times what is reranked, never fewer than 64.
    const pool = Math.max(4 * Math.min(exact, k), 64);
    const want = Math.max(k, pool);
    const candidates: Array<Candidate & { pipelineId: string }> = [];
    for (const pipelineId of pipelineIds) {
      let found: Candidate[];
      try {
        found = await this.candidates(scope, pipelineId, versions.get(pipelineId) ?? 0, q, want, accept);
      } catch (err) {
        // The scan thread went away mid-search: the collection is rebuilt here, once.
        if (!(err instanceof ScanThreadLost)) throw err;
        found = await this.candidates(scope, pipelineId, versions.get(pipelineId) ?? 0, q, want, accept);
      }
      for (const c of found) candidates.push({ ...c, pipelineId });
    }
    candidates.sort((a, b) => b.score - a.score);
    const ref = (c: (typeof candidates)[number]) => ({ pipelineId: c.pipelineId, key: c.owner.key, chunkIndex: c.chunkIndex });
    const top = candidates.slice(0, pool).map(ref);
    // The exact cosine of each candidate, from its real vector.
    const rows = await this.store.embeddings(scope, top, withContent);
    const hits: Hit[] = [];
    for (const r of top) {
      const row = rows.get(chunkRefKey(r.pipelineId, r.key, r.chunkIndex));
      // A chunk replaced since the refresh is gone from the table: the next search reloads its object.
      if (row && row.vector.length === dims) hits.push({ ...r, score: cosine(row.vector, query), place: row.place });
    }
    hits.sort((a, b) => b.score - a.score || (a.key < b.key ? -1 : a.key > b.key ? 1 : a.chunkIndex - b.chunkIndex));
    const exactHits = hits.slice(0, Math.min(exact, k));
    const rest = [...hits.slice(exactHits.length), ...candidates.slice(pool).map((c) => ({ ...ref(c), score: c.score / q.norm }))];
    return [...exactHits, ...rest.slice(0, k - exactHits.length)];
  }
}
