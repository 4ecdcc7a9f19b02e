/**
 * Word, PowerPoint and Excel files, as a team's document folder holds them, uploaded with
 * the AWS CLI: a .docx's paragraphs indexed with their heading path, a .pptx's slides in
 * their order as pages (slide 10 after slide 2) with their speaker notes, a .docx's footnotes
 * after the paragraphs citing them, an .xlsx's first sheet (or the one a pipeline names) as
 * warehouse rows. The documents are
 * written by Python's zipfile, as Office writes them (deflated XML parts). A damaged
 * archive and a small archive of too much text fail at once, saying which.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { Client } from "pg";
import { PermanentError } from "../src/worker/failures";
import { docxText, pptxSlides, xlsxRows } from "../src/worker/office";
import { jsonClient, type J } from "./helpers/http";
import { s3Admin, type S3Admin } from "./helpers/s3-clients";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

jest.setTimeout(90_000);

let s: TestServers;
let admin: S3Admin;
const B = "kb-office";
const work = mkdtempSync(join(tmpdir(), "k3-office-"));
const http = (method: string, path: string, body?: unknown) => jsonClient(() => s.httpUrl, admin.auth)(method, path, body);

/** Office documents written with zipfile: a report, a deck, and a document.xml of 20 MB of repeated text (20 KB deflated). */
const WRITE = String.raw`
import sys, zipfile
out = sys.argv[1]
W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
def para(text, style=None):
    ppr = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ''
    return f'<w:p>{ppr}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>'
# Paragraphs of n facts: two of 20 do not fit in a chunk (1,000 characters by default), and chunks end at a paragraph.
def facts(what, n=32):
    return ' '.join(f'{what} fact {i} is noted here.' for i in range(n))
body = [para('Field Guide', 'Title'), para('Penguins', 'Heading2'),
        '<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr><w:r><w:t xml:space="preserve">Emperor penguins </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>huddle</w:t></w:r>'
        '<w:r><w:t xml:space="preserve"> through the polar winter &amp; breed on &lt;sea ice&gt;. ' + facts('Penguin', 20) + '</w:t></w:r></w:p>',
        '<w:p/>', para('Albatrosses', 'Heading2'), para('They glide for hours without a wingbeat. ' + facts('Albatross', 20))]
with zipfile.ZipFile(out + '/report.docx', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('[Content_Types].xml', '<Types/>')
    z.writestr('word/document.xml', f'<?xml version="1.0" encoding="UTF-8"?><w:document {W}><w:body>{"".join(body)}</w:body></w:document>')
A = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"'
def slide(*texts):
    ps = ''.join(f'<a:p><a:r><a:t>{t}</a:t></a:r></a:p>' for t in texts)
    return f'<?xml version="1.0"?><p:sld {A}><p:cSld><p:spTree><p:sp><p:txBody>{ps}</p:txBody></p:sp></p:spTree></p:cSld></p:sld>'
with zipfile.ZipFile(out + '/deck.pptx', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('ppt/slides/slide10.xml', slide('Closing', 'krill swarms feed the whole colony', facts('Krill')))
    z.writestr('ppt/slides/slide2.xml', slide('Colonies', 'penguins march inland each winter', facts('Colony')))
    z.writestr('ppt/slides/slide1.xml', slide('Deck title', facts('Opening')))
    z.writestr('ppt/slideLayouts/slideLayout1.xml', slide('a layout is not content'))
# A workbook whose first sheet (in the workbook's order) is not sheet1.xml: shared strings
# (one in rich-text runs with a phonetic guide), an inline string, a number, a boolean, an
# error, an empty row, a cell left out and one past the header.
X = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
def cells(row, *cs):
    return f'<row r="{row}">' + ''.join(cs) + '</row>'
with zipfile.ZipFile(out + '/birds.xlsx', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('xl/workbook.xml', f'<workbook {X}><sheets><sheet name="Birds" sheetId="2" r:id="rId7"/><sheet name="Old" sheetId="1" r:id="rId1"/></sheets></workbook>')
    z.writestr('xl/_rels/workbook.xml.rels', '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
               '<Relationship Id="rId1" Type="worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId7" Type="worksheet" Target="/xl/worksheets/birds.xml"/></Relationships>')
    z.writestr('xl/sharedStrings.xml', f'<sst {X}><si><t>name</t></si><si><t>weight &amp; kg</t></si>'
               '<si><r><t>Emperor </t></r><r><rPr><b/></rPr><t>penguin</t></r><rPh sb="0" eb="1"><t>pen</t></rPh></si><si><t>breeds</t></si></sst>')
    z.writestr('xl/worksheets/birds.xml', f'<worksheet {X}><cols><col min="1" max="3" width="9"/></cols><sheetData>'
               + cells(1, '<c r="A1" t="s"><v>0</v></c>', '<c r="B1" t="s"><v>1</v></c>', '<c r="C1" t="s"><v>3</v></c>')
               + cells(2, '<c r="A2" t="s"><v>2</v></c>', '<c r="B2"><v>22.5</v></c>', '<c r="C2" t="b"><v>1</v></c>')
               + '<row r="3"/>'
               + cells(4, '<c r="A4" t="inlineStr"><is><t>Albatross &lt;wandering&gt;</t></is></c>', '<c r="C4" t="b"><v>0</v></c>', '<c r="D4" t="e"><v>#N/A</v></c>')
               + '</sheetData></worksheet>')
    z.writestr('xl/worksheets/sheet1.xml', f'<worksheet {X}><sheetData>' + cells(1, '<c r="A1" t="inlineStr"><is><t>note</t></is></c>') + cells(2, '<c r="A2" t="inlineStr"><is><t>not the first sheet</t></is></c>') + '</sheetData></worksheet>')
# A report citing a footnote and an endnote (with the separator notes Word writes), and a
# deck whose slide has speaker notes on a notes page that also shows the slide and its number.
with zipfile.ZipFile(out + '/notes.docx', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('word/document.xml', f'<w:document {W}><w:body>' + para('Notes Guide', 'Title') + para('Seals', 'Heading2')
               + '<w:p><w:r><w:t>Harbour seals haul out at low tide.</w:t></w:r><w:r><w:rPr><w:rStyle w:val="FootnoteReference"/></w:rPr><w:footnoteReference w:id="1"/></w:r></w:p>'
               + para('Petrels', 'Heading2') + '<w:p><w:r><w:t>Storm petrels patter on the waves.</w:t></w:r><w:r><w:endnoteReference w:id="2"/></w:r></w:p></w:body></w:document>')
    z.writestr('word/footnotes.xml', f'<w:footnotes {W}><w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
               '<w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r></w:p></w:footnote>'
               '<w:footnote w:id="1"><w:p><w:r><w:footnoteRef/></w:r><w:r><w:t xml:space="preserve"> Grey seals dive below &quot;three hundred&quot; metres.</w:t></w:r></w:p></w:footnote></w:footnotes>')
    z.writestr('word/endnotes.xml', f'<w:endnotes {W}><w:endnote w:id="2"><w:p><w:r><w:t>Petrels were first counted in 1998.</w:t></w:r></w:p></w:endnote></w:endnotes>')
def shape(ph, *texts):
    ps = ''.join(f'<a:p><a:r><a:t>{t}</a:t></a:r></a:p>' for t in texts)
    return f'<p:sp><p:nvSpPr><p:cNvPr id="2" name="s"/><p:cNvSpPr/><p:nvPr><p:ph type="{ph}"/></p:nvPr></p:nvSpPr><p:txBody>{ps}</p:txBody></p:sp>'
with zipfile.ZipFile(out + '/notes.pptx', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('ppt/slides/slide1.xml', slide('Seals', 'Harbour seals haul out'))
    z.writestr('ppt/slides/_rels/slide1.xml.rels', '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
               '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slideLayout" Target="../slideLayouts/slideLayout1.xml"/>'
               '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/notesSlide" Target="../notesSlides/notesSlide7.xml"/></Relationships>')
    z.writestr('ppt/notesSlides/notesSlide7.xml', f'<p:notes {A}><p:cSld><p:spTree>' + shape('sldImg') + shape('body', 'Mention the pups', 'and the tide table') + '<p:sp><p:nvSpPr><p:nvPr><p:ph type="sldNum" sz="quarter" idx="5"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:fld type="slidenum"><a:t>1</a:t></a:fld></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:notes>')
    z.writestr('ppt/slides/slide2.xml', slide('Petrels', 'no notes here'))
with zipfile.ZipFile(out + '/huge.docx', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('word/document.xml', f'<w:document {W}><w:body>' + para('penguins ' * 2_000_000) + '</w:body></w:document>')
`;

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on", K3_ROLE: "all", K3_POLL_MS: "50", K3_MAX_TEXT_CHARS: "200000" });
  admin = await s3Admin(s, work, [B]);
  const pipe = (await http("POST", `/${B}/pipelines`, { name: "docs", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
  expect((await http("POST", `/${B}/rules`, { name: "docs", pipeline_id: pipe, include_patterns: ["docs/**"] })).status).toBe(200);
  const rows = (await http("POST", `/${B}/pipelines`, { name: "rows", scriptum_template: "structured_rows" })).json.pipeline.pipelineId;
  expect((await http("POST", `/${B}/rules`, { name: "sheets", pipeline_id: rows, include_patterns: ["sheets/**"] })).status).toBe(200);
  for (const [name, sheet] of [["old", "old"], ["missing", "Gulls"]]) {
    const p = (await http("POST", `/${B}/pipelines`, { name: `rows-${name}`, scriptum_template: "structured_rows", options: { sheet } })).json.pipeline.pipelineId;
    expect((await http("POST", `/${B}/rules`, { name: `sheet-${name}`, pipeline_id: p, include_patterns: [`sheet-${name}/**`] })).status).toBe(200);
  }
  execFileSync("python3", ["-c", WRITE, work]);
});
afterAll(async () => {
  await s.stop();
  rmSync(work, { recursive: true, force: true });
});

async function upload(name: string, bytes?: Buffer, folder = "docs"): Promise<J> {
  const key = `${folder}/${name}`;
  const file = join(work, name);
  if (bytes) writeFileSync(file, bytes);
  await admin.aws(["s3", "cp", file, `s3://${B}/${key}`, "--no-progress"]);
  return waitFor(`the job of ${key}`, async () => {
    const j = ((await http("GET", `/${B}/ingest/jobs?key_prefix=${encodeURIComponent(key)}`)).json.jobs as J[]).find((x) => x.object.key === key);
    return j && ["INGEST_STATUS_COMPLETED", "INGEST_STATUS_FAILED"].includes(j.status) ? j : undefined;
  }, { timeoutMs: 30_000, intervalMs: 100 });
}

/** The warehouse rows an object's job wrote, in their order. */
async function rowsOf(key: string): Promise<unknown[]> {
  const db = new Client({ connectionString: s.db.url });
  await db.connect();
  try {
    return (await db.query("SELECT data FROM warehouse_rows WHERE bucket = $1 AND object_key = $2 ORDER BY row_index", [B, key])).rows.map((r) => r.data);
  } finally {
    await db.end();
  }
}

const top = async (text: string) => (await http("POST", `/${B}/vector/search`, { text, top_k: 1, include_content: true })).json.results[0] as J;

test("a .docx is indexed as its paragraphs, with the heading path of each", async () => {
  expect(await upload("report.docx")).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 2 });
  const penguins = await top("emperor penguins huddle polar winter");
  expect(penguins).toMatchObject({ object: { key: "docs/report.docx" }, heading: "Field Guide" });
  expect(penguins.content).toMatch(/^Field Guide\n\nPenguins\n\nEmperor penguins huddle through the polar winter & breed on <sea ice>\. Penguin fact 0 /);
  const albatrosses = await top("glide hours wingbeat");
  expect(albatrosses).toMatchObject({ object: { key: "docs/report.docx" }, heading: "Field Guide > Albatrosses" });
  expect(albatrosses.content).toMatch(/^They glide for hours without a wingbeat\. Albatross fact 0 .* Albatross fact 19 is noted here\.$/);
});

