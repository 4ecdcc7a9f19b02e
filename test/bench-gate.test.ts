/**
 * The bench's regression gate (test/bench/gate.ts, run by CI as `npm run bench:ci`): the
 * ratios as measured today pass; any one of them halved fails, naming it; a ratio the run
 * did not measure fails.
 */
import { floorOf, gate, type GateRatio } from "./bench/gate";

const today: GateRatio[] = [
  { name: "trigger gRPC / raw INSERT", value: 0.65 },
  { name: "trigger Connect / raw INSERT", value: 0.55 },
  { name: "trigger REST / raw INSERT", value: 0.77 },
  { name: "trigger gRPC / echo", value: 0.22 },
  { name: "trigger Connect / echo", value: 0.24 },
  { name: "trigger REST / echo", value: 0.26 },
  { name: "worker / graphile-worker", value: 0.22 },
];

test("the ratios measured today pass the gate", () => {
  const g = gate(today);
  expect(g.passed).toBe(true);
  expect(g.lines).toHaveLength(today.length);
  expect(g.lines.every((l) => l.startsWith("ok"))).toBe(true);
});

test.each(today.map((r) => r.name))("%s halved fails the gate, and the line says which", (name) => {
  const g = gate(today.map((r) => (r.name === name ? { ...r, value: r.value / 2 - 0.01 } : r)));
  expect(g.passed).toBe(false);
  expect(g.lines.filter((l) => l.startsWith("FAIL"))).toEqual([expect.stringContaining(name)]);
});

test("a ratio the run did not measure fails", () => {
  const g = gate(today.filter((r) => r.name !== "worker / graphile-worker"));
  expect(g.passed).toBe(false);
  expect(g.lines).toContain("FAIL worker / graphile-worker: not measured");
});

test("floors: half of the lower of the target and today's measure", () => {
  expect(floorOf("trigger gRPC / raw INSERT").floor).toBeCloseTo(0.325);
  expect(floorOf("trigger Connect / echo").floor).toBeCloseTo(0.12);
  expect(floorOf("worker / graphile-worker").floor).toBeCloseTo(0.11);
  expect(() => floorOf("something else")).toThrow("no floor for something else");
});
