/**
 * The text of Office Open XML documents: Word's .docx (its body, paragraph by paragraph,
 * headings marked as htmlToText marks them, each footnote and endnote after the paragraph
 * citing it), PowerPoint's .pptx (its slides in order, each one a page with its speaker
 * notes) and Excel's .xlsx (a sheet's rows, for structured_rows). A document
 * is a zip of XML parts, read here without a library: the zip's central directory, each
 * part wanted inflated within one cap for the document (a small archive of gigabytes fails
 * saying so), and its markup in forward passes (`runs` for text runs in paragraphs,
 * `elements` for a sheet's rows and cells). Damaged archives and what they do not hold
 * fail permanently, naming the object.
 */
import { inflateRawSync } from "node:zlib";
import { decodeEntities, decodeText, HEADING_CLOSE, HEADING_OPEN, withoutMarks } from "./extract";
import { PermanentError } from "./failures";

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  offset: number;
}

/** Bytes of XML a part may inflate to, per character of text allowed (markup outweighs text). */
const XML_BYTES_PER_CHAR = 16;

function corrupt(key: string, what: string): PermanentError {
  return new PermanentError("extract", `"${key}" is not a readable Office document: ${what}`);
}

function tooMuchText(key: string, maxChars: number): PermanentError {
  return new PermanentError("extract", `"${key}" holds more than ${maxChars} characters of text; the limit is K3_MAX_TEXT_CHARS`);
}

/** The entries of a zip's central directory (ZIP64 archives, which Office does not write for documents, are refused). */
function zipEntries(buf: Buffer, key: string): ZipEntry[] {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw corrupt(key, "it is not a zip archive");
  const count = buf.readUInt16LE(eocd + 10);
  let at = buf.readUInt32LE(eocd + 16);
  if (count === 0xffff || at === 0xffffffff) throw corrupt(key, "it is a ZIP64 archive");
  const entries: ZipEntry[] = [];
  for (let n = 0; n < count; n++) {
    if (at + 46 > buf.length || buf.readUInt32LE(at) !== 0x02014b50) throw corrupt(key, "its zip directory is damaged");
    const nameLength = buf.readUInt16LE(at + 28);
    entries.push({
      name: buf.toString("utf8", at + 46, at + 46 + nameLength),
      method: buf.readUInt16LE(at + 10),
      compressedSize: buf.readUInt32LE(at + 20),
      offset: buf.readUInt32LE(at + 42),
    });
    at += 46 + nameLength + buf.readUInt16LE(at + 30) + buf.readUInt16LE(at + 32);
  }
  return entries;
}

/** A part's XML, inflated within `budget.bytes` (what is left of the document's cap, reduced by it). */
function readPart(buf: Buffer, e: ZipEntry, key: string, budget: { bytes: number; maxChars: number }): string {
  const at = e.offset;
  if (at + 30 > buf.length || buf.readUInt32LE(at) !== 0x04034b50) throw corrupt(key, `its part ${e.name} is damaged`);
  const start = at + 30 + buf.readUInt16LE(at + 26) + buf.readUInt16LE(at + 28);
  const data = buf.subarray(start, start + e.compressedSize);
  if (data.length < e.compressedSize) throw corrupt(key, `its part ${e.name} is cut short`);
  let xml: Buffer;
  if (e.method === 0) {
    xml = data;
  } else if (e.method === 8) {
    try {
      xml = inflateRawSync(data, { maxOutputLength: Math.max(1, budget.bytes) });
    } catch (err) {
      if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") throw tooMuchText(key, budget.maxChars);
      throw corrupt(key, `its part ${e.name} does not inflate (${(err as Error).message})`);
    }
  } else {
    throw corrupt(key, `its part ${e.name} is compressed with method ${e.method}, not deflate`);
  }
  if (xml.length > budget.bytes) throw tooMuchText(key, budget.maxChars);
  budget.bytes -= xml.length;
  return withoutMarks(decodeText(xml, key));
}

