/**
 * Entry of the sandbox process (see sandbox.ts). Reads one request from stdin — a 4-byte
 * length, the JSON header `{task, params}`, then the object's bytes — runs the task and
 * answers on stdout: a 4-byte length, the JSON result, then the raw vector bytes if any.
 */
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

async function main(): Promise<void> {
  const input = await readStdin();
  const headerLen = input.readUInt32BE(0);
  const { task, params } = JSON.parse(input.subarray(4, 4 + headerLen).toString("utf8")) as { task: string; params: unknown };
  const data = input.subarray(4 + headerLen);
  try {
    if (task === "text") {
      const r = await textTask(data, params as TextTaskParams);
      const v = r.vectors;
      await reply({ ok: true, pieces: r.pieces, vectorCount: v ? v.length : -1 }, v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : undefined);
    } else {
      await reply({ ok: true, ...rowsTask(data, params as RowsTaskParams) });
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
