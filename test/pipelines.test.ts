/**
 * The built-in pipelines, end to end: a fixture of each supported type is triggered
 * through the API, the in-process worker runs it, and the test checks the counters it
 * can work out by hand and the rows at the destination.
 */
import type { Pool } from "pg";
import { vectorOf } from "../src/storage/postgres/vector-bytes";
import { makePdf } from "./helpers/fixtures";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";


let s: TestServers;
let pool: Pool;
const B = "kb-pipes";
let embed: string;
let rows: string;

const http = jsonClient(() => s.httpUrl);

const TERMINAL = ["INGEST_STATUS_COMPLETED", "INGEST_STATUS_FAILED", "INGEST_STATUS_PARTIAL", "INGEST_STATUS_CANCELLED"];

/** Triggers an ingest and waits until the job is terminal. */
async function ingest(key: string, pipelineId: string, options: Record<string, string> = {}): Promise<J> {
  const t = await http("POST", `/${B}/ingest`, { object: { key }, pipelineId, options });
  expect(t.status).toBe(200);
  return waitFor(`job for ${key} to finish`, async () => {
    const g = await http("GET", `/${B}/ingest/jobs/${t.json.job.jobId}`);
    return TERMINAL.includes(g.json.job.status) ? g.json.job : undefined;
  });
}

async function chunksOf(key: string, pipelineId = embed) {
  const { rows: r } = await pool.query(
    "SELECT chunk_index, content, embedding, job_id FROM vector_chunks WHERE bucket = $1 AND pipeline_id = $2 AND object_key = $3 ORDER BY chunk_index",
    [B, pipelineId, key],
  );
  return r.map((c) => ({ ...c, embedding: Array.from(vectorOf(c.embedding)) })) as Array<{ chunk_index: number; content: string; embedding: number[]; job_id: string }>;
}

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_POLL_MS: "200" });
  pool = s.app.repo().pool;
  embed = (await http("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index", options: { dimensions: "16" } }))
    .json.pipeline.pipelineId;
  rows = (await http("POST", `/${B}/pipelines`, { name: "rows", scriptum_template: "structured_rows", options: { batch_size: "2" } })).json
    .pipeline.pipelineId;
});
afterAll(() => s.stop());

test("a .txt of one 2,500-character word: 3 chunks in 2 batches, vectors of the asked dimension", async () => {
  // A word longer than a chunk is the one thing cut mid-word; no overlap, as the overlap
  // would have to start inside it.
  const text = "abcdefghij".repeat(250);
  s.putObject(B, "docs/long.txt", text);
  const job = await ingest("docs/long.txt", embed, { batch_size: "2" });
  expect(job).toMatchObject({
    status: "INGEST_STATUS_COMPLETED",
    pipelineKind: "vector",
    chunksCreated: 3,
    embeddingsCreated: 3,
    embeddingsWritten: 3,
    batchesReceived: 2,
    rowsWritten: 0,
    // 1000 + 1000 + 500 characters, plus 3 vectors of 16 four-byte components.
    outputSize: 2500 + 3 * 16 * 4,
    vectorStatus: "success",
    error: "",
    attempts: 1,
  });
  expect(job.threadId).toMatch(/^thread_[0-9a-f]{32}$/);
  expect(Number(job.startedAt)).toBeGreaterThanOrEqual(Number(job.createdAt));
  expect(Number(job.finishedAt)).toBeGreaterThanOrEqual(Number(job.startedAt));
  expect(job.updatedAt).toBe(job.finishedAt);
  const chunks = await chunksOf("docs/long.txt");
  expect(chunks.map((c) => c.content)).toEqual([text.slice(0, 1000), text.slice(1000, 2000), text.slice(2000)]);
  for (const c of chunks) {
    expect(c.embedding).toHaveLength(16);
    expect(Math.hypot(...c.embedding)).toBeCloseTo(1, 5);
    expect(c.job_id).toBe(job.jobId);
  }
});

