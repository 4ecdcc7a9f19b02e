/**
 * Rows for `structured_rows`, from an object's bytes: `.csv` / `.tsv` (header row, RFC 4180
 * quoting; commas, semicolons, tabs or pipes), `.xlsx` (a sheet, the first by default; office.ts),
 * `.jsonl` / `.ndjson` (one JSON object per line) and `.json` (an array of objects, or one
 * object). Linear in the input, capped in rows and columns, and nesting is checked. Each
 * row comes back as its JSON text: a JSON row as the object spells it.
 */
import { decodeText, parseJson, type ParseLimits } from "./extract";
import { xlsxRows } from "./office";
import { PermanentError } from "./failures";

/** Most columns a CSV header may have. */
export const MAX_CSV_COLUMNS = 10_000;

/** Column separators of CSV text, by the name structured_rows' `delimiter` option gives them. */
export const DELIMITERS: Readonly<Record<string, string>> = { comma: ",", semicolon: ";", tab: "\t", pipe: "|" };

/**
 * The separator of CSV text: the tab for a .tsv; otherwise the one its header line has most
 * of outside quotes (a semicolon for the exports of Excel set to a comma decimal mark),
 * commas when none is there or two tie.
 */
export function detectDelimiter(text: string, key: string): string {
  if (key.toLowerCase().endsWith(".tsv")) return "\t";
  const seen = new Map<string, number>();
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') quoted = !quoted;
    else if (quoted) continue;
    else if (c === "\n" || c === "\r") break;
    else if (c === "," || c === ";" || c === "\t" || c === "|") seen.set(c, (seen.get(c) ?? 0) + 1);
  }
  let best = ",";
  for (const [c, n] of seen) if (n > (seen.get(best) ?? 0)) best = c;
  return best;
}

/** Parses CSV text into records of fields (RFC 4180: quotes, doubled quotes, CRLF). */
export function parseCsv(text: string, key: string, maxRecords = Number.MAX_SAFE_INTEGER, delimiter = ","): string[][] {
  const records: string[][] = [];
  eachCsvRecord(text, key, maxRecords, (r) => records.push(r), delimiter);
  return records;
}

/** Calls `onRecord` with each record of CSV text as it is parsed, so no list of records is kept. */
export function eachCsvRecord(text: string, key: string, maxRecords: number, onRecord: (record: string[]) => void, delimiter = ","): void {
  let count = 0;
  let field = "";
  let record: string[] = [];
  let quoted = false;
  let line = 1;
  const endRecord = () => {
    record.push(field);
    if (!(record.length === 1 && record[0] === "")) {
      if (++count > maxRecords) {
        throw new PermanentError("parse", `CSV "${key}" has more than ${maxRecords - 1} rows; the limit is K3_MAX_ROWS`);
      }
      onRecord(record);
    }
    if (record.length > MAX_CSV_COLUMNS) {
      throw new PermanentError("parse", `CSV "${key}" line ${line} has ${record.length} fields; at most ${MAX_CSV_COLUMNS} columns are read`);
    }
    record = [];
    field = "";
  };
  // Runs of plain characters and quoted stretches are taken as slices, not a character at a time.
  const sep = delimiter.charCodeAt(0);
  const newlines = (from: number, to: number) => {
    let n = 0;
    for (let at = from; at < to; at++) if (text.charCodeAt(at) === 0x0a) n++;
    return n;
  };
  for (let i = 0; i < text.length; ) {
    if (quoted) {
      const q = text.indexOf('"', i);
      const end = q < 0 ? text.length : q;
      field += text.slice(i, end);
      line += newlines(i, end);
      if (q < 0) break;
      if (text.charCodeAt(q + 1) === 0x22) {
        field += '"';
        i = q + 2;
      } else {
        quoted = false;
        i = q + 1;
      }
      continue;
    }
    const c = text.charCodeAt(i);
    if (c === 0x22 && field === "") {
      quoted = true;
      i++;
    } else if (c === sep) {
      record.push(field);
      field = "";
      if (record.length > MAX_CSV_COLUMNS) {
        throw new PermanentError("parse", `CSV "${key}" line ${line} has more than ${MAX_CSV_COLUMNS} fields; at most ${MAX_CSV_COLUMNS} columns are read`);
      }
      i++;
    } else if (c === 0x0a || c === 0x0d) {
      i += c === 0x0d && text.charCodeAt(i + 1) === 0x0a ? 2 : 1;
      endRecord();
      line++;
    } else {
      let j = i + 1;
      for (let k = text.charCodeAt(j); j < text.length && k !== sep && k !== 0x0a && k !== 0x0d && k !== 0x22; k = text.charCodeAt(++j));
      field += text.slice(i, j);
      i = j;
    }
  }
  if (quoted) throw new PermanentError("parse", `CSV "${key}" has an unterminated quoted field (line ${line})`);
  if (field !== "" || record.length > 0) endRecord();
}

