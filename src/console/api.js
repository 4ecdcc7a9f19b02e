// The console's only way to the server: the public REST routes with the signed-in bearer
// token (kept in sessionStorage, never in a URL), and the job watch as Server-Sent Events
// read through fetch (EventSource cannot send an Authorization header).

const KEY = "k3-console-token";

export const token = {
  get: () => sessionStorage.getItem(KEY) ?? "",
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An API error: the server's code and message, and the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls a REST route; resolves with the JSON answer or throws ApiError. */
export async function api(method, path, body) {
  const headers = { authorization: `Bearer ${token.get()}`, "x-k3-client": "console" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { code: "unknown", message: text };
  }
  if (!res.ok) throw new ApiError(res.status, json.code ?? "unknown", json.message ?? res.statusText);
  return json;
}

export const enc = encodeURIComponent;

/** A query string of the non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "" && v !== null) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/**
 * Watches a bucket's jobs: calls onMessage with each message (snapshot, synced, change),
 * reconnecting with the last event id after a drop. Returns a function that stops it.
 */
export function watchJobs(bucket, params, onMessage, onState) {
  const abort = new AbortController();
  let last = "";
  const run = async () => {
    for (let attempt = 0; !abort.signal.aborted; attempt++) {
      try {
        const headers = { authorization: `Bearer ${token.get()}`, accept: "text/event-stream" };
        if (last) headers["last-event-id"] = last;
        const res = await fetch(`/${enc(bucket)}/ingest/jobs:watch${query(params)}`, { headers, signal: abort.signal });
        if (!res.ok) throw new Error(`watch answered ${res.status}`);
        onState?.("live");
        attempt = 0;
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = "message";
            let data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) event = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
              else if (line.startsWith("id: ")) last = line.slice(4);
            }
            if (!data) continue;
            if (event === "error") throw new Error(JSON.parse(data).message);
            onMessage(JSON.parse(data));
          }
        }
      } catch (err) {
        if (abort.signal.aborted) return;
        onState?.(`reconnecting (${err.message})`);
      }
      await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
    }
  };
  void run();
  return () => abort.abort();
}
