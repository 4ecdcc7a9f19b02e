/**
 * Text extraction for the embedding pipeline, from the object's bytes, by extension:
 * .txt/.md (UTF-8 text, or UTF-16 after its byte-order mark), .html (tags stripped, block
 * elements as line breaks, entities decoded), .json (one `path: value` line per leaf), .csv
 * (the text as is), .pdf (pdfjs; pages separated by a blank line), and .docx / .pptx
 * (office.ts; a presentation's slides as pages). Line endings become "\n" and the result is
 * trimmed. Every step is linear in the input and bounded: no regex that can backtrack
 * over the document, no recursion over its nesting, and a cap on the characters kept.
 * Unsupported, corrupt or oversized inputs are PermanentErrors. Large inputs run in the
 * sandbox process (sandbox.ts), small ones inline.
 */
import { extname } from "node:path";
import { decodeIn, textEncodingOf } from "../domain/text-encoding";
import { PermanentError } from "./failures";
import { docxText, pptxSlides } from "./office";

/** Extensions the embedding pipeline reads. */
export const TEXT_EXTENSIONS = [".txt", ".md", ".markdown", ".html", ".htm", ".json", ".csv", ".tsv", ".pdf", ".docx", ".pptx"];

/** Formats whose bytes are not their text (no text limit bounds how many are read), extracted in the sandbox process. */
export const PACKED_EXTENSIONS: ReadonlySet<string> = new Set([".pdf", ".docx", ".pptx", ".xlsx"]);

/** Deepest JSON nesting read (objects and arrays). */
export const MAX_JSON_DEPTH = 256;

/** Limits of extraction and parsing. */
export interface ParseLimits {
  /** Most characters of text kept from one object. */
  maxTextChars: number;
  /** Most rows one object may yield. */
  maxRows: number;
}

/** The share of NUL characters past which bytes are not text (binary, or UTF-16 without its mark). */
const MAX_NUL_SHARE = 0.1;

/**
 * An object's text. With `encoding` "auto": UTF-16 when its bytes start with a UTF-16
 * byte-order mark (as Windows tools save "Unicode" text), UTF-8 otherwise (its mark
 * dropped); otherwise the encoding that label names (a pipeline's `encoding` option).
 * Bytes that are not text in it fail permanently. PostgreSQL's text holds no NUL
 * character: a few, as the padding of a log cut short, are dropped; more than a tenth of
 * the characters and the object is not text, which fails permanently saying so (before,
 * each attempt failed in the database).
 */
export function decodeText(buf: Uint8Array, key: string, stage = "extract", label = "auto"): string {
  const named = label === "auto" ? undefined : textEncodingOf(label);
  if (label !== "auto" && !named) throw new PermanentError(stage, `the pipeline's encoding option "${label}" names no text encoding`);
  const encoding = named ?? (buf[0] === 0xff && buf[1] === 0xfe ? "utf-16le" : buf[0] === 0xfe && buf[1] === 0xff ? "utf-16be" : "utf-8");
  let text: string;
  try {
    text = decodeIn(encoding, buf);
  } catch {
    if (named) throw new PermanentError(stage, `object "${key}" is not valid ${encoding} text (the pipeline's encoding option)`);
    if (encoding !== "utf-8") throw new PermanentError(stage, `object "${key}" starts with a UTF-16 byte-order mark but is not valid ${encoding.toUpperCase()} text`);
    const at = firstBadByte(buf);
    throw new PermanentError(
      stage,
      `object "${key}" is not valid UTF-8 text: byte ${at} (0x${buf[at].toString(16).toUpperCase().padStart(2, "0")}) starts no UTF-8 character there; text is read as UTF-8, or as UTF-16 after its byte-order mark: name its encoding in the pipeline's encoding option (windows-1252, for a Latin-1 export), or convert it first (iconv -f WINDOWS-1252 -t UTF-8)`,
    );
  }
  if (!text.includes("\0")) return text;
  let nuls = 0;
  for (let at = text.indexOf("\0"); at >= 0; at = text.indexOf("\0", at + 1)) nuls++;
  if (nuls > text.length * MAX_NUL_SHARE) {
    throw new PermanentError(
      stage,
      `object "${key}" is not text: ${nuls} of its ${text.length} characters are NUL (U+0000); it may be binary, or UTF-16 without a byte-order mark (text is read as UTF-8, or UTF-16 after its mark)`,
    );
  }
  return text.replaceAll("\0", "");
}

