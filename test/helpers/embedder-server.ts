/**
 * A fake OpenAI-compatible `/v1/embeddings` server on a loopback port, whose behaviour a
 * test sets: fail the next calls with a status, answer slowly, or answer normally with
 * predictable vectors ([characters, words, 1, 0, …] of `dimensions` components).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** A running fake embedder. */
export interface EmbedderServer {
  url: string;
  /** Requests received so far, answered or not. */
  received(): number;
  /** Calls answered so far, with their inputs. */
  calls: Array<{ model: string; input: string[]; status: number }>;
  /** The next `count` calls answer `status` with `body`. */
  failNext(count: number, status: number, body?: string): void;
  /** Calls whose inputs contain `needle` always answer `status`. */
  failWhenInputContains(needle: string, status: number): void;
  /** Every call waits this long before answering. */
  setDelay(ms: number): void;
  close(): Promise<void>;
}

/** Starts the fake embedder. */
export async function startEmbedderServer(dimensions = 8): Promise<EmbedderServer> {
  let failures: Array<{ status: number; body: string }> = [];
  let needle: { text: string; status: number } | undefined;
  let delayMs = 0;
  const timers = new Set<NodeJS.Timeout>();
  const calls: EmbedderServer["calls"] = [];
  let received = 0;
  const server: Server = createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => (raw += String(d)));
    req.on("end", () => {
      const body = JSON.parse(raw) as { model: string; input: string[] };
      received++;
      const answer = () => {
        if (res.destroyed) return;
        const failure = failures.shift() ?? (needle && body.input.some((t) => t.includes(needle!.text)) ? { status: needle.status, body: "rejected input" } : undefined);
        calls.push({ model: body.model, input: body.input, status: failure?.status ?? 200 });
        if (failure) {
          res.writeHead(failure.status, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { message: failure.body } }));
          return;
        }
        const data = body.input.map((t, index) => {
          const v = new Array<number>(dimensions).fill(0);
          v[0] = t.length;
          v[1] = t.split(/\s+/).filter(Boolean).length;
          v[2] = 1;
          return { object: "embedding", index, embedding: v };
        });
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ object: "list", data, model: body.model }));
      };
      if (delayMs > 0) {
        const t = setTimeout(() => {
          timers.delete(t);
          answer();
        }, delayMs);
        timers.add(t);
      } else {
        answer();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    received: () => received,
    failNext(count, status, body = "temporarily unavailable") {
      failures = Array.from({ length: count }, () => ({ status, body }));
    },
    failWhenInputContains(text, status) {
      needle = { text, status };
    },
    setDelay(ms) {
      delayMs = ms;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
