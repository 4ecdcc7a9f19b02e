/**
 * A worker thread that holds some segments of vector codes and scans them when asked, so a
 * search scans half its codes here and half there at the same time. Node 20's N-API refuses
 * typed arrays over shared memory, so codes are not shared: a full segment is handed over
 * (a copy; the caller drops its own), and what changes it afterwards (a compaction, a drop)
 * is sent as a message. One thread's messages are handled in order, so a scan sent after a
 * compaction sees it. When the thread cannot start or stops, `onLost` is called and every
 * later call fails: the caller then keeps everything on its own thread.
 */
import { Worker } from "node:worker_threads";
import { exactSearch, MetricKind } from "usearch";

/** The best rows of one scan: row numbers and cosine distances, best first. */
export interface ScanResult {
  rows: BigUint64Array;
  distances: Float32Array;
}

/** The `want` best of the first `rows` rows of `codes` for `query`. */
export function scanCodes(codes: Int8Array, rows: number, query: Int8Array, want: number): ScanResult {
  const dims = query.length;
  const m = exactSearch(codes.subarray(0, rows * dims), query, dims, Math.min(want, rows), MetricKind.Cos, 1);
  return { rows: m.keys, distances: m.distances };
}

// Plain JavaScript for the thread (no TypeScript loader there); its messages:
//   adopt {seg, codes} · compact {seg, keep, dims} · drop {seg}
//   scan {id, query, parts: [{seg, rows, want}]} → {id, results}
//   gather {id, query, want, ranges: [{seg, start, count}]} → {id, results: [one]}
const SOURCE = `
const { parentPort } = require("node:worker_threads");
const { exactSearch, MetricKind } = require(${JSON.stringify(require.resolve("usearch"))});
const segs = new Map();
const best = (codes, rows, query, want) => {
  const m = exactSearch(codes.subarray(0, rows * query.length), query, query.length, Math.min(want, rows), MetricKind.Cos, 1);
  return { rows: m.keys, distances: m.distances };
};
parentPort.on("message", (m) => {
  try {
    if (m.op === "adopt") segs.set(m.seg, m.codes);
    else if (m.op === "drop") segs.delete(m.seg);
    else if (m.op === "compact") {
      const old = segs.get(m.seg);
      const out = new Int8Array(old.length);
      for (let w = 0; w < m.keep.length; w++) out.set(old.subarray(m.keep[w] * m.dims, (m.keep[w] + 1) * m.dims), w * m.dims);
      segs.set(m.seg, out);
    } else if (m.op === "scan") {
      parentPort.postMessage({ id: m.id, results: m.parts.map((p) => best(segs.get(p.seg), p.rows, m.query, p.want)) });
    } else if (m.op === "gather") {
      const dims = m.query.length;
      const total = m.ranges.reduce((s, r) => s + r.count, 0);
      const codes = new Int8Array(total * dims);
      let at = 0;
      for (const r of m.ranges) {
        codes.set(segs.get(r.seg).subarray(r.start * dims, (r.start + r.count) * dims), at * dims);
        at += r.count;
      }
      parentPort.postMessage({ id: m.id, results: total ? [best(codes, total, m.query, m.want)] : [] });
    }
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String((err && err.message) || err) });
  }
});
`;

export class ScanThread {
  private readonly worker: Worker;
  private lost = false;
  private next = 0;
  private readonly pending = new Map<number, { resolve(r: ScanResult[]): void; reject(e: Error): void }>();

  constructor(onLost: (why: string) => void) {
    this.worker = new Worker(SOURCE, { eval: true });
    this.worker.unref();
    this.worker.on("message", (m: { id: number; results?: ScanResult[]; error?: string }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.results) p?.resolve(m.results);
      else p?.reject(new Error(m.error ?? "the scan thread answered nothing"));
    });
    const fail = (why: string) => {
      if (this.lost) return;
      this.lost = true;
      for (const p of this.pending.values()) p.reject(new Error(why));
      this.pending.clear();
      onLost(why);
    };
    this.worker.on("error", (err) => fail(`the scan thread failed: ${err.message}`));
    this.worker.on("exit", (code) => fail(`the scan thread exited (${code})`));

  }

  /** Stops the thread (what it holds is gone; nothing is lost: PostgreSQL has it all). */
  async close(): Promise<void> {
    this.lost = true;
    await this.worker.terminate();
  }

  get alive(): boolean {
    return !this.lost;
  }

  /** Hands a full segment's codes over (a copy: the caller's stay usable by scans in flight). */
  adopt(seg: number, codes: Int8Array): void {
    const copy = codes.slice();
    this.worker.postMessage({ op: "adopt", seg, codes: copy }, [copy.buffer]);
  }

  /** Keeps rows `keep` (old row numbers, in their new order) of a held segment. */
  compact(seg: number, keep: Int32Array, dims: number): void {
    this.worker.postMessage({ op: "compact", seg, keep, dims });
  }

  drop(seg: number): void {
    if (!this.lost) this.worker.postMessage({ op: "drop", seg });
  }

  private ask(message: object): Promise<ScanResult[]> {
    if (this.lost) return Promise.reject(new Error("the scan thread is gone"));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id });
    });
  }

  /** The best rows of each held segment (its first `rows` rows). */
  scan(query: Int8Array, parts: Array<{ seg: number; rows: number; want: number }>): Promise<ScanResult[]> {
    return this.ask({ op: "scan", query, parts });
  }

  /** The best of some rows of held segments, as if those rows were one block in the given order. */
  async gather(query: Int8Array, want: number, ranges: Array<{ seg: number; start: number; count: number }>): Promise<ScanResult | undefined> {
    return (await this.ask({ op: "gather", query, want, ranges }))[0];
  }
}