/**
 * The text runs of a part's XML (`run`, e.g. w:t), one forward pass: a paragraph's end
 * (`para`) hands the paragraph's text to `onParagraph` with its style id (for headings) and
 * the footnotes and endnotes it cites ("f3", "e1"); tabs (not a paragraph's tab stops) and
 * breaks are kept.
 */
function runs(xml: string, run: string, para: string, onParagraph: (text: string, styleId: string, notes: string[]) => void): void {
  const close = `</${run}>`;
  let text = "";
  let styleId = "";
  let notes: string[] = [];
  let tabStops = false; // inside w:tabs, whose w:tab elements are a paragraph's tab stops, not tabs
  for (let i = xml.indexOf("<"); i >= 0 && i < xml.length; i = xml.indexOf("<", i)) {
    const gt = xml.indexOf(">", i);
    if (gt < 0) break;
    const tag = xml.slice(i + 1, gt);
    const name = /^\/?[^\s/]*/.exec(tag)?.[0] ?? "";
    if (name === run && !tag.endsWith("/")) {
      const end = xml.indexOf(close, gt);
      if (end < 0) break;
      text += decodeEntities(xml.slice(gt + 1, end));
      i = end + close.length;
      continue;
    }
    if (name === "w:tabs" || name === "/w:tabs") tabStops = name === "w:tabs" && !tag.endsWith("/");
    else if (name.endsWith(":tab") && !tabStops) text += "\t";
    else if (name.endsWith(":br") || name.endsWith(":cr")) text += "\n";
    else if (name.endsWith(":pStyle")) styleId = /:val="([^"]*)"/.exec(tag)?.[1] ?? "";
    else if (name === "w:footnoteReference" || name === "w:endnoteReference") notes.push(`${name[2]}${attribute(tag, "w:id")}`);
    else if (name === `/${para}`) {
      onParagraph(text, styleId, notes);
      text = "";
      styleId = "";
      notes = [];
    }
    i = gt + 1;
  }
  if (text || notes.length) onParagraph(text, styleId, notes);
}

/** A Word heading style's level: Title and Heading1–Heading6 (their ids in English Word). */
function headingLevel(styleId: string): number {
  if (styleId === "Title") return 1;
  const m = /^Heading([1-6])$/i.exec(styleId);
  return m ? Number(m[1]) : 0;
}

/** An Office archive: its part names, and each part's XML read on demand within the document's one cap. */
interface Archive {
  names: string[];
  read(name: string): string | undefined;
}

function openArchive(data: Uint8Array, key: string, maxChars: number): Archive {
  if (data.byteLength < 22) throw corrupt(key, "it is not a zip archive");
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const entries = new Map(zipEntries(buf, key).map((e) => [e.name, e]));
  const budget = { bytes: maxChars * XML_BYTES_PER_CHAR, maxChars };
  return {
    names: [...entries.keys()],
    read(name) {
      const e = entries.get(name);
      return e && readPart(buf, e, key, budget);
    },
  };
}

/** The text of each footnote (w:footnote) or endnote of a notes part, by its id with `prefix` ("f3", "e1"). */
function noteTexts(xml: string | undefined, element: string, prefix: string): Map<string, string> {
  const notes = new Map<string, string>();
  for (const n of elements(xml ?? "", element)) {
    const lines: string[] = [];
    runs(n.content, "w:t", "w:p", (text) => lines.push(text));
    const text = lines.join("\n").trim();
    if (text) notes.set(`${prefix}${attribute(n.tag, "w:id")}`, text);
  }
  return notes;
}

/**
 * The text of a .docx's body, headings wrapped in htmlToText's marks (takeHeadingMarks reads
 * them); each footnote and endnote follows the paragraph that cites it, so it sits under
 * that paragraph's headings.
 */