test("a .pptx is indexed slide by slide in their order, each slide a page; its layouts are not content", async () => {
  expect(await upload("deck.pptx")).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 3 });
  const hits = (await http("POST", `/${B}/vector/search`, { text: "deck title colonies penguins march krill swarms layout", top_k: 50, include_content: true })).json.results as J[];
  const deck = hits.filter((r) => r.object.key === "docs/deck.pptx").sort((a, b) => a.chunkIndex - b.chunkIndex);
  expect(deck.map((r) => [r.page, r.content.split("\n").slice(0, 2).join(" | ")])).toEqual([
    [1, "Deck title | Opening fact 0 is noted here. Opening fact 1 is noted here. Opening fact 2 is noted here. Opening fact 3 is noted here. Opening fact 4 is noted here. Opening fact 5 is noted here. Opening fact 6 is noted here. Opening fact 7 is noted here. Opening fact 8 is noted here. Opening fact 9 is noted here. Opening fact 10 is noted here. Opening fact 11 is noted here. Opening fact 12 is noted here. Opening fact 13 is noted here. Opening fact 14 is noted here. Opening fact 15 is noted here. Opening fact 16 is noted here. Opening fact 17 is noted here. Opening fact 18 is noted here. Opening fact 19 is noted here. Opening fact 20 is noted here. Opening fact 21 is noted here. Opening fact 22 is noted here. Opening fact 23 is noted here. Opening fact 24 is noted here. Opening fact 25 is noted here. Opening fact 26 is noted here. Opening fact 27 is noted here. Opening fact 28 is noted here. Opening fact 29 is noted here. Opening fact 30 is noted here. Opening fact 31 is noted here."],
    [2, "Colonies | penguins march inland each winter"],
    [3, "Closing | krill swarms feed the whole colony"],
  ]);
  expect(deck.map((r) => r.content).join(" ")).not.toContain("layout");
});