/** The offset of the first byte that starts no UTF-8 character where it stands (bytes known not to be UTF-8). */
function firstBadByte(buf: Uint8Array): number {
  const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(buf);
  let at = 0; // the byte offset of text[done]
  let done = 0;
  for (let i = text.indexOf("\uFFFD"); i >= 0; i = text.indexOf("\uFFFD", i + 1)) {
    at += Buffer.byteLength(text.slice(done, i));
    done = i;
    if (buf[at] !== 0xef || buf[at + 1] !== 0xbf || buf[at + 2] !== 0xbd) return at; // not a U+FFFD the text spells itself
  }
  return 0;
}

/** Text PostgreSQL stores as it is: a NUL (from a JSON escape, a PDF's unmapped glyph) or half a surrogate pair becomes U+FFFD, one character for one. */
export function storableText(text: string): string {
  return text.toWellFormed().replaceAll("\0", "\uFFFD");
}

const ENTITIES: Readonly<Record<string, string>> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: " " };
const DROP_WITH_CONTENT = new Set(["script", "style", "head", "template"]);
const BREAKS = new Set(["br", "/p", "/div", "/li", "/h1", "/h2", "/h3", "/h4", "/h5", "/h6", "/tr", "/table", "/section", "/article", "/blockquote", "/pre"]);

/** Marks around a heading's text in htmlToText's output (control characters no HTML text keeps). */
export const HEADING_OPEN = "\u0001";
export const HEADING_CLOSE = "\u0002";

/** Text with the heading marks' characters made spaces, so only the extractor's own marks are marks. */
export const withoutMarks = (text: string): string => text.replace(/[\u0001\u0002]/g, " ");
const HEADING_TAG = /^h[1-6]$/;

/**
 * Plain text of an HTML document, in one pass (every search moves forward). With `marks`,
 * each h1–h6 heading's text is wrapped in HEADING_OPEN + level digit … HEADING_CLOSE, for
 * takeHeadingMarks to turn into headings.
 */
export function htmlToText(html: string, marks = false): string {
  if (marks) html = withoutMarks(html);
  const lower = html.toLowerCase();
  const out: string[] = [];
  let i = 0;
  while (i < html.length) {
    const lt = html.indexOf("<", i);
    if (lt < 0) {
      out.push(html.slice(i));
      break;
    }
    out.push(html.slice(i, lt));
    if (html.startsWith("<!--", lt)) {
      const end = html.indexOf("-->", lt + 4);
      if (end < 0) break; // an unterminated comment hides the rest
      i = end + 3;
      continue;
    }
    const gt = html.indexOf(">", lt + 1);
    if (gt < 0) {
      out.push(html.slice(lt)); // no tag can close any more: the rest is text
      break;
    }
    const name = /^\/?[a-z0-9]*/.exec(lower.slice(lt + 1, Math.min(gt, lt + 20)))?.[0] ?? "";
    if (DROP_WITH_CONTENT.has(name)) {
      const close = lower.indexOf(`</${name}`, gt + 1);
      if (close < 0) break;
      const closeEnd = html.indexOf(">", close);
      i = closeEnd < 0 ? html.length : closeEnd + 1;
      continue;
    }
    if (BREAKS.has(name)) out.push("\n");
    if (marks && HEADING_TAG.test(name)) out.push(`\n${HEADING_OPEN}${name[1]}`);
    if (marks && name[0] === "/" && HEADING_TAG.test(name.slice(1))) out.splice(out.length - 1, 0, HEADING_CLOSE);
    i = gt + 1;
  }
  return decodeEntities(out.join(""))
    .replace(/[ \t\f\v\u00a0]+/g, " ")
    .replace(/ ?\n ?/g, "\n")
    .replace(/\n{3,}/g, "\n\n");
}

/** Character references and the named entities of ENTITIES, decoded (HTML text, Office XML); U+0001–U+0002, the heading marks, become spaces. */
export function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]{1,6}|#\d{1,7}|[a-z]{1,10});/gi, (m, e: string) => {
    if (e[0] === "#") {
      const code = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return code > 2 && code <= 0x10ffff ? String.fromCodePoint(code) : code > 0 && code <= 2 ? " " : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

/** Parses JSON; a syntax error or nesting deeper than MAX_JSON_DEPTH is a permanent failure. */
export function parseJson(text: string, what: string, stage: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    if (err instanceof RangeError) throw new PermanentError(stage, `${what} is nested too deeply to read`);
    throw new PermanentError(stage, `${what} is not valid JSON: ${(err as Error).message}`);
  }
  checkDepth(value, what, stage);
  return value;
}