export function docxText(data: Uint8Array, key: string, maxChars: number): string {
  const doc = openArchive(data, key, maxChars);
  const body = doc.read("word/document.xml");
  if (body === undefined) throw corrupt(key, "it has no word/document.xml");
  const notes = new Map([...noteTexts(doc.read("word/footnotes.xml"), "w:footnote", "f"), ...noteTexts(doc.read("word/endnotes.xml"), "w:endnote", "e")]);
  const lines: string[] = [];
  runs(body, "w:t", "w:p", (text, styleId, cited) => {
    const level = headingLevel(styleId);
    lines.push(level && text.trim() ? `\n${HEADING_OPEN}${level}${text}${HEADING_CLOSE}\n` : text);
    for (const id of cited) {
      const note = notes.get(id);
      if (note !== undefined) lines.push(note);
    }
  });
  return lines.join("\n").replace(/\n{3,}/g, "\n\n");
}

/**
 * The part a part's relationship points to — the first whose tag `matches` (by its Type, or
 * its Id) — as a part name: a target relative to the part's folder, or from the archive's
 * root when it starts with "/"; '' when no relationship matches.
 */
function relatedPart(doc: Archive, part: string, matches: (relationTag: string) => boolean): string {
  const slash = part.lastIndexOf("/");
  const folder = part.slice(0, slash);
  for (const r of elements(doc.read(`${folder}/_rels/${part.slice(slash + 1)}.rels`) ?? "", "Relationship")) {
    if (!matches(r.tag)) continue;
    const target = attribute(r.tag, "Target");
    if (target.startsWith("/")) return target.slice(1);
    const path = folder.split("/");
    for (const step of target.split("/")) {
      if (step === "..") path.pop();
      else if (step !== "." && step !== "") path.push(step);
    }
    return path.join("/");
  }
  return "";
}

/** A notes page's notes: the text of its body placeholder (the page also shows the slide's picture and number). */
function notesText(xml: string): string {
  const lines: string[] = [];
  for (const sp of elements(xml, "p:sp")) if (/<p:ph\b[^>]*\btype="body"/.test(sp.content)) runs(sp.content, "a:t", "a:p", (text) => lines.push(text));
  return lines.join("\n").trim();
}

/** The text of each of a .pptx's slides, in their order, trimmed; a slide's speaker notes follow its own text. */
export function pptxSlides(data: Uint8Array, key: string, maxChars: number): string[] {
  const doc = openArchive(data, key, maxChars);
  const slides = doc.names
    .map((name) => ({ name, n: Number(/^ppt\/slides\/slide(\d+)\.xml$/.exec(name)?.[1] ?? NaN) }))
    .filter((s) => Number.isInteger(s.n))
    .sort((a, b) => a.n - b.n);
  if (slides.length === 0) throw corrupt(key, "it has no slides");
  return slides.map(({ name }) => {
    const lines: string[] = [];
    runs(doc.read(name) ?? "", "a:t", "a:p", (text) => lines.push(text));
    const text = lines.join("\n").trim();
    const notesPart = relatedPart(doc, name, (r) => attribute(r, "Type").endsWith("/notesSlide"));
    const notes = notesPart ? notesText(doc.read(notesPart) ?? "") : "";
    return notes ? `${text}\n\n${notes}` : text;
  });
}

/** An attribute's value in a tag's text (`name="value"`), entities decoded; '' when absent. */
function attribute(tag: string, name: string): string {
  const at = tag.indexOf(` ${name}="`);
  if (at < 0) return "";
  const start = at + name.length + 3;
  const end = tag.indexOf('"', start);
  return end < 0 ? "" : decodeEntities(tag.slice(start, end));
}

/** The elements named `name` in XML, each as its start tag's text and its content ('' when self-closing), in order. */
function* elements(xml: string, name: string): Generator<{ tag: string; content: string }> {
  const open = `<${name}`;
  const close = `</${name}>`;
  for (let i = xml.indexOf(open); i >= 0; i = xml.indexOf(open, i)) {
    const after = xml[i + open.length];
    const gt = xml.indexOf(">", i);
    if (gt < 0) return;
    if (after !== ">" && after !== " " && after !== "/" && after !== "\t" && after !== "\n" && after !== "\r") {
      i = gt + 1; // a longer name (<row…> is not <r>)
      continue;
    }
    const tag = xml.slice(i + 1, gt);
    if (tag.endsWith("/")) {
      yield { tag, content: "" };
      i = gt + 1;
      continue;
    }
    const end = xml.indexOf(close, gt);
    if (end < 0) return;
    yield { tag, content: xml.slice(gt + 1, end) };
    i = end + close.length;
  }
}

