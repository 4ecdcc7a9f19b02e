/**
 * Text that is not plain UTF-8, uploaded as K3's clients upload (a PUT with a bearer token):
 * UTF-16 with its byte-order mark (as Windows tools save "Unicode" text) is indexed as its
 * text; a log padded with a few NULs is indexed without them; bytes that are mostly NUL
 * fail at once, saying the object is not text. JSON that spells a NUL or half a surrogate
 * pair as an escape is indexed, and stored as rows, with U+FFFD in its place: PostgreSQL's
 * text and jsonb take neither, and each attempt of those jobs failed in the database until
 * the attempts ran out ("stage: unknown; unexpected error"). A pipeline's encoding option
 * reads text in another encoding (a Windows-1252 CSV, Shift_JIS text).
 */
import { Client } from "pg";
import { describeFailure } from "../src/worker/failures";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

jest.setTimeout(90_000);

let s: TestServers;
const B = "kb-encodings";
const http = jsonClient(() => s.httpUrl);

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_POLL_MS: "50", K3_MAX_ATTEMPTS: "3" });
  expect((await http("POST", "/admin/buckets", { name: B })).status).toBe(200);
  const docs = (await http("POST", `/${B}/pipelines`, { name: "docs", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
  const rows = (await http("POST", `/${B}/pipelines`, { name: "rows", scriptum_template: "structured_rows" })).json.pipeline.pipelineId;
  expect((await http("POST", `/${B}/rules`, { name: "docs", pipeline_id: docs, include_patterns: ["docs/**"] })).status).toBe(200);
  expect((await http("POST", `/${B}/rules`, { name: "rows", pipeline_id: rows, include_patterns: ["rows/**"] })).status).toBe(200);
});
afterAll(() => s.stop());

/** Uploads bytes with a PUT and waits for the job its rule made to end. */
async function upload(key: string, bytes: Buffer): Promise<J> {
  const res = await fetch(`${s.httpUrl}/${B}/${key}`, { method: "PUT", body: bytes });
  expect(res.status).toBe(200);
  return waitFor(`the job of ${key}`, async () => {
    const j = ((await http("GET", `/${B}/ingest/jobs?key_prefix=${encodeURIComponent(key)}`)).json.jobs as J[]).find((x) => x.object.key === key);
    return j && ["INGEST_STATUS_COMPLETED", "INGEST_STATUS_FAILED"].includes(j.status) ? j : undefined;
  }, { timeoutMs: 30_000, intervalMs: 100 });
}

async function contentOf(key: string): Promise<string[]> {
  const hits = (await http("POST", `/${B}/vector/search`, { text: "winter penguins", include_content: true, top_k: 50 })).json.results as J[];
  return hits.filter((h) => h.object.key === key).map((h) => h.content);
}

function utf16be(text: string): Buffer {
  const le = Buffer.from(text, "utf16le");
  for (let i = 0; i + 1 < le.length; i += 2) [le[i], le[i + 1]] = [le[i + 1], le[i]];
  return Buffer.concat([Buffer.from([0xfe, 0xff]), le]);
}

test("UTF-16 with its byte-order mark is indexed as its text, little- and big-endian", async () => {
  const text = "Die Pinguine wandern im Winter über das Eis — penguins in winter";
  expect(await upload("docs/windows.txt", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]))).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 });
  expect(await upload("docs/windows-be.txt", utf16be(text))).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 });
  expect(await contentOf("docs/windows.txt")).toEqual([text]);
  expect(await contentOf("docs/windows-be.txt")).toEqual([text]);
  // A mark followed by bytes that are not UTF-16 (half a surrogate pair) fails at once, naming the encoding.
  const broken = await upload("docs/broken-16.txt", Buffer.from([0xff, 0xfe, 0x41, 0x00, 0x00, 0xd8, 0x42, 0x00]));
  expect(broken).toMatchObject({ status: "INGEST_STATUS_FAILED", attempts: 1, permanentFailure: true });
  expect(broken.error).toMatch(/starts with a UTF-16 byte-order mark but is not valid UTF-16LE text/);
});