/** Throws a PermanentError when the value nests deeper than MAX_JSON_DEPTH (checked without recursion). */
export function checkDepth(value: unknown, what: string, stage: string): void {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== "object") continue;
    if (depth >= MAX_JSON_DEPTH) {
      throw new PermanentError(stage, `${what} nests deeper than ${MAX_JSON_DEPTH} levels; flatten it or split it`);
    }
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === "object") stack.push([child, depth + 1]);
    }
  }
}

/** One `path: value` line per leaf of a JSON document, in document order, without recursion. */
export function jsonToText(value: unknown): string[] {
  const lines: string[] = [];
  const stack: Array<[unknown, string]> = [[value, ""]];
  while (stack.length > 0) {
    const [v, path] = stack.pop() as [unknown, string];
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
    } else if (v !== null && typeof v === "object") {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) stack.push([entries[i][1], path ? `${path}.${entries[i][0]}` : entries[i][0]]);
    } else if (v !== null) {
      lines.push(path ? `${path}: ${String(v)}` : String(v));
    }
  }
  return lines;
}

/** Pages' texts (each trimmed) as one text, a blank line between them, and where each starts in code points (what chunk offsets count). */
function joinPages(pages: string[]): { text: string; pageStarts: number[] } {
  const pageStarts: number[] = [];
  let at = 0;
  for (const p of pages) {
    pageStarts.push(at);
    at += codePoints(p) + 2;
  }
  return { text: pages.join("\n\n"), pageStarts };
}

/** The text of each page of a PDF, through pdfjs (ESM-only, hence the dynamic import). */
async function pdfPages(data: Uint8Array, key: string): Promise<string[]> {
  const { getDocument } = (await import("pdfjs-dist/legacy/build/pdf.mjs")) as typeof import("pdfjs-dist");
  let doc;
  try {
    doc = await getDocument({ data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), isEvalSupported: false, useWasm: false, disableFontFace: true, useSystemFonts: false, verbosity: 0 }).promise;
  } catch (err) {
    throw new PermanentError("extract", `PDF "${key}" is corrupt or unreadable: ${(err as Error).name}: ${(err as Error).message}`);
  }
  const pages: string[] = [];
  for (let i = 1; i <= doc.numPages; i++) {
    const page = await doc.getPage(i);
    const content = await page.getTextContent();
    let text = "";
    for (const item of content.items) {
      if ("str" in item) text += item.str + (item.hasEOL ? "\n" : "");
    }
    pages.push(text.replace(/\r\n?/g, "\n").trim());
    page.cleanup();
  }
  await doc.destroy();
  return pages;
}

/** The number of code points of a string. */
function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n--;
      i++;
    }
  }
  return n;
}

/** A heading's first 200 UTF-16 units, one fewer rather than half of a character. */
function headingTitle(title: string): string {
  if (title.length <= 200) return title;
  const c = title.charCodeAt(199);
  return title.slice(0, c >= 0xd800 && c <= 0xdbff ? 199 : 200);
}

/** A document's text and what is known of its structure (offsets in code points). */
export interface ExtractedDocument {
  text: string;
  /** PDF: where each page starts. */
  pageStarts: number[];
  /** Markdown and HTML: each heading, where it starts, and its level. */
  headings: Array<{ at: number; level: number; title: string }>;
}

