/**
 * Chunks worth retrieving: never cut mid-word (unless a word is longer than a chunk), at
 * most `size` characters, a paragraph or sentence end preferred, the overlap starting at a
 * word, offsets that point back at the chunk's own text (code points, astral characters
 * included).
 */
import { chunkSpans } from "../src/worker/chunk";
import { textTask } from "../src/worker/tasks";

const PROSE = [
  "The party in breach shall pay damages. No limitation of liability applies to fraud.",
  "Either party may terminate upon written notice! Notice takes effect on receipt?",
  "Payment is due within thirty days of the invoice date, without set-off or deduction.",
].join("\n\n");

const cps = (s: string) => [...s];

test("no chunk starts or ends inside a word, and none is longer than the size", () => {
  for (const [size, overlap] of [[40, 0], [60, 10], [100, 30], [32, 16]]) {
    const chunks = chunkSpans(PROSE, size, overlap);
    const words = new Set(PROSE.split(/\s+/));
    for (const c of chunks) {
      expect(cps(c.text).length).toBeLessThanOrEqual(size);
      const parts = c.text.split(/\s+/);
      // Whole words at both ends (the text's own words, punctuation included).
      expect({ size, overlap, first: words.has(parts[0]), last: words.has(parts[parts.length - 1]) }).toEqual({ size, overlap, first: true, last: true });
    }
    // Every word of the text is in some chunk.
    const covered = chunks.map((c) => c.text).join(" ");
    for (const w of words) expect(covered).toContain(w);
  }
});

test("a paragraph break wins over a sentence end, a sentence end over a space", () => {
  const chunks = chunkSpans(PROSE, 100, 0);
  expect(chunks[0].text).toBe("The party in breach shall pay damages. No limitation of liability applies to fraud.");
  const sentences = chunkSpans("One two three four five. Six seven eight nine ten eleven twelve", 40, 0);
  expect(sentences[0].text).toBe("One two three four five.");
});

test("overlap starts the next chunk at a word inside the previous one", () => {
  const chunks = chunkSpans("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu", 30, 12);
  for (let i = 1; i < chunks.length; i++) {
    expect(chunks[i].start).toBeLessThan(chunks[i - 1].end);
    expect(chunks[i].start).toBeGreaterThan(chunks[i - 1].start);
    expect(chunks[i].text.split(" ")[0]).toMatch(/^(alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda|mu)$/);
  }
});

test("only a word longer than a chunk is cut; offsets point at the chunk's own text, astral characters counted once", () => {
  const long = "x".repeat(75);
  const chunks = chunkSpans(`short ${long} tail`, 30, 0);
  expect(chunks.map((c) => c.text)).toEqual(["short", "x".repeat(30), "x".repeat(30), `${"x".repeat(15)} tail`]);
  const emoji = "😀 party 🎉 time ✨ again and again 🚀 launch";
  for (const c of chunkSpans(emoji, 12, 3)) expect(cps(emoji).slice(c.start, c.end).join("")).toBe(c.text);
});

test("a CSV's chunks each start with its header line and hold whole rows, every row once", async () => {
  const header = "invoice,customer,city,amount";
  const rows = Array.from({ length: 60 }, (_, i) => `inv-${1000 + i},Customer number ${i},Springfield,${(i * 37.5).toFixed(2)}`);
  const csv = [header, ...rows].join("\n");
  const r = await textTask(Buffer.from(csv), { key: "ledger/2026.csv", encoding: "auto", chunkSize: 300, overlap: 60, limits: { maxTextChars: 1e6, maxRows: 1e6 }, localDims: 0, dims: 8, maxVectorValues: 1e6 });
  expect(r.pieces.length).toBeGreaterThan(5);
  const seen: string[] = [];
  r.pieces.forEach((piece, i) => {
    expect(cps(piece).length).toBeLessThanOrEqual(300);
    const [first, ...lines] = piece.split("\n");
    expect(first).toBe(header);
    for (const line of lines) expect(rows).toContain(line);
    seen.push(...lines);
    // Offsets point at the rows in the object's text (the header is repeated, not pointed at).
    expect(cps(csv).slice(r.places[i].start, r.places[i].end).join("")).toBe(lines.join("\n"));
  });
  expect(seen).toEqual(rows);
});
