// Extracts the text of a PDF in a worker thread, so that a hostile or huge PDF cannot
// block the event loop or take the server's memory with it (the parent terminates this
// thread on timeout or cancellation). Plain ESM because pdfjs-dist is ESM-only.
import { readFile } from "node:fs/promises";
import { parentPort, workerData } from "node:worker_threads";

try {
  const { getDocument } = await import("pdfjs-dist/legacy/build/pdf.mjs");
  const data = new Uint8Array(await readFile(workerData.path));
  const doc = await getDocument({
    data,
    isEvalSupported: false,
    disableFontFace: true,
    useSystemFonts: false,
    verbosity: 0,
  }).promise;
  const pages = [];
  for (let i = 1; i <= doc.numPages; i++) {
    const page = await doc.getPage(i);
    const content = await page.getTextContent();
    let text = "";
    for (const item of content.items) {
      if ("str" in item) text += item.str + (item.hasEOL ? "\n" : "");
    }
    pages.push(text.trim());
    page.cleanup();
  }
  await doc.destroy();
  parentPort.postMessage({ ok: true, pages });
} catch (err) {
  parentPort.postMessage({ ok: false, name: err?.name ?? "Error", message: String(err?.message ?? err) });
}
