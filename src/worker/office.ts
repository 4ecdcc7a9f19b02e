/**
 * The text of Office Open XML documents: Word's .docx (its body, paragraph by paragraph,
 * headings marked as htmlToText marks them) and PowerPoint's .pptx (its slides in order,
 * each one a page). A document is a zip of XML parts; both are read here without a library:
 * the zip's central directory, each part wanted inflated within a cap (a small archive of
 * gigabytes fails saying so), and the text runs of its markup in one forward pass. Damaged
 * archives and what they do not hold fail permanently, naming the object.
 */
import { inflateRawSync } from "node:zlib";
import { decodeEntities, decodeText, HEADING_CLOSE, HEADING_OPEN } from "./extract";
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
  return decodeText(xml, key).replace(/[\u0001\u0002]/g, " ");
}

/**
 * The text runs of a part's XML (`run`, e.g. w:t), one forward pass: a paragraph's end
 * (`para`) hands the paragraph's text to `onParagraph` with its style id (for headings),
 * and tabs (not a paragraph's tab stops) and breaks are kept.
 */
function runs(xml: string, run: string, para: string, onParagraph: (text: string, styleId: string) => void): void {
  const close = `</${run}>`;
  let text = "";
  let styleId = "";
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
    else if (name === `/${para}`) {
      onParagraph(text, styleId);
      text = "";
      styleId = "";
    }
    i = gt + 1;
  }
  if (text) onParagraph(text, styleId);
}

/** A Word heading style's level: Title and Heading1–Heading6 (their ids in English Word). */
function headingLevel(styleId: string): number {
  if (styleId === "Title") return 1;
  const m = /^Heading([1-6])$/i.exec(styleId);
  return m ? Number(m[1]) : 0;
}

/** The text of a .docx's body, headings wrapped in htmlToText's marks (takeHeadingMarks reads them). */
export function docxText(data: Uint8Array, key: string, maxChars: number): string {
  const buf = archive(data, key);
  const body = zipEntries(buf, key).find((e) => e.name === "word/document.xml");
  if (!body) throw corrupt(key, "it has no word/document.xml");
  const lines: string[] = [];
  runs(readPart(buf, body, key, { bytes: maxChars * XML_BYTES_PER_CHAR, maxChars }), "w:t", "w:p", (text, styleId) => {
    const level = headingLevel(styleId);
    lines.push(level && text.trim() ? `\n${HEADING_OPEN}${level}${text}${HEADING_CLOSE}\n` : text);
  });
  return lines.join("\n").replace(/\n{3,}/g, "\n\n");
}

/** The text of each of a .pptx's slides, in their order, trimmed. */
export function pptxSlides(data: Uint8Array, key: string, maxChars: number): string[] {
  const buf = archive(data, key);
  const slides = zipEntries(buf, key)
    .map((e) => ({ e, n: Number(/^ppt\/slides\/slide(\d+)\.xml$/.exec(e.name)?.[1] ?? NaN) }))
    .filter((s) => Number.isInteger(s.n))
    .sort((a, b) => a.n - b.n);
  if (slides.length === 0) throw corrupt(key, "it has no slides");
  const budget = { bytes: maxChars * XML_BYTES_PER_CHAR, maxChars };
  return slides.map(({ e }) => {
    const lines: string[] = [];
    runs(readPart(buf, e, key, budget), "a:t", "a:p", (text) => lines.push(text));
    return lines.join("\n").trim();
  });
}

/** An object's bytes as the Buffer the zip reader reads. */
function archive(data: Uint8Array, key: string): Buffer {
  if (data.byteLength < 22) throw corrupt(key, "it is not a zip archive");
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
