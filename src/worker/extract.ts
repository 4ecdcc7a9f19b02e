/**
 * Text extraction for the embedding pipeline, by extension: .txt/.md (UTF-8 text),
 * .html (tags stripped, block elements as line breaks, entities decoded), .json (one
 * `path: value` line per leaf), .csv (the text as is) and .pdf (pdfjs in a worker
 * thread; pages separated by a blank line). Line endings become "\n" and the result is
 * trimmed. Unsupported or corrupt files are PermanentErrors.
 */
import { readFile, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { Worker } from "node:worker_threads";
import { PermanentError, TransientError } from "./failures";

/** Extensions the embedding pipeline reads. */
export const TEXT_EXTENSIONS = [".txt", ".md", ".markdown", ".html", ".htm", ".json", ".csv", ".pdf"];

const PDF_WORKER = join(__dirname, "pdf-text.worker.mjs");

/** Limits of extraction. */
export interface ExtractLimits {
  maxBytes: number;
  pdfTimeoutMs: number;
}

function decodeUtf8(buf: Buffer, key: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(buf);
  } catch {
    throw new PermanentError("extract", `object "${key}" is not valid UTF-8 text`);
  }
}

const ENTITIES: Readonly<Record<string, string>> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: " " };

/** Plain text of an HTML document. */
export function htmlToText(html: string): string {
  return html
    .replace(/<!--[\s\S]*?-->/g, "")
    .replace(/<(script|style|head|template)\b[\s\S]*?<\/\1\s*>/gi, "")
    .replace(/<(br|\/p|\/div|\/li|\/h[1-6]|\/tr|\/table|\/section|\/article|\/blockquote|\/pre)\b[^>]*>/gi, "\n")
    .replace(/<[^>]*>/g, "")
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
      if (e[0] === "#") {
        const code = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
      }
      return ENTITIES[e.toLowerCase()] ?? m;
    })
    .replace(/[ \t\f\v\u00a0]+/g, " ")
    .replace(/ *\n */g, "\n")
    .replace(/\n{3,}/g, "\n\n");
}

/** One `path: value` line per leaf of a JSON document. */
export function jsonToText(value: unknown, path = ""): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => jsonToText(v, `${path}[${i}]`));
  if (value !== null && typeof value === "object") {
    return Object.entries(value).flatMap(([k, v]) => jsonToText(v, path ? `${path}.${k}` : k));
  }
  if (value === null) return [];
  return [path ? `${path}: ${String(value)}` : String(value)];
}

function pdfText(path: string, key: string, signal: AbortSignal, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(PDF_WORKER, { workerData: { path }, resourceLimits: { maxOldGenerationSizeMb: 512 } });
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      void worker.terminate();
      fn();
    };
    const onAbort = () => finish(() => reject(signal.reason));
    const timer = setTimeout(
      () => finish(() => reject(new PermanentError("extract", `PDF "${key}" took longer than ${timeoutMs} ms to read`))),
      timeoutMs,
    );
    signal.addEventListener("abort", onAbort, { once: true });
    worker.once("message", (m: { ok: true; pages: string[] } | { ok: false; name: string; message: string }) =>
      finish(() =>
        m.ok
          ? resolve(m.pages.join("\n\n"))
          : reject(new PermanentError("extract", `PDF "${key}" is corrupt or unreadable: ${m.name}: ${m.message}`)),
      ),
    );
    worker.once("error", (err) =>
      finish(() => reject(new TransientError("extract", `PDF reader crashed on "${key}"`, { cause: err }))),
    );
    worker.once("exit", (code) =>
      finish(() => reject(new PermanentError("extract", `PDF reader stopped (exit ${code}) on "${key}"; the file may be too large`))),
    );
  });
}

/** Extracts the text of the object at `path` (its key decides the format). */
export async function extractText(path: string, key: string, signal: AbortSignal, limits: ExtractLimits): Promise<string> {
  const ext = extname(key).toLowerCase();
  if (!TEXT_EXTENSIONS.includes(ext)) {
    throw new PermanentError(
      "extract",
      `unsupported file type "${ext || "(none)"}" for "${key}"; text_embedding_index reads ${TEXT_EXTENSIONS.join(", ")}`,
    );
  }
  const st = await stat(path);
  if (st.size > limits.maxBytes) {
    throw new PermanentError("extract", `object "${key}" is ${st.size} bytes; the limit is ${limits.maxBytes}`);
  }
  let text: string;
  if (ext === ".pdf") {
    text = await pdfText(path, key, signal, limits.pdfTimeoutMs);
  } else {
    const raw = decodeUtf8(await readFile(path, { signal }), key);
    if (ext === ".html" || ext === ".htm") {
      text = htmlToText(raw);
    } else if (ext === ".json") {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch (err) {
        throw new PermanentError("extract", `object "${key}" is not valid JSON: ${(err as Error).message}`);
      }
      text = jsonToText(parsed).join("\n");
    } else {
      text = raw;
    }
  }
  return text.replace(/\r\n?/g, "\n").trim();
}
