/**
 * Scenario 13: structured_rows' parsing (rows.ts parseRows, what a worker runs on an
 * object's bytes) of 200,000 rows as JSON Lines, a JSON array and CSV, in this process,
 * against the least any reader of the same bytes does: JSON.parse of each line (JSONL),
 * one JSON.parse (array), a split of each line at its commas (CSV). Rows are written as the
 * object spells them (the eighteenth session), so a row is read once and never re-serialised.
 */
import { parseRows } from "../../src/worker/rows";

type Row = { scenario: string; metric: string; value: string; baseline?: string; ratio?: string };

const N = 200_000;
const LIMITS = { maxTextChars: 64_000_000, maxRows: 1_000_000 };

/** Rows a second of `f` over `passes` passes, after one to warm up. */
function rate(f: () => unknown, passes = 3): number {
  f();
  const t = performance.now();
  for (let i = 0; i < passes; i++) f();
  return (N * passes) / ((performance.now() - t) / 1000);
}

export async function scenario13(log: (s: string) => void): Promise<{ rows: Row[]; results: Record<string, number> }> {
  log(`scenario 13: structured_rows parsing of ${N.toLocaleString("en")} rows`);
  const item = (i: number) => ({ id: 9_007_199_254_740_000 + i, name: `item ${i}`, price: (i % 1000) / 10, tags: ["a", "b"], ok: i % 2 === 0 });
  const lines = Array.from({ length: N }, (_, i) => JSON.stringify(item(i)));
  const jsonl = Buffer.from(lines.join("\n"));
  const array = Buffer.from(`[${lines.join(",\n")}]`);
  const csv = Buffer.from("id,name,price,ok\n" + Array.from({ length: N }, (_, i) => `${i},item ${i},${i / 10},${i % 2}`).join("\n"));
  const cases: Array<[string, Buffer, string, () => unknown, string]> = [
    ["JSON Lines", jsonl, "jsonl", () => jsonl.toString().split("\n").map((l) => JSON.parse(l)), "JSON.parse of each line"],
    ["a JSON array", array, "json", () => JSON.parse(array.toString()), "one JSON.parse"],
    ["CSV", csv, "csv", () => csv.toString().split("\n").map((l) => l.split(",")), "a split of each line at commas"],
  ];
  const rows: Row[] = [];
  const results: Record<string, number> = {};
  for (const [name, bytes, format, baseline, what] of cases) {
    const ours = rate(() => parseRows(bytes, format, `bench.${format}`, LIMITS));
    const base = rate(baseline);
    results[format] = ours;
    rows.push({
      scenario: "13 rows",
      metric: `${N.toLocaleString("en")} rows of ${name} (${(bytes.length / 2 ** 20).toFixed(1)} MiB) through parseRows`,
      value: `${Math.round(ours).toLocaleString("en")} rows/s`,
      baseline: `${what} ${Math.round(base).toLocaleString("en")}/s`,
      ratio: `${(ours / base).toFixed(2)}×`,
    });
  }
  return { rows, results };
}