test("text in another encoding fails at once, naming the first byte that is not UTF-8 and how to convert it", async () => {
  // An Excel export in Windows-1252, after a U+FFFD the file spells itself.
  const csv = Buffer.concat([Buffer.from("name,note\n\uFFFD,ok\nCaf"), Buffer.from([0xe9]), Buffer.from(",latin\n")]);
  const job = await upload("rows/excel.csv", csv);
  expect(job).toMatchObject({ status: "INGEST_STATUS_FAILED", attempts: 1, permanentFailure: true, errorDetails: "stage: read" });
  expect(job.error).toBe(
    'object "rows/excel.csv" is not valid UTF-8 text: byte 20 (0xE9) starts no UTF-8 character there; text is read as UTF-8, or as UTF-16 after its byte-order mark: name its encoding in the pipeline\'s encoding option (windows-1252, for a Latin-1 export), or convert it first (iconv -f WINDOWS-1252 -t UTF-8)',
  );
});

test("a pipeline's encoding option reads text in the encoding it names: a Windows-1252 CSV as rows, Shift_JIS text as chunks", async () => {
  const made = async (name: string, template: string, encoding: string) => {
    const p = (await http("POST", `/${B}/pipelines`, { name, scriptum_template: template, options: { encoding } })).json.pipeline.pipelineId;
    expect((await http("POST", `/${B}/rules`, { name, pipeline_id: p, include_patterns: [`${name}/**`] })).status).toBe(200);
  };
  await made("latin-rows", "structured_rows", "windows-1252");
  await made("sjis-docs", "text_embedding_index", "shift_jis");
  // Excel on Windows saves "CSV (Comma delimited)" in Windows-1252: é is 0xE9, € 0x80, “ 0x93
  // (Node 20's own TextDecoder reads those last two as control characters).
  const cp1252 = Buffer.from([...Buffer.from("name;price\n"), 0x93, ...Buffer.from("Caf"), 0xe9, ...Buffer.from(" cr"), 0xe8, ...Buffer.from("me"), 0x94, ...Buffer.from(";3 "), 0x80, 0x0a]);
  expect(await upload("latin-rows/export.csv", cp1252)).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 1 });
  const db = new Client({ connectionString: s.db.url });
  await db.connect();
  try {
    const { rows } = await db.query("SELECT data FROM warehouse_rows WHERE bucket = $1 AND object_key = 'latin-rows/export.csv'", [B]);
    expect(rows.map((r) => r.data)).toEqual([{ name: "“Café crème”", price: "3 €" }]);
  } finally {
    await db.end();
  }
  // "Penguins walk on the ice in winter" in Shift_JIS (as iconv writes it), and the same bytes cut inside a character.
  const text = "ペンギンは冬に氷の上を歩く winter penguins";
  const sjis = Buffer.from([0x83, 0x79, 0x83, 0x93, 0x83, 0x4d, 0x83, 0x93, 0x82, 0xcd, 0x93, 0x7e, 0x82, 0xc9, 0x95, 0x58, 0x82, 0xcc, 0x8f, 0xe3, 0x82, 0xf0, 0x95, 0xe0, 0x82, 0xad, ...Buffer.from(" winter penguins")]);
  expect(await upload("sjis-docs/note.txt", sjis)).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 });
  expect(await contentOf("sjis-docs/note.txt")).toEqual([text]);
  const cut = await upload("sjis-docs/cut.txt", Buffer.concat([sjis.subarray(0, 4), Buffer.from([0x83, 0x0a])]));
  expect(cut).toMatchObject({ status: "INGEST_STATUS_FAILED", attempts: 1, permanentFailure: true, error: `object "sjis-docs/cut.txt" is not valid shift_jis text (the pipeline's encoding option)` });
  // A label no decoder knows is refused when the pipeline is made, naming the option and what it takes.
  const bad = await http("POST", `/${B}/pipelines`, { name: "bad-encoding", scriptum_template: "structured_rows", options: { encoding: "latin-9000" } });
  expect(bad.status).toBe(400);
  expect(bad.json.message).toMatch(/^options\["encoding"\] = "latin-9000" names no text encoding; pass auto .* windows-1252/);
  expect((await http("POST", `/${B}/pipelines`, { name: "replacement", scriptum_template: "text_embedding_index", options: { encoding: "iso-2022-kr" } })).status).toBe(400);
});

