/**
 * `k3-ingest search "query" -b BUCKET [--top-k N] [--hybrid|--vector] [--collection NAME]`:
 * VectorService.Search over Connect, printing key, page, score and a snippet of each hit
 * (or the API's JSON with -o json).
 */
import { toJson } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { SearchMode, VectorService } from "../../gen/dodil/k3/vector/v1/vector_pb";

type Out = { write(s: string): unknown };

/** Runs a search; resolves with the exit code. */
export async function searchCommand(
  c: { vector: Client<typeof VectorService>; bucket: string; query: string; topK?: string; hybrid?: boolean; vectorOnly?: boolean; collection?: string; asJson: boolean; out: Out; table(rows: string[][]): string },
  usage: (message: string) => Error,
): Promise<number> {
  if (!c.query) throw usage('a query is required: k3-ingest search "words" -b BUCKET');
  if (c.hybrid && c.vectorOnly) throw usage("use --hybrid or --vector, not both");
  const topK = c.topK === undefined ? 10 : Number(c.topK);
  if (!Number.isInteger(topK) || topK < 1 || topK > 1000) throw usage(`--top-k ${c.topK} must be a whole number from 1 to 1000`);
  const res = await c.vector.search({
    bucket: c.bucket,
    query: { case: "text", value: c.query },
    topK,
    includeContent: true,
    collectionName: c.collection ?? "",
    searchMode: c.hybrid ? SearchMode.HYBRID : c.vectorOnly ? SearchMode.VECTOR : SearchMode.AUTO,
  });
  if (c.asJson) {
    c.out.write(JSON.stringify(toJson(VectorService.method.search.output, res), null, 2) + "\n");
    return 0;
  }
  const snippet = (t: string) => t.replace(/\s+/g, " ").trim().slice(0, 80);
  c.out.write(c.table([["KEY", "PAGE", "SCORE", "SNIPPET"], ...res.results.map((r) => [r.object?.key ?? "", r.page ? String(r.page) : "-", r.score.toFixed(4), snippet(r.content)])]));
  return 0;
}