/** The headings of Markdown text (ATX `#` lines outside code fences). */
function markdownHeadings(text: string): ExtractedDocument["headings"] {
  const out: ExtractedDocument["headings"] = [];
  let at = 0;
  let fenced = false;
  for (const line of text.split("\n")) {
    if (/^\s{0,3}(```|~~~)/.test(line)) fenced = !fenced;
    const m = fenced ? null : /^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$/.exec(line);
    if (m && m[2]) out.push({ at, level: m[1].length, title: headingTitle(m[2]) });
    at += codePoints(line) + 1;
  }
  return out;
}

/**
 * Takes the heading marks of htmlToText(…, true) out of its text: the text without them,
 * and each heading with where it starts (in code points), its level and its title. A
 * heading opened and never closed ends at the next heading or the end.
 */
export function takeHeadingMarks(marked: string): { text: string; headings: ExtractedDocument["headings"] } {
  const headings: ExtractedDocument["headings"] = [];
  const parts: string[] = [];
  let at = 0;
  let from = 0;
  let open: { at: number; level: number; start: number } | undefined;
  const close = (end: number) => {
    if (!open) return;
    const title = marked.slice(open.start, end).replace(/\s+/g, " ").trim();
    if (title) headings.push({ at: open.at, level: open.level, title: headingTitle(title) });
    open = undefined;
  };
  for (let i = 0; i < marked.length; i++) {
    const c = marked[i];
    if (c !== HEADING_OPEN && c !== HEADING_CLOSE) continue;
    const piece = marked.slice(from, i);
    parts.push(piece);
    at += codePoints(piece);
    if (c === HEADING_OPEN) {
      close(i);
      open = { at, level: Number(marked[i + 1]) || 1, start: i + 2 };
      from = i + 2;
      i++;
    } else {
      close(i);
      from = i + 1;
    }
  }
  close(marked.length);
  parts.push(marked.slice(from));
  return { text: parts.join(""), headings };
}

/** Checks that the extension is one the embedding pipeline reads. */
export function checkTextExtension(key: string): string {
  const ext = extname(key).toLowerCase();
  if (!TEXT_EXTENSIONS.includes(ext)) {
    throw new PermanentError(
      "extract",
      `unsupported file type "${ext || "(none)"}" for "${key}"; text_embedding_index reads ${TEXT_EXTENSIONS.join(", ")}`,
    );
  }
  return ext;
}

/** Extracts the text of an object from its bytes (its key decides the format). */
export async function extractText(data: Uint8Array, key: string, limits: ParseLimits): Promise<string> {
  return (await extractDocument(data, key, limits)).text;
}

/**
 * Extracts an object's text with its pages (PDF) or headings (Markdown, HTML); `encoding`
 * is how its bytes are text (decodeText), for the formats that are text (not PDF or Office).
 */
export async function extractDocument(data: Uint8Array, key: string, limits: ParseLimits, encoding = "auto"): Promise<ExtractedDocument> {
  const ext = checkTextExtension(key);
  // UTF-8 never has more characters than bytes; past four bytes a character the text is too long for sure.
  if (!PACKED_EXTENSIONS.has(ext) && data.length > limits.maxTextChars * 4) {
    throw new PermanentError("extract", `object "${key}" holds more than ${limits.maxTextChars} characters of text; the limit is K3_MAX_TEXT_CHARS`);
  }
  let text: string;
  let pageStarts: number[] = [];
  let paged = false;
  if (ext === ".pdf" || ext === ".pptx") {
    ({ text, pageStarts } = joinPages(ext === ".pdf" ? await pdfPages(data, key) : pptxSlides(data, key, limits.maxTextChars)));
    paged = true;
  } else if (ext === ".docx") {
    text = docxText(data, key, limits.maxTextChars);
  } else {
    const raw = decodeText(data, key, "extract", encoding);
    if (ext === ".html" || ext === ".htm") text = htmlToText(raw, true);
    else if (ext === ".json") text = jsonToText(parseJson(raw, `object "${key}"`, "extract")).join("\n");
    else text = raw;
  }
  if (text.length > limits.maxTextChars) {
    throw new PermanentError("extract", `object "${key}" holds ${text.length} characters of text; the limit is ${limits.maxTextChars} (K3_MAX_TEXT_CHARS)`);
  }
  text = storableText(text);
  if (paged) {
    // Pages are trimmed already; only leading empty pages move the start.
    const lead = codePoints(text) - codePoints(text.trimStart());
    return { text: text.trim(), pageStarts: pageStarts.map((p) => Math.max(0, p - lead)), headings: [] };
  }
  text = text.replace(/\r\n?/g, "\n").trim();
  if (ext === ".html" || ext === ".htm" || ext === ".docx") return { pageStarts, ...takeHeadingMarks(text) };
  return { text, pageStarts, headings: ext === ".md" || ext === ".markdown" ? markdownHeadings(text) : [] };
}
