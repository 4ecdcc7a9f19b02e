/**
 * A worker thread that holds some segments of vector codes and scans them when asked, so a
 * search scans half its codes here and half there at the same time. Codes are not shared: a
 * full segment is handed over (a copy; the caller drops its own), and what changes it
 * afterwards (a compaction, a drop) is sent as a message. One thread's messages are
 * handled in order, so a scan sent after a compaction sees it. When the thread cannot start
 * or stops, `onLost` is called and every later call fails: the caller then keeps everything
 * on its own thread.
 */
import { Worker } from "node:worker_threads";
import { join } from "node:path";
import type { ExportedRows, KernelQuery, ScanResult, TaggedResult } from "./scan-kernel.cjs";

// Plain JavaScript for the thread (no TypeScript loader there); its messages:
//   adopt {seg, rows: ExportedRows} · compact {seg, keep} · drop {seg}
//   scan {id, query, want, parts: [{seg, rows}]} → {id, results: [the best of all parts, tagged by part]}
//   gather {id, query, want, ranges: [{seg, start, count}]} → {id, results: [one]}
const SOURCE = `
const { parentPort } = require("node:worker_threads");
const { Best, CodeBlock } = require(${JSON.stringify(join(__dirname, "scan-kernel.cjs"))});
const segs = new Map();
parentPort.on("message", (m) => {
  try {
    if (m.op === "adopt") segs.set(m.seg, CodeBlock.from(m.rows));
    else if (m.op === "drop") segs.delete(m.seg);
    else if (m.op === "compact") segs.set(m.seg, segs.get(m.seg).picked(m.keep));
    else if (m.op === "scan") {
      const best = new Best(m.want);
      m.parts.forEach((p, tag) => {
        const block = segs.get(p.seg);
        block.score(m.query, p.rows);
        best.take(block, p.rows, tag);
      });
      parentPort.postMessage({ id: m.id, results: [best.result()] });
    } else if (m.op === "gather") {
      const total = m.ranges.reduce((s, r) => s + r.count, 0);
      if (total === 0) return parentPort.postMessage({ id: m.id, results: [] });
      const block = new CodeBlock(m.query.dims, total);
      let at = 0;
      for (const r of m.ranges) {
        const from = segs.get(r.seg);
        for (let i = 0; i < r.count; i++) block.copyRow(at++, from, r.start + i);
      }
      parentPort.postMessage({ id: m.id, results: [block.scan(m.query, total, m.want)] });
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
  private readonly pending = new Map<number, { resolve(r: TaggedResult[]): void; reject(e: Error): void }>();

  constructor(onLost: (why: string) => void) {
    this.worker = new Worker(SOURCE, { eval: true });
    this.worker.unref();
    this.worker.on("message", (m: { id: number; results?: TaggedResult[]; error?: string }) => {
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

  /** Hands a full segment's codes over (copies: the caller's stay usable by scans in flight). */
  adopt(seg: number, rows: ExportedRows): void {
    this.worker.postMessage({ op: "adopt", seg, rows }, [rows.codes.buffer, rows.inv.buffer]);
  }

  /** Keeps rows `keep` (old row numbers, in their new order) of a held segment. */
  compact(seg: number, keep: Int32Array): void {
    this.worker.postMessage({ op: "compact", seg, keep });
  }

  drop(seg: number): void {
    if (!this.lost) this.worker.postMessage({ op: "drop", seg });
  }

  private ask(message: object): Promise<TaggedResult[]> {
    if (this.lost) return Promise.reject(new Error("the scan thread is gone"));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id });
    });
  }

  /** The `want` best rows of held segments (the first `rows` rows of each), tagged by their place in `parts`. */
  async scan(query: KernelQuery, want: number, parts: Array<{ seg: number; rows: number }>): Promise<TaggedResult> {
    return (await this.ask({ op: "scan", query, want, parts }))[0];
  }

  /** The best of some rows of held segments, as if those rows were one block in the given order. */
  async gather(query: KernelQuery, want: number, ranges: Array<{ seg: number; start: number; count: number }>): Promise<ScanResult | undefined> {
    return (await this.ask({ op: "gather", query, want, ranges }))[0];
  }
}