/** The text of an inline or shared string (<si>, <is>): its <t> runs, its phonetic guides (<rPh>…</rPh>) left out, in one pass. */
function stringText(xml: string): string {
  let kept = "";
  let from = 0;
  for (let at = xml.indexOf("<rPh", from); at >= 0; at = xml.indexOf("<rPh", from)) {
    const end = xml.indexOf("</rPh>", at);
    if (end < 0) break;
    kept += xml.slice(from, at);
    from = end + "</rPh>".length;
  }
  kept += xml.slice(from);
  let text = "";
  for (const t of elements(kept, "t")) text += decodeEntities(t.content);
  return text;
}

/** A cell reference's column, from 0 (B7 is 1); -1 when it names none. */
function columnOf(ref: string): number {
  let n = 0;
  let i = 0;
  for (; i < ref.length && i < 3; i++) {
    const c = ref.charCodeAt(i);
    if (c < 65 || c > 90) break;
    n = n * 26 + (c - 64);
  }
  return i === 0 ? -1 : n - 1;
}

/**
 * The rows of an .xlsx's sheet named `sheetName` (exactly, else ignoring case, as Excel
 * tells sheets apart), or of its first sheet (in the workbook's order) when the name is
 * empty; each row its cells' text by column ('' where a row has no cell): shared and
 * inline strings, numbers as written (a date is Excel's serial number), booleans as
 * TRUE / FALSE, errors as shown (#N/A).
 */
export function xlsxRows(data: Uint8Array, key: string, maxChars: number, maxColumns: number, sheetName = ""): string[][] {
  const doc = openArchive(data, key, maxChars);
  const sheets = [...elements(doc.read("xl/workbook.xml") ?? "", "sheet")].map((e) => ({ name: attribute(e.tag, "name"), relation: attribute(e.tag, "r:id") }));
  const chosen = sheetName === "" ? sheets[0] : (sheets.find((x) => x.name === sheetName) ?? sheets.find((x) => x.name.toLowerCase() === sheetName.toLowerCase()));
  if (sheetName !== "" && !chosen) {
    const names = sheets.map((x) => JSON.stringify(x.name)).join(", ");
    throw new PermanentError("parse", `"${key}" has no sheet ${JSON.stringify(sheetName)} (the pipeline's sheet option); ${names ? `its sheets are ${names}` : "it names no sheets"}`);
  }
  const relation = chosen?.relation ?? "";
  const path = relatedPart(doc, "xl/workbook.xml", (r) => attribute(r, "Id") === relation) || "xl/worksheets/sheet1.xml";
  const sheet = doc.read(path);
  if (sheet === undefined) throw corrupt(key, `it has no worksheet ${path}`);
  const shared = [...elements(doc.read("xl/sharedStrings.xml") ?? "", "si")].map((si) => stringText(si.content));
  const rows: string[][] = [];
  for (const row of elements(sheet, "row")) {
    const cells: string[] = [];
    for (const c of elements(row.content, "c")) {
      const at = columnOf(attribute(c.tag, "r"));
      const column = at >= 0 ? at : cells.length;
      if (column >= maxColumns) throw new PermanentError("parse", `"${key}" has a cell in column ${column + 1} (row ${rows.length + 1} of values); at most ${maxColumns} columns are read`);
      const type = attribute(c.tag, "t");
      const v = decodeEntities([...elements(c.content, "v")][0]?.content ?? "");
      const text =
        type === "s" ? (shared[Number(v)] ?? "") : type === "inlineStr" ? stringText(c.content) : type === "b" ? (v === "1" ? "TRUE" : "FALSE") : v;
      while (cells.length < column) cells.push("");
      cells[column] = text;
    }
    if (cells.some((x) => x !== "")) rows.push(cells);
  }
  return rows;
}