function tooMany(key: string, maxRows: number): PermanentError {
  return new PermanentError("parse", `"${key}" has more than ${maxRows} rows; the limit is ${maxRows} (K3_MAX_ROWS)`);
}

/** Each column name of a header row as a JSON key prefix (`"name":`); an empty or repeated name becomes column_N. */
function headerPrefixes(header: string[]): string[] {
  const seen = new Set<string>();
  return header.map((h, i) => {
    let name = h.trim();
    if (name === "" || seen.has(name)) name = `column_${i + 1}`;
    seen.add(name);
    return `${JSON.stringify(name)}:`;
  });
}

/** A row's JSON text from its header's prefixes and its values ('' for a value the row leaves out). */
function rowJson(prefixes: string[], values: string[]): string {
  let json = "{";
  for (let i = 0; i < prefixes.length; i++) json += (i ? "," : "") + prefixes[i] + JSON.stringify(values[i] ?? "");
  return json + "}";
}

/**
 * Rows of a spreadsheet's sheet: its first row of values is the header, and a row
 * may leave cells out (they are ''), as spreadsheets do; a value past the header's last
 * column is kept under column_N.
 */
function sheetRows(records: string[][], key: string, maxRows: number): string[] {
  if (records.length > maxRows + 1) throw tooMany(key, maxRows);
  const [header = [], ...rest] = records;
  const width = rest.reduce((w, r) => Math.max(w, r.length), header.length);
  const prefixes = headerPrefixes([...header, ...Array.from({ length: width - header.length }, () => "")]);
  return rest.map((r) => rowJson(prefixes, r));
}

function csvRows(text: string, key: string, maxRows: number, delimiter: string): string[] {
  const rows: string[] = [];
  let prefixes: string[] | undefined;
  eachCsvRecord(text, key, maxRows + 1, (r) => {
    if (!prefixes) {
      prefixes = headerPrefixes(r);
      return;
    }
    if (r.length !== prefixes.length) {
      throw new PermanentError("parse", `CSV "${key}" record ${rows.length + 2} has ${r.length} fields; the header has ${prefixes.length}`);
    }
    rows.push(rowJson(prefixes, r));
  }, delimiter);
  return rows;
}

/**
 * A row's JSON text: its text in the object, checked to be a JSON object. Not re-serialised
 * from what JSON.parse made of it, which rounds every number to a double (an id of
 * 12345678901234567890 became 12345678901234567000); jsonb keeps numbers exactly.
 */
function objectRow(value: unknown, source: string, what: string): string {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new PermanentError("parse", `${what} is not a JSON object`);
  }
  return source;
}