test.each<[string, string | Buffer, string[]]>([
  ["docs/readme.md", "# Title\r\n\r\nSome *markdown* text.\n", ["# Title\n\nSome *markdown* text."]],
  [
    "docs/page.html",
    "<html><head><title>T</title><style>p{color:red}</style></head><body><h1>Title</h1><p>Fish &amp; chips &#x2014; &lt;b&gt;</p><script>alert(1)</script></body></html>",
    ["Title\nFish & chips \u2014 <b>"],
  ],
  ["docs/meta.json", JSON.stringify({ title: "Doc", tags: ["a", "b"], n: 1, nested: { ok: true } }), ["title: Doc\ntags[0]: a\ntags[1]: b\nn: 1\nnested.ok: true"]],
  ["docs/table.csv", "name,qty\nbolt,3\n", ["name,qty\nbolt,3"]],
  ["docs/report.pdf", makePdf([["Quarterly report", "Revenue grew (a lot)"], ["Second page"]]), ["Quarterly report\nRevenue grew (a lot)\n\nSecond page"]],
])("%s is extracted to the expected text", async (key, content, expected) => {
  s.putObject(B, key, content);
  const job = await ingest(key, embed);
  expect(job).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: expected.length, embeddingsWritten: expected.length, batchesReceived: 1 });
  expect((await chunksOf(key)).map((c) => c.content)).toEqual(expected);
});

test("structured_rows: CSV with quoting, JSON Lines and a JSON array become rows in batches", async () => {
  s.putObject(B, "data/items.csv", 'id,name,note\r\n1,bolt,"M6, zinc"\r\n2,nut,"says ""hi"""\r\n3,washer,\r\n');
  const csv = await ingest("data/items.csv", rows);
  const expectedRows = [
    { id: "1", name: "bolt", note: "M6, zinc" },
    { id: "2", name: "nut", note: 'says "hi"' },
    { id: "3", name: "washer", note: "" },
  ];
  expect(csv).toMatchObject({
    status: "INGEST_STATUS_COMPLETED",
    pipelineKind: "warehouse",
    rowsWritten: 3,
    batchesReceived: 2,
    outputSize: expectedRows.reduce((n, r) => n + Buffer.byteLength(JSON.stringify(r)), 0),
    vectorStatus: "",
    chunksCreated: 0,
  });
  const stored = await pool.query("SELECT row_index, data FROM warehouse_rows WHERE object_key = 'data/items.csv' ORDER BY row_index");
  expect(stored.rows.map((r) => r.data)).toEqual(expectedRows);

  s.putObject(B, "data/events.jsonl", '{"a":1}\n\n{"a":2,"b":[1]}\n');
  expect(await ingest("data/events.jsonl", rows)).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 2, batchesReceived: 1 });
  s.putObject(B, "data/list.json", '[{"x":1},{"x":2},{"x":3},{"x":4},{"x":5}]');
  expect(await ingest("data/list.json", rows)).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 5, batchesReceived: 3 });
});

test("structured_rows: the separator of a CSV is found from its header (semicolons of a European Excel export, a .tsv's tabs), or named by the delimiter option", async () => {
  const stored = async (key: string) => (await pool.query("SELECT data FROM warehouse_rows WHERE object_key = $1 ORDER BY row_index", [key])).rows.map((r) => r.data);
  s.putObject(B, "data/eu.csv", 'name;price;note\r\nbolt;1,50;"M6; zinc"\r\nnut;0,20;\r\n');
  expect(await ingest("data/eu.csv", rows)).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 2 });
  expect(await stored("data/eu.csv")).toEqual([{ name: "bolt", price: "1,50", note: "M6; zinc" }, { name: "nut", price: "0,20", note: "" }]);
  s.putObject(B, "data/sheet.tsv", "id\tname, title\n1\tAda, Countess\n");
  expect(await ingest("data/sheet.tsv", rows)).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 1 });
  expect(await stored("data/sheet.tsv")).toEqual([{ id: "1", "name, title": "Ada, Countess" }]);
  // Pipes are found too; the option names the separator when a header would mislead.
  s.putObject(B, "data/piped.csv", "a|b\n1|2\n");
  expect(await ingest("data/piped.csv", rows, { delimiter: "comma" })).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 1 });
  expect(await stored("data/piped.csv")).toEqual([{ "a|b": "1|2" }]);
  expect(await ingest("data/piped.csv", rows)).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 1 });
  expect(await stored("data/piped.csv")).toEqual([{ a: "1", b: "2" }]);
  const bad = await http("POST", `/${B}/ingest`, { object: { key: "data/piped.csv" }, pipelineId: rows, options: { delimiter: ";" } });
  expect([bad.status, bad.json.message]).toEqual([400, 'options["delimiter"] = ";" must be one of auto, comma, semicolon, tab, pipe']);
});