test("a damaged archive and a small archive of too much text fail at once, saying which", async () => {
  const damaged = await upload("damaged.docx", Buffer.concat([Buffer.from("PK\u0003\u0004"), Buffer.alloc(64, 0x41)]));
  expect(damaged).toMatchObject({ status: "INGEST_STATUS_FAILED", attempts: 1, permanentFailure: true, error: '"docs/damaged.docx" is not a readable Office document: it is not a zip archive' });
  // The full document.xml's cut from its last bytes: its directory is there, its part is not.
  const report = readFileSync(join(work, "report.docx"));
  const cut = await upload("cut.docx", Buffer.concat([report.subarray(0, 40), report.subarray(report.length - 200)]));
  expect(cut).toMatchObject({ status: "INGEST_STATUS_FAILED", attempts: 1 });
  expect(cut.error).toMatch(/^"docs\/cut\.docx" is not a readable Office document: /);
  expect(readFileSync(join(work, "huge.docx")).length).toBeLessThan(200_000);
  const huge = await upload("huge.docx");
  expect(huge).toMatchObject({ status: "INGEST_STATUS_FAILED", attempts: 1, error: '"docs/huge.docx" holds more than 200000 characters of text; the limit is K3_MAX_TEXT_CHARS' });
});

test("structured_rows reads an .xlsx's first sheet: its first row names the columns, every value as the sheet shows it", async () => {
  expect(await upload("birds.xlsx", undefined, "sheets")).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 2 });
  expect(await rowsOf("sheets/birds.xlsx")).toEqual([
    { name: "Emperor penguin", "weight & kg": "22.5", breeds: "TRUE", column_4: "" },
    { name: "Albatross <wandering>", "weight & kg": "", breeds: "FALSE", column_4: "#N/A" },
  ]);
});