/** The text of each element of a JSON array (one JSON.parse has read, so well-formed), in one pass. */
function elementTexts(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes what follows
      else if (c === 0x22) inString = false;
      continue;
    }
    if (depth === 1 && start < 0 && c > 0x20 && c !== 0x2c && c !== 0x5d) start = i;
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) depth++;
    else if (c === 0x5d || c === 0x7d) {
      if (--depth === 0 && start >= 0) out.push(text.slice(start, i).trimEnd());
    } else if (c === 0x2c && depth === 1) {
      out.push(text.slice(start, i).trimEnd());
      start = -1;
    }
  }
  return out;
}

function jsonlRows(text: string, key: string, maxRows: number): string[] {
  const rows: string[] = [];
  let start = 0;
  for (let line = 1; start <= text.length; line++) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const raw = text.slice(start, end).trim();
    start = end + 1;
    if (raw === "") continue;
    if (rows.length >= maxRows) throw tooMany(key, maxRows);
    rows.push(objectRow(parseJson(raw, `"${key}" line ${line}`, "parse"), raw, `"${key}" line ${line}`));
  }
  return rows;
}

function jsonRows(text: string, key: string, maxRows: number): string[] {
  const value = parseJson(text, `"${key}"`, "parse");
  const items = Array.isArray(value) ? value : [value];
  if (items.length > maxRows) throw tooMany(key, maxRows);
  const texts = Array.isArray(value) ? elementTexts(text) : [text.trim()];
  if (texts.length !== items.length) throw new Error(`"${key}": ${texts.length} element texts for ${items.length} elements`);
  return items.map((r, i) => objectRow(r, texts[i], `"${key}" element ${i}`));
}

/**
 * How structured_rows' options read an object: a CSV's separator by name (DELIMITERS) or
 * "auto", a workbook's sheet by name ("" for the first), and how text's bytes are text
 * ("auto" or an encoding's label, decodeText).
 */
export interface RowsOptions {
  delimiter: string;
  sheet: string;
  encoding: string;
}

/** Parses the bytes of an object in `format` (csv, jsonl, json, xlsx) into rows as JSON text. */
export function parseRows(data: Uint8Array, format: string, key: string, limits: ParseLimits, how: RowsOptions = { delimiter: "auto", sheet: "", encoding: "auto" }): string[] {
  if (format === "xlsx") return sheetRows(xlsxRows(data, key, limits.maxTextChars, MAX_CSV_COLUMNS, how.sheet), key, limits.maxRows).map(storableJson);
  if (data.length > limits.maxTextChars * 4) {
    throw new PermanentError("parse", `"${key}" is larger than ${limits.maxTextChars * 4} bytes of text; the limit is K3_MAX_TEXT_CHARS characters`);
  }
  const text = decodeText(data, key, "read", how.encoding);
  if (text.length > limits.maxTextChars) {
    throw new PermanentError("parse", `"${key}" holds ${text.length} characters; the limit is ${limits.maxTextChars} (K3_MAX_TEXT_CHARS)`);
  }
  const rows = format === "csv" ? csvRows(text, key, limits.maxRows, DELIMITERS[how.delimiter] ?? detectDelimiter(text, key)) : format === "jsonl" ? jsonlRows(text, key, limits.maxRows) : jsonRows(text, key, limits.maxRows);
  return rows.map(storableJson);
}

/**
 * An escape (one not itself escaped: after an even run of backslashes) of NUL, of a surrogate
 * pair's first half with the second half's escape after it when there is one, or of a second half.
 */
const SURROGATE_OR_NUL_ESCAPE = /(?<!\\)((?:\\\\)*)\\u(0000|d[89ab][0-9a-f]{2}(?:\\ud[c-f][0-9a-f]{2})?|d[c-f][0-9a-f]{2})/gi;

/** A row's JSON text as jsonb takes it: an escaped NUL or half a pair becomes U+FFFD (jsonb refuses both; each attempt failed on them). */
export function storableJson(json: string): string {
  if (!json.includes("\\u")) return json;
  return json.replace(SURROGATE_OR_NUL_ESCAPE, (whole, slashes: string, code: string) => (code.length === 10 ? whole : `${slashes}\\ufffd`));
}

