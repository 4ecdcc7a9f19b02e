/** Rule matching, axis by axis, and the precedence among matching rules. */
import { InvalidArgument } from "../src/domain/errors";
import type { Rule } from "../src/domain/pipeline";
import { checkMimePattern, compileGlob, pickRule, ruleMatches, type ObjectFacts } from "../src/domain/rules";

let seq = 0;
function rule(over: Partial<Rule> = {}): Rule {
  seq++;
  return {
    ruleId: `rule_${String(seq).padStart(4, "0")}`,
    org: "default",
    bucket: "kb",
    sourceId: "",
    pipelineId: "pipe_1",
    name: `r${seq}`,
    description: "",
    includePatterns: [],
    excludePatterns: [],
    includeMimeTypes: [],
    excludeMimeTypes: [],
    minSizeBytes: 0,
    maxSizeBytes: 0,
    enabled: true,
    priority: 0,
    createdAt: 1000 + seq,
    updatedAt: 1000 + seq,
    ...over,
  };
}

const pdf: ObjectFacts = { key: "contracts/2026/acme.pdf", mimeType: "application/pdf", size: 5000 };

describe("globs", () => {
  test.each([
    ["contracts/**", "contracts/2026/acme.pdf", true],
    ["contracts/*", "contracts/2026/acme.pdf", false],
    ["contracts/*/*.pdf", "contracts/2026/acme.pdf", true],
    ["**/*.pdf", "contracts/2026/acme.pdf", true],
    ["**/*.pdf", "acme.pdf", true],
    ["contracts/**/acme.pdf", "contracts/acme.pdf", true],
    ["*.pdf", "contracts/acme.pdf", false],
    ["contracts/????/acme.pdf", "contracts/2026/acme.pdf", true],
    ["contracts/???/acme.pdf", "contracts/2026/acme.pdf", false],
    ["contracts/?/a.pdf", "contracts//a.pdf", false],
    ["contracts/202[56]/*.pdf", "contracts/2026/acme.pdf", true],
    ["contracts/202[0-4]/*.pdf", "contracts/2026/acme.pdf", false],
    ["contracts/202[!0-4]/*.pdf", "contracts/2026/acme.pdf", true],
    ["CONTRACTS/**/*.PDF", "contracts/2026/acme.pdf", true],
    ["contracts/**", "Contracts/X.pdf", true],
    ["a.b", "axb", false],
    ["a+b(c)", "a+b(c)", true],
    ["docs/é*", "docs/É.txt", false],
  ])("%s on %s -> %s", (pattern, key, expected) => {
    expect(compileGlob(pattern).test(key.replace(/[A-Z]/g, (c) => c.toLowerCase()))).toBe(expected);
    expect(ruleMatches(rule({ includePatterns: [pattern] }), { ...pdf, key })).toBe(expected);
  });

  test("a bad pattern is rejected naming the field and the pattern", () => {
    expect(() => compileGlob("docs/[abc", "include_patterns[0]")).toThrow(InvalidArgument);
    expect(() => compileGlob("docs/[abc", "include_patterns[0]")).toThrow(/include_patterns\[0\] "docs\/\[abc"/);
    expect(() => compileGlob("", "exclude_patterns[2]")).toThrow(/exclude_patterns\[2\] must not be empty/);
  });
});