test("structured_rows keeps JSON numbers exactly: a 64-bit id is not rounded to a double", async () => {
  const exact = async (key: string) =>
    (await pool.query("SELECT data->>'id' AS id, data->>'price' AS price FROM warehouse_rows WHERE object_key = $1 ORDER BY row_index", [key])).rows;
  s.putObject(B, "data/ids.json", '[{"id": 12345678901234567890, "price": 0.10, "note": "a,]}\\"[{"},\n {"id": 9007199254740993, "price": 1e2}]');
  expect(await ingest("data/ids.json", rows)).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 2 });
  expect(await exact("data/ids.json")).toEqual([{ id: "12345678901234567890", price: "0.10" }, { id: "9007199254740993", price: "100" }]);
  s.putObject(B, "data/ids.jsonl", '{"id": 18446744073709551615, "price": 12.345678901234567890}\n');
  expect(await ingest("data/ids.jsonl", rows)).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 1 });
  expect(await exact("data/ids.jsonl")).toEqual([{ id: "18446744073709551615", price: "12.345678901234567890" }]);
});

test("re-ingesting an object replaces its previous output, never duplicates it", async () => {
  s.putObject(B, "docs/again.txt", "x".repeat(1900));
  const first = await ingest("docs/again.txt", embed);
  expect(first.chunksCreated).toBe(2);
  expect(await chunksOf("docs/again.txt")).toHaveLength(2);
  s.putObject(B, "docs/again.txt", "y".repeat(900));
  const second = await ingest("docs/again.txt", embed);
  expect(second.chunksCreated).toBe(1);
  const after = await chunksOf("docs/again.txt");
  expect(after).toHaveLength(1);
  expect(after[0]).toMatchObject({ job_id: second.jobId, content: "y".repeat(900) });

  s.putObject(B, "data/again.jsonl", '{"v":1}\n{"v":2}\n{"v":3}\n');
  await ingest("data/again.jsonl", rows);
  s.putObject(B, "data/again.jsonl", '{"v":9}\n');
  await ingest("data/again.jsonl", rows);
  const stored = await pool.query("SELECT data FROM warehouse_rows WHERE object_key = 'data/again.jsonl'");
  expect(stored.rows.map((r) => r.data)).toEqual([{ v: 9 }]);
});

test.each<[string, string | Buffer, string, RegExp]>([
  ["docs/broken.pdf", "%PDF-1.4\nthis is not really a pdf", "embed", /PDF "docs\/broken\.pdf" is corrupt or unreadable: InvalidPDFException/],
  ["docs/image.png", "\x89PNG", "embed", /unsupported file type "\.png" for "docs\/image\.png"/],
  ["docs/bad.json", "{ nope", "embed", /object "docs\/bad\.json" is not valid JSON/],
  ["data/ragged.csv", "a,b\n1,2,3\n", "rows", /CSV "data\/ragged\.csv" record 2 has 3 fields; the header has 2/],
  ["data/bad.jsonl", '{"a":1}\n[1,2]\n', "rows", /"data\/bad\.jsonl" line 2 is not a JSON object/],
  ["data/binary.txt", Buffer.from([0xc3, 0x28, 0x00, 0x41]), "embed", /object "data\/binary\.txt" is not valid UTF-8 text/],
])("%s fails at once with a readable error", async (key, content, which, message) => {
  s.putObject(B, key, content);
  const job = await ingest(key, which === "embed" ? embed : rows);
  expect(job.status).toBe("INGEST_STATUS_FAILED");
  expect(job.error).toMatch(message);
  expect(job.errorDetails).toMatch(/^stage: (extract|parse|read)/);
  expect(job.attempts).toBe(1);
  expect(Number(job.finishedAt)).toBeGreaterThan(0);
});

