/**
 * `COPY (…) TO STDOUT (FORMAT binary)` on a pool client, its rows handed over as their
 * fields' raw bytes. For bulk reads of vectors: through the text protocol a bytea travels
 * as hex, two bytes per byte, and is decoded twice (UTF-8, then hex); here the same bytes
 * travel once, as they are.
 *
 * The binary format: an 11-byte signature, a flags word and a header extension, then per
 * row a 16-bit field count and per field a 32-bit length (-1 for NULL) and its bytes;
 * a field count of -1 ends the stream.
 */
import type { PoolClient } from "pg";

const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");

/** One row's fields: views into the stream's buffer, valid only during the call. */
export type CopyRow = Array<Buffer | null>;

/** What pg's client calls on the query it runs (a "submittable"); only these messages come for a COPY TO. */
class BinaryCopyOut {
  private pending: Buffer = Buffer.alloc(0);
  private started = false;
  private ended = false;
  private error: Error | undefined;
  private rows = 0;
  private finished = false;

  constructor(
    private readonly text: string,
    private readonly onRow: (row: CopyRow) => void,
    private readonly done: (err: Error | undefined, rows: number) => void,
  ) {}

  submit(connection: { query(text: string): void }): void {
    connection.query(this.text);
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    if (this.error) return;
    try {
      this.pending = this.pending.length ? Buffer.concat([this.pending, msg.chunk]) : msg.chunk;
      this.pending = this.pending.subarray(this.parse(this.pending));
    } catch (err) {
      this.error = err as Error;
    }
  }

  /** Consumes the whole rows at the start of `b`; returns the bytes consumed. */
  private parse(b: Buffer): number {
    let at = 0;
    if (!this.started) {
      if (b.length < SIGNATURE.length + 8) return 0;
      if (!b.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw new Error("COPY answered without the binary signature");
      at = SIGNATURE.length + 8 + b.readInt32BE(SIGNATURE.length + 4);
      this.started = true;
    }
    while (at + 2 <= b.length && !this.ended) {
      const n = b.readInt16BE(at);
      if (n === -1) {
        this.ended = true;
        return b.length;
      }
      // The row is parsed only once all of it is here.
      let p = at + 2;
      const row: CopyRow = new Array(n);
      for (let i = 0; i < n; i++) {
        if (p + 4 > b.length) return at;
        const len = b.readInt32BE(p);
        p += 4;
        if (len < 0) {
          row[i] = null;
          continue;
        }
        if (p + len > b.length) return at;
        row[i] = b.subarray(p, p + len);
        p += len;
      }
      this.onRow(row);
      this.rows++;
      at = p;
    }
    return at;
  }

  /** An error from the server or the connection: the client calls nothing else on this query after it. */
  handleError(err: Error): void {
    this.finish(err);
  }

  handleReadyForQuery(): void {
    if (!this.error && (!this.ended || this.pending.length > 0)) this.error = new Error("the COPY stream ended early");
    this.finish(this.error);
  }

  private finish(err: Error | undefined): void {
    if (this.finished) return;
    this.finished = true;
    this.done(err, this.rows);
  }

  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handlePortalSuspended(): void {}

  /** Not a COPY TO after all: refuse to send anything. */
  handleCopyInResponse(connection: { sendCopyFail(msg: string): void }): void {
    connection.sendCopyFail("this statement was expected to be a COPY TO STDOUT");
  }
}

/**
 * Runs `COPY (select) TO STDOUT (FORMAT binary)` on `client` and calls `onRow` for each
 * row; resolves with the number of rows. COPY takes no parameters: the statement's values
 * must already be literals (`client.escapeLiteral`).
 */
export function copyOutBinary(client: PoolClient, select: string, onRow: (row: CopyRow) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const q = new BinaryCopyOut(`COPY (${select}) TO STDOUT (FORMAT binary)`, onRow, (err, rows) => (err ? reject(err) : resolve(rows)));
    (client as unknown as { query(q: BinaryCopyOut): void }).query(q);
  });
}
