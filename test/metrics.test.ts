/**
 * The live-heap gauge: k3_heap_after_gc_bytes follows what a full garbage collection leaves,
 * up when the process keeps more alive and back down when it lets it go.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createMetrics } from "../src/metrics";

setFlagsFromString("--expose-gc");
const fullGc = runInNewContext("gc") as () => void;

async function afterFullGc(read: () => Promise<number>): Promise<number> {
  fullGc();
  // The observer hears of the collection after the current task.
  await new Promise((r) => setTimeout(r, 50));
  return read();
}

test("k3_heap_after_gc_bytes rises by what is kept alive and falls when it is released", async () => {
  const { registry } = createMetrics();
  const read = async () => {
    const m = /^k3_heap_after_gc_bytes (\d+)$/m.exec(await registry.getSingleMetricAsString("k3_heap_after_gc_bytes"));
    if (!m) throw new Error("no k3_heap_after_gc_bytes line");
    return Number(m[1]);
  };
  const base = await afterFullGc(read);
  expect(base).toBeGreaterThan(0);
  // About 64 MB of small objects, kept.
  let kept: Array<{ i: number; s: string }> | undefined = Array.from({ length: 1_000_000 }, (_, i) => ({ i, s: `item ${i}` }));
  const grown = await afterFullGc(read);
  expect(grown - base).toBeGreaterThan(40 * 2 ** 20);
  expect(kept.length).toBe(1_000_000);
  kept = undefined;
  const back = await afterFullGc(read);
  expect(grown - back).toBeGreaterThan(40 * 2 ** 20);
});