test("a pipeline's sheet option picks an .xlsx's sheet by name, ignoring case; a sheet the workbook lacks fails naming those it has", async () => {
  expect(await upload("birds.xlsx", undefined, "sheet-old")).toMatchObject({ status: "INGEST_STATUS_COMPLETED", rowsWritten: 1 });
  expect(await rowsOf("sheet-old/birds.xlsx")).toEqual([{ note: "not the first sheet" }]);
  expect(await upload("birds.xlsx", undefined, "sheet-missing")).toMatchObject({
    status: "INGEST_STATUS_FAILED",
    attempts: 1,
    permanentFailure: true,
    error: `"sheet-missing/birds.xlsx" has no sheet "Gulls" (the pipeline's sheet option); its sheets are "Birds", "Old"`,
  });
  // Longer than Excel allows a sheet's name: refused when the pipeline is made, naming the option.
  const long = await http("POST", `/${B}/pipelines`, { name: "rows-long", scriptum_template: "structured_rows", options: { sheet: "s".repeat(32) } });
  expect(long.status).toBe(400);
  expect(long.json.message).toContain(`options["sheet"] is 32 characters long; at most 31`);
});

test("a .docx's footnotes and endnotes follow the paragraphs citing them; a .pptx slide's speaker notes follow its text, not the notes page's slide number", async () => {
  expect(docxText(readFileSync(join(work, "notes.docx")), "notes.docx", 100_000)).toBe(
    "\n\u0001" + "1Notes Guide\u0002\n\n\u00012Seals\u0002\n\nHarbour seals haul out at low tide.\nGrey seals dive below \"three hundred\" metres.\n\n\u00012Petrels\u0002\n\nStorm petrels patter on the waves.\nPetrels were first counted in 1998.",
  );
  expect(pptxSlides(readFileSync(join(work, "notes.pptx")), "notes.pptx", 100_000)).toEqual(["Seals\nHarbour seals haul out\n\nMention the pups\nand the tide table", "Petrels\nno notes here"]);
  // Uploaded, the notes are searchable under the headings and on the pages they belong to.
  expect(await upload("notes.docx")).toMatchObject({ status: "INGEST_STATUS_COMPLETED" });
  expect(await upload("notes.pptx")).toMatchObject({ status: "INGEST_STATUS_COMPLETED" });
  const hits = (await http("POST", `/${B}/vector/search`, { text: "grey seals dive three hundred metres pups tide table", top_k: 50, include_content: true })).json.results as J[];
  const docx = hits.filter((r) => r.object.key === "docs/notes.docx");
  expect(docx.map((r) => r.content).join("\n")).toContain('Grey seals dive below "three hundred" metres.');
  const slide = hits.find((r) => r.object.key === "docs/notes.pptx" && r.page === 1);
  expect(slide?.content).toMatch(/^Seals\nHarbour seals haul out\n\nMention the pups\nand the tide table\n/);
  expect(slide?.content).not.toMatch(/table\n+1\n/);
});

test("damaged Office files, byte by byte, end in a PermanentError or in text: never another error, a hang or a crash", () => {
  const files = ["report.docx", "deck.pptx", "birds.xlsx", "notes.docx", "notes.pptx", "birds.xlsx"].map((f) => readFileSync(join(work, f)));
  const docx = (b: Buffer) => docxText(b, "k.docx", 100_000);
  const pptx = (b: Buffer) => pptxSlides(b, "k.pptx", 100_000);
  const read = [docx, pptx, (b: Buffer) => xlsxRows(b, "k.xlsx", 100_000, 10_000), docx, pptx, (b: Buffer) => xlsxRows(b, "k.xlsx", 100_000, 10_000, "Old")];
  fc.assert(
    fc.property(fc.integer({ min: 0, max: files.length - 1 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(), (which, flips, cutAt) => {
      const bytes = Buffer.from(files[which]);
      for (const [at, value] of flips) bytes[at % bytes.length] = value;
      const damaged = cutAt % 3 === 0 ? bytes.subarray(0, cutAt % bytes.length) : bytes;
      try {
        read[which](damaged);
      } catch (err) {
        if (!(err instanceof PermanentError)) throw err;
      }
    }),
    { numRuns: 3000 },
  );
});
