/**
 * Embedders turn batches of texts into vectors. The local one needs no network: feature
 * hashing of lower-cased word tokens into `dimensions` buckets with a sign bit, then L2
 * normalisation — deterministic, so tests can predict it. The remote one speaks the
 * OpenAI-compatible `/v1/embeddings` API.
 */
import { PermanentError, TransientError } from "./failures";

/** Turns texts into vectors, one per text, in order. */
export interface Embedder {
  embed(texts: string[], signal: AbortSignal): Promise<number[][]>;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Writes the local embedding of `text` (`dims` components) into `out` at `offset`. */
export function hashEmbed(text: string, dims: number, out: Float32Array | number[], offset = 0): void {
  for (let i = 0; i < dims; i++) out[offset + i] = 0;
  for (const token of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) {
    const h = fnv1a(token);
    out[offset + (h % dims)] += h & 0x80000000 ? -1 : 1;
  }
  let sum = 0;
  for (let i = 0; i < dims; i++) sum += out[offset + i] * out[offset + i];
  const norm = Math.sqrt(sum);
  if (norm > 0) for (let i = 0; i < dims; i++) out[offset + i] /= norm;
}

/** The deterministic local embedder. */
export function createLocalEmbedder(dimensions: number): Embedder {
  return {
    async embed(texts, signal) {
      return texts.map((text) => {
        signal.throwIfAborted();
        const v = new Array<number>(dimensions);
        hashEmbed(text, dimensions, v);
        return v;
      });
    },
  };
}

/** Options of the OpenAI-compatible embedder. */
export interface RemoteEmbedderOptions {
  /** Base URL (`http://host:port` or `…/v1`) or the full `…/embeddings` URL. */
  url: string;
  apiKey?: string;
  model: string;
  timeoutMs: number;
}

function endpoint(url: string): string {
  const u = url.replace(/\/+$/, "");
  if (u.endsWith("/embeddings")) return u;
  if (u.endsWith("/v1")) return `${u}/embeddings`;
  return `${u}/v1/embeddings`;
}

/** An embedder that calls an OpenAI-compatible `/v1/embeddings` endpoint. */
export function createRemoteEmbedder(opts: RemoteEmbedderOptions): Embedder {
  const url = endpoint(opts.url);
  return {
    async embed(texts, signal) {
      const timeout = AbortSignal.timeout(opts.timeoutMs);
      let res: Response;
      try {
        res = await fetch(url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}),
          },
          body: JSON.stringify({ model: opts.model, input: texts }),
          signal: AbortSignal.any([signal, timeout]),
        });
      } catch (err) {
        signal.throwIfAborted();
        if (timeout.aborted) throw new TransientError("embed", `embedder did not answer within ${opts.timeoutMs} ms`);
        throw new TransientError("embed", `embedder unreachable at ${url}`, { cause: err });
      }
      const text = await res.text().catch(() => "");
      if (!res.ok) {
        const body = text.replace(/\s+/g, " ").slice(0, 200);
        const message = `embedder returned HTTP ${res.status}${body ? `: ${body}` : ""}`;
        if (res.status === 429 || res.status >= 500 || res.status === 408) throw new TransientError("embed", message);
        throw new PermanentError("embed", message);
      }
      let data: unknown;
      try {
        data = JSON.parse(text);
      } catch {
        throw new TransientError("embed", "embedder answered with a body that is not JSON");
      }
      const items = (data as { data?: Array<{ embedding?: unknown; index?: number }> }).data;
      if (!Array.isArray(items) || items.length !== texts.length) {
        throw new PermanentError("embed", `embedder returned ${Array.isArray(items) ? items.length : "no"} embeddings for ${texts.length} inputs`);
      }
      const out: number[][] = new Array(texts.length);
      items.forEach((item, i) => {
        const idx = typeof item.index === "number" ? item.index : i;
        if (!Array.isArray(item.embedding) || !item.embedding.every((x) => typeof x === "number")) {
          throw new PermanentError("embed", `embedder returned a malformed embedding at index ${idx}`);
        }
        out[idx] = item.embedding as number[];
      });
      return out;
    },
  };
}
