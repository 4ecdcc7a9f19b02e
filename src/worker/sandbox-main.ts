/**
 * Entry of the sandbox process (see sandbox.ts). Reads its request `{task, params, size}`
 * as JSON from stdin and the object from fd 3 (the descriptor the server opened and
 * checked), runs the task and answers on stdout: a 4-byte length, the JSON result, then
 * the raw vector bytes if any.
 */
import { readSync } from "node:fs";
import { PermanentError } from "./failures";
import { rowsTask, textTask, type RowsTaskParams, type TextTaskParams } from "./tasks";

async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of process.stdin) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

function reply(header: object, tail?: Uint8Array): Promise<void> {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return new Promise((resolve) => process.stdout.write(Buffer.concat([len, json, ...(tail ? [tail] : [])]), () => resolve()));
}

function readObject(size: number): Buffer {
  const data = Buffer.allocUnsafe(size);
  let at = 0;
  while (at < size) {
    const n = readSync(3, data, at, Math.min(size - at, 1 << 20), at);
    if (n === 0) break;
    at += n;
  }
  return data.subarray(0, at);
}

async function main(): Promise<void> {
  const { task, params, size } = JSON.parse((await readStdin()).toString("utf8")) as { task: string; params: unknown; size: number };
  try {
    const data = readObject(size);
    if (task === "text") {
      const r = await textTask(data, params as TextTaskParams);
      const v = r.vectors;
      await reply({ ok: true, pieces: r.pieces, places: r.places, vectorCount: v ? v.length : -1 }, v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : undefined);
    } else {
      // Rows are JSON texts, which never hold a raw line break: one per line.
      const { rows } = rowsTask(data, params as RowsTaskParams);
      await reply({ ok: true, rowCount: rows.length }, Buffer.from(rows.join("\n"), "utf8"));
    }
  } catch (err) {
    const e = err as Error;
    const outOfMemory = e instanceof RangeError && /allocation failed|Invalid string length|Invalid array length/.test(e.message);
    await reply({
      ok: false,
      permanent: err instanceof PermanentError || outOfMemory,
      stage: err instanceof PermanentError ? err.stage : "parse",
      outOfMemory,
      message: String(e?.message ?? err),
    });
  }
  process.exit(0);
}

void main();