test("bad option values are refused at trigger time, naming the option", async () => {
  s.putObject(B, "docs/ok.txt", "fine");
  const res = await http("POST", `/${B}/ingest`, { object: { key: "docs/ok.txt" }, pipelineId: embed, options: { chunk_overlap: "5000" } });
  expect(res.status).toBe(400);
  expect(res.json.message).toContain('options["chunk_overlap"] = "5000"');
});

test("counters are visible while the job is PROCESSING", async () => {
  // Enough text for many batches of one chunk each, so progress is published along the way.
  s.putObject(B, "docs/many.txt", "lorem ipsum ".repeat(20_000));
  const t = await http("POST", `/${B}/ingest`, { object: { key: "docs/many.txt" }, pipelineId: embed, options: { chunk_size: "50", chunk_overlap: "0", batch_size: "1", dimensions: "2048" } });
  const seen = await waitFor("a PROCESSING job with counters", async () => {
    const g = (await http("GET", `/${B}/ingest/jobs/${t.json.job.jobId}`)).json.job;
    if (g.status === "INGEST_STATUS_COMPLETED") throw new Error("finished before progress was seen");
    return g.status === "INGEST_STATUS_PROCESSING" && g.chunksCreated > 0 ? g : undefined;
  }, { intervalMs: 5 });
  // Chunks end between words: four "lorem ipsum " (48 characters) fit in 50.
  expect(seen.chunksCreated).toBe(5000);
  const done = await waitFor("the job to finish", async () => {
    const g = (await http("GET", `/${B}/ingest/jobs/${t.json.job.jobId}`)).json.job;
    return TERMINAL.includes(g.status) ? g : undefined;
  }, { timeoutMs: 60_000 });
  expect(done).toMatchObject({ status: "INGEST_STATUS_COMPLETED", embeddingsWritten: 5000, batchesReceived: 5000 });
}, 90_000); // its waits allow up to a minute for the 5,000 batches: more than the file's default

test("misspelled option keys are refused with the nearest one and the list; numbers in an options map are taken as their text on REST", async () => {
  const bad = await http("POST", `/${B}/pipelines`, { name: "typo", scriptum_template: "text_embedding_index", options: { chunksize: "1000" } });
  expect(bad).toMatchObject({
    status: 400,
    json: { code: "invalid_argument", message: 'options["chunksize"] is not an option of template text_embedding_index; did you mean "chunk_size"? its options are chunk_size, chunk_overlap, batch_size, dimensions, embedding_model, encoding' },
  });
  const noop = await http("POST", `/${B}/pipelines`, { name: "noop-opt", scriptum_template: "noop", options: { batchsize: "10" } });
  expect(noop.json.message).toMatch(/options\["batchsize"\] is not an option of template noop; it takes no options/);
  const numbers = await http("POST", `/${B}/pipelines`, { name: "numbers", scriptum_template: "text_embedding_index", options: { chunk_size: 2000, chunk_overlap: 100 } });
  expect(numbers).toMatchObject({ status: 200, json: { pipeline: { options: { chunk_size: "2000", chunk_overlap: "100" } } } });
  const patched = await http("PATCH", `/${B}/pipelines/${numbers.json.pipeline.pipelineId}`, { options: { values: { chunk_size: 1500, chunk_sise: 3 } } });
  expect(patched.json.message).toMatch(/options\["chunk_sise"\] is not an option of template text_embedding_index; did you mean "chunk_size"\?/);
  // A per-trigger overlay is checked the same way.
  s.putObject(B, "docs/typo.txt", "a few words");
  const trigger = await http("POST", `/${B}/ingest`, { object: { key: "docs/typo.txt" }, pipeline_id: numbers.json.pipeline.pipelineId, options: { chunksize: "500" } });
  expect(trigger).toMatchObject({ status: 400, json: { message: expect.stringMatching(/options\["chunksize"\] is not an option of template text_embedding_index; did you mean "chunk_size"\?/) } });
});