describe("axes", () => {
  test("an empty include list matches everything on its axis", () => {
    expect(ruleMatches(rule(), pdf)).toBe(true);
  });

  test("includes OR together within an axis", () => {
    expect(ruleMatches(rule({ includePatterns: ["*.txt", "contracts/**"] }), pdf)).toBe(true);
    expect(ruleMatches(rule({ includePatterns: ["*.txt", "docs/**"] }), pdf)).toBe(false);
  });

  test("excludes win over includes", () => {
    expect(ruleMatches(rule({ includePatterns: ["contracts/**"], excludePatterns: ["**/acme.pdf"] }), pdf)).toBe(false);
    expect(ruleMatches(rule({ excludePatterns: ["**/*.txt"] }), pdf)).toBe(true);
    expect(ruleMatches(rule({ includeMimeTypes: ["application/*"], excludeMimeTypes: ["application/pdf"] }), pdf)).toBe(false);
  });

  test("MIME types match exactly or by type/*, case-insensitively", () => {
    expect(ruleMatches(rule({ includeMimeTypes: ["application/pdf"] }), pdf)).toBe(true);
    expect(ruleMatches(rule({ includeMimeTypes: ["Application/PDF"] }), pdf)).toBe(true);
    expect(ruleMatches(rule({ includeMimeTypes: ["application/*"] }), pdf)).toBe(true);
    expect(ruleMatches(rule({ includeMimeTypes: ["text/*"] }), pdf)).toBe(false);
    expect(ruleMatches(rule({ includeMimeTypes: ["application/pdfx"] }), pdf)).toBe(false);
  });

  test("MIME patterns are validated", () => {
    expect(() => checkMimePattern("application/pdf")).not.toThrow();
    expect(() => checkMimePattern("text/*")).not.toThrow();
    expect(() => checkMimePattern("pdf", "include_mime_types[1]")).toThrow(/include_mime_types\[1\] "pdf"/);
    expect(() => checkMimePattern("*/pdf")).toThrow(InvalidArgument);
  });

  test("sizes are inclusive and max 0 means no limit", () => {
    expect(ruleMatches(rule({ minSizeBytes: 5000 }), pdf)).toBe(true);
    expect(ruleMatches(rule({ minSizeBytes: 5001 }), pdf)).toBe(false);
    expect(ruleMatches(rule({ maxSizeBytes: 5000 }), pdf)).toBe(true);
    expect(ruleMatches(rule({ maxSizeBytes: 4999 }), pdf)).toBe(false);
    expect(ruleMatches(rule({ maxSizeBytes: 0, minSizeBytes: 1 }), { ...pdf, size: 10 ** 12 })).toBe(true);
  });

  test("every axis must pass", () => {
    const r = rule({ includePatterns: ["contracts/**"], includeMimeTypes: ["application/pdf"], maxSizeBytes: 100 });
    expect(ruleMatches(r, pdf)).toBe(false);
    expect(ruleMatches(r, { ...pdf, size: 100 })).toBe(true);
    expect(ruleMatches(r, { ...pdf, size: 100, mimeType: "text/plain" })).toBe(false);
    expect(ruleMatches(r, { ...pdf, size: 100, key: "other/acme.pdf" })).toBe(false);
  });
});

describe("precedence", () => {
  test("the highest priority wins", () => {
    const low = rule({ priority: 1, pipelineId: "pipe_low" });
    const high = rule({ priority: 10, pipelineId: "pipe_high" });
    expect(pickRule([low, high], pdf)?.pipelineId).toBe("pipe_high");
    expect(pickRule([high, low], pdf)?.pipelineId).toBe("pipe_high");
  });

  test("ties go to the oldest rule", () => {
    const older = rule({ createdAt: 10, pipelineId: "pipe_old" });
    const newer = rule({ createdAt: 20, pipelineId: "pipe_new" });
    expect(pickRule([newer, older], pdf)?.pipelineId).toBe("pipe_old");
  });

  test("non-matching and disabled rules are skipped", () => {
    const disabled = rule({ priority: 100, enabled: false, pipelineId: "pipe_disabled" });
    const nomatch = rule({ priority: 50, includePatterns: ["*.txt"], pipelineId: "pipe_txt" });
    const fallback = rule({ priority: 0, pipelineId: "pipe_any" });
    expect(pickRule([disabled, nomatch, fallback], pdf)?.pipelineId).toBe("pipe_any");
    expect(pickRule([disabled, nomatch], pdf)).toBeUndefined();
  });
});