test("a few NULs, as a log's padding, are dropped; bytes that are mostly NUL fail at once as not text", async () => {
  const padded = await upload("docs/padded.txt", Buffer.concat([Buffer.from("penguins keep warm in winter by huddling together\n"), Buffer.alloc(4)]));
  expect(padded).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 });
  expect(await contentOf("docs/padded.txt")).toEqual(["penguins keep warm in winter by huddling together"]);

  // UTF-16 without its mark reads as UTF-8 with a NUL after every letter.
  const unmarked = await upload("docs/unmarked.txt", Buffer.from("penguins in winter", "utf16le"));
  expect(unmarked).toMatchObject({ status: "INGEST_STATUS_FAILED", attempts: 1, permanentFailure: true, chunksCreated: 0 });
  expect(unmarked.error).toBe(
    'object "docs/unmarked.txt" is not text: 18 of its 36 characters are NUL (U+0000); it may be binary, or UTF-16 without a byte-order mark (text is read as UTF-8, or UTF-16 after its mark)',
  );
});

test("JSON escapes of NUL and of half a surrogate pair are indexed and stored as U+FFFD", async () => {
  const doc = '{"title": "penguins in winter", "note": "a\\u0000b", "odd": "x\\ud800y", "pair": "\\ud83d\\udc27"}';
  expect(await upload("docs/escapes.json", Buffer.from(doc))).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 });
  expect(await contentOf("docs/escapes.json")).toEqual(["title: penguins in winter\nnote: a\uFFFDb\nodd: x\uFFFDy\npair: \u{1F427}"]);

  const rows = '[{"a": "x\\ud800y", "\\udc00k": 1, "slash": "\\\\u0000 stays text"}, {"b": "\\ud83d\\ude00 ok", "c": "n\\u0000"}]';
  expect(await upload("rows/escapes.json", Buffer.from(rows))).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 2 });
  expect(await upload("rows/nul.csv", Buffer.from("name,note\npenguin,x\u0000y\nalbatross,wide wings over the southern ocean\n"))).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 2 });
  const db = new Client({ connectionString: s.db.url });
  await db.connect();
  try {
    const stored = await db.query("SELECT object_key, data FROM warehouse_rows WHERE bucket = $1 AND object_key LIKE 'rows/%' ORDER BY object_key, row_index", [B]);
    expect(stored.rows.map((r) => [r.object_key, r.data])).toEqual([
      ["rows/escapes.json", { a: "x\uFFFDy", "\uFFFDk": 1, slash: "\\u0000 stays text" }],
      ["rows/escapes.json", { b: "\u{1F600} ok", c: "n\uFFFD" }],
      ["rows/nul.csv", { name: "penguin", note: "xy" }],
      ["rows/nul.csv", { name: "albatross", note: "wide wings over the southern ocean" }],
    ]);
  } finally {
    await db.end();
  }
});

test("a heading cut at 200 units is cut before a character outside the BMP, not through it", async () => {
  const title = "a".repeat(199) + "\u{1F427} penguins";
  expect(await upload("docs/long-heading.md", Buffer.from(`# ${title}\n\npenguins in winter\n`))).toMatchObject({ status: "INGEST_STATUS_COMPLETED" });
  const hits = (await http("POST", `/${B}/vector/search`, { text: "winter penguins", top_k: 50 })).json.results as J[];
  expect(hits.filter((h) => h.object.key === "docs/long-heading.md").map((h) => h.heading)).toEqual(["a".repeat(199)]);
});

test("PostgreSQL's refusal of a value fails a job at once: another attempt would be refused the same", async () => {
  const db = new Client({ connectionString: s.db.url });
  await db.connect();
  try {
    const refused = await db.query(`SELECT '"\\u0000"'::jsonb`).catch((err: unknown) => err);
    expect(describeFailure(refused)).toEqual({ permanent: true, error: "the database refused the job's output: unsupported Unicode escape sequence", errorDetails: "stage: store; SQLSTATE 22P05" });
    // A connection's loss is not the value's fault.
    expect(describeFailure(Object.assign(new Error("Connection terminated unexpectedly"), { code: undefined })).permanent).toBe(false);
  } finally {
    await db.end();
  }
});
