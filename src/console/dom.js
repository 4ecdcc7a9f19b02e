// The console's shared pieces: building elements, status messages, confirmation, and the
// current view's lifecycle (a view still loading for an earlier navigation neither renders
// nor keeps its watch).
import { api, ApiError, enc } from "./api.js";

export const STATUSES = ["PENDING", "PROCESSING", "COMPLETED", "FAILED", "PARTIAL", "CANCELLED"];
export const TERMINAL = new Set(["COMPLETED", "FAILED", "PARTIAL", "CANCELLED"]);
export const TEMPLATES = ["text_embedding_index", "structured_rows", "noop"];
const main = document.getElementById("main");
const statusBox = document.getElementById("status");
/** Cleanup of the current view (its watch, its timers). */
let leave = () => {};
/** Bumped by every navigation. */
export let generation = 0;

/** A navigation begins: the previous view's watch and timers stop. */
export function navigate() {
  generation++;
  leave();
  leave = () => {};
  statusBox.replaceChildren();
  // Nothing of the previous view stays on screen while the next one loads.
  main.replaceChildren(h("p", { class: "help", "aria-busy": "true" }, "Loading…"));
}

export function render(gen, ...nodes) {
  if (gen === generation) main.replaceChildren(...nodes);
}

export function setLeave(gen, stop) {
  if (gen === generation) leave = stop;
  else stop();
}

/** Builds an element: h("a", { href }, "text", child…). */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false || v === null) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

export const short = (s) => String(s ?? "").replace(/^INGEST_STATUS_/, "");
export const time = (ms) => (Number(ms) ? new Date(Number(ms)).toLocaleString() : "");
export function duration(j) {
  const start = Number(j.startedAt);
  if (!start) return "";
  const ms = (Number(j.finishedAt) || Date.now()) - start;
  return ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`;
}
export function say(text, kind = "info") {
  statusBox.replaceChildren(h("p", { class: kind }, text));
}
export function fail(err) {
  say(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err.message ?? err), "error");
}
export function confirmAction(text) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  dlg.returnValue = "";
  dlg.showModal();
  return new Promise((resolve) => dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true }));
}

/** Whether the token may write in the bucket: a validate-only trigger is refused with 403 for a reader. */
export const writable = new Map();
export async function canWrite(bucket) {
  if (!writable.has(bucket)) {
    writable.set(
      bucket,
      api("POST", `/${enc(bucket)}/ingest`, { validate_only: true }).then(
        () => true,
        (err) => !(err instanceof ApiError && err.status === 403),
      ),
    );
  }
  return writable.get(bucket);
}

/** The tabs of a bucket's views. */
export function tabs(bucket, current) {
  const item = (id, label) => h("a", { href: `#/b/${enc(bucket)}/${id}`, "aria-current": current === id ? "page" : undefined }, label);
  return h("nav", { class: "tabs", "aria-label": `Bucket ${bucket}` }, item("jobs", "Jobs"), item("objects", "Objects"), item("config", "Pipelines & rules"), item("access", "Access"), item("sources", "Sources"), item("search", "Search"), item("charts", "Charts"));
}
